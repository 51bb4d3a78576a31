"""One polite HTTP client for the sources: a User-Agent, timeouts, bounded retries, spacing."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from newsletter.core.config import Settings
from newsletter.core.errors import SourceError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A day's listing is well under 1 MB: a bigger answer is a fault or an attack on memory.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed request."""

    tries: int = 3
    backoff: float = 1.0  # the first wait in seconds; it doubles each time
    max_wait: float = 60.0  # a longer Retry-After fails at once instead of blocking a run


@dataclass(frozen=True)
class Fetched:
    """A source's answer, its body read whole within the size cap."""

    url: str
    headers: httpx.Headers
    content: bytes


class SourceClient:
    """An httpx client that retries transient failures, spaces requests apart, caps bodies."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.http = http
        self.retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        self._sleep = sleep
        self._last_request: float | None = None

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        accept: Sequence[str] = (),
        min_interval: float = 0.0,
    ) -> Fetched:
        """GET a URL, retrying timeouts, connection errors, 429 and 5xx; check type and size."""
        for attempt in range(1, self.retry.tries + 1):
            self._wait_for_turn(min_interval)
            try:
                with self.http.stream("GET", url, params=params) as response:
                    if response.status_code in RETRY_STATUSES:
                        failure, wait = _status(response), _retry_after(response)
                    else:
                        _check(response, accept)
                        body = self._read(response)
                        return Fetched(str(response.url), response.headers, body)
            except httpx.TimeoutException as exc:
                failure, wait = f"timed out ({type(exc).__name__})", None
            except httpx.TransportError as exc:
                failure, wait = f"connection failed ({type(exc).__name__}: {exc})", None
            if attempt == self.retry.tries:
                break
            self._back_off(url, failure, attempt, wait)
        raise SourceError(f"GET {_show(url)}: {failure} after {self.retry.tries} tries")

    def _read(self, response: httpx.Response) -> bytes:
        """Read the body (decompressed), stopping as soon as it passes max_bytes."""
        too_big = SourceError(
            f"GET {_show(str(response.request.url))}: the answer is larger than "
            f"{self.max_bytes:,} bytes (source_max_bytes)"
        )
        announced = response.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > self.max_bytes:
            raise too_big
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait_for_turn(self, min_interval: float) -> None:
        # Sources such as arXiv ask for a pause between requests; the clock is monotonic.
        now = time.monotonic()
        if self._last_request is not None and min_interval > 0:
            pause = self._last_request + min_interval - now
            if pause > 0:
                self._sleep(pause)
        self._last_request = time.monotonic()

    def _back_off(self, url: str, failure: str, attempt: int, retry_after: float | None) -> None:
        wait = self.retry.backoff * 2 ** (attempt - 1) if retry_after is None else retry_after
        if wait > self.retry.max_wait:
            raise SourceError(f"GET {_show(url)}: {failure}; asked to retry after {wait:.0f} s")
        log.info("GET %s: %s; retrying in %.2f s", _show(url), failure, wait)
        self._sleep(wait)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def make_http_client(settings: Settings) -> httpx.Client:
    """Build the httpx client: our User-Agent, the configured timeout, one connection."""
    return httpx.Client(
        headers={"User-Agent": settings.user_agent},
        timeout=settings.http_timeout,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        follow_redirects=True,
    )


def make_source_client(settings: Settings, *, retry: RetryPolicy | None = None) -> SourceClient:
    """Build the retrying client the fetchers use."""
    http = make_http_client(settings)
    return SourceClient(http, retry=retry, max_bytes=settings.source_max_bytes)


def _check(response: httpx.Response, accept: Sequence[str]) -> None:
    """Fail at once on 4xx and on a body that is not what the source serves (an HTML page)."""
    url = _show(str(response.request.url))
    if response.status_code >= 400:
        raise SourceError(f"GET {url}: {_status(response)}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if accept and kind not in accept:
        hint = " (an error page?)" if kind == "text/html" else ""
        wanted = " or ".join(accept)
        raise SourceError(f"GET {url}: expected {wanted}, got {kind or 'no content type'}{hint}")


def _status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _retry_after(response: httpx.Response) -> float | None:
    """Read Retry-After as seconds or as an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _show(url: str) -> str:
    """Shorten a URL for a one-line message: no query string."""
    return url.split("?", 1)[0]
