"""A real HTTP server on 127.0.0.1 that serves scripted replies: fixtures and faults.

with FeedServer() as server:
    server.add("/api/daily_papers", Reply(status=429, headers={"Retry-After": "1"}),
               Reply.file(FIXTURES / "hf_daily_papers_5.json"))
    fetch_hf(day, base_url=server.url, client=client)
    assert server.requests[0].headers["user-agent"].startswith("daily-papers")
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from newsletter.core.config import Settings
from newsletter.papers.sources.http import RetryPolicy, SourceClient, make_http_client

CONTENT_TYPES = {".json": "application/json", ".xml": "application/atom+xml", ".txt": "text/plain"}


class _QuietServer(ThreadingHTTPServer):
    """A server that says nothing when a client hangs up early (a refused answer, a cap hit):
    the CLI under test shares stderr with it, and its one line is what the tests read."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Reply:
    """One scripted response."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (for timeouts)
    truncate_at: int | None = None  # send only this many bytes of the announced body
    announce_length: bool = True  # False: no Content-Length, the body ends when the server closes

    @classmethod
    def file(cls, path: Path, content_type: str | None = None, **kwargs: object) -> Reply:
        kind = content_type or CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return cls(body=path.read_bytes(), content_type=kind, **kwargs)  # type: ignore[arg-type]


@dataclass
class Request:
    """One request the server received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    time: float  # time.monotonic() on arrival

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Handler = Callable[[Request], Reply]


class FeedServer:
    """Serve queued replies per path (the last one repeats) or replies computed by a handler."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._queues: dict[str, list[Reply]] = {}
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, *replies: Reply) -> None:
        """Answer requests to path with these replies in turn, then repeat the last."""
        self._queues.setdefault(path, []).extend(replies)

    def route(self, path: str, handler: Handler) -> None:
        """Answer requests to path with whatever handler(request) returns."""
        self._handlers[path] = handler

    def _reply_for(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if request.path in self._handlers:
                return self._handlers[request.path](request)
            queue = self._queues.get(request.path)
            if not queue:
                return Reply(status=404, body=b"not found", content_type="text/plain")
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                request = Request(
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    time=time.monotonic(),
                )
                reply = server._reply_for(request)
                if reply.delay:
                    time.sleep(reply.delay)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    if reply.announce_length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.truncate_at is not None or not reply.announce_length:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(reply.body[: reply.truncate_at])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return _Handler

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def quick_source_client(
    settings: Settings, *, timeout: float = 0.5, tries: int = 2
) -> Iterator[SourceClient]:
    """A source client that gives up fast: tests of faults must not wait on real delays."""
    quick = dataclasses.replace(settings, http_timeout=timeout)
    retry = RetryPolicy(tries=tries, backoff=0.01, max_wait=5)
    with SourceClient(make_http_client(quick), retry=retry) as client:
        yield client
