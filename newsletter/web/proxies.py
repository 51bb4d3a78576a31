"""Reading a reverse proxy's X-Forwarded-* headers: only from the proxies named in the settings.

A request from any other peer has those headers removed, and a forwarded value that is not
an IP address (or a scheme other than http and https) is dropped for the peer's own, so the
consent record and the rate limits only ever see a real address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")
FORWARDED_MORE = ("HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")
SCHEMES = ("http", "https")
ORIGINAL = "werkzeug.proxy_fix.orig"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def parse_address(value: str) -> str | None:
    """Return value as a canonical IP address, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


class TrustedProxies:
    """WSGI middleware: apply `count` proxies' X-Forwarded-* only for a trusted peer."""

    def __init__(self, app: WsgiApp, count: int, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self.fixed = ProxyFix(self._checked, x_for=count, x_proto=count, x_host=count)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        for name in FORWARDED_MORE:  # never read: nobody may set them
            environ.pop(name, None)
        if not self._trusted(environ.get("REMOTE_ADDR", "")):
            for name in FORWARDED:
                environ.pop(name, None)
            return self.app(environ, start_response)
        return self.fixed(environ, start_response)

    def _trusted(self, peer: str) -> bool:
        address = parse_address(peer)
        if address is None:
            return False
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def _checked(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        original = environ.get(ORIGINAL, {})
        address = parse_address(environ.get("REMOTE_ADDR", ""))
        environ["REMOTE_ADDR"] = address or original.get("REMOTE_ADDR", "")
        if environ.get("wsgi.url_scheme") not in SCHEMES:
            environ["wsgi.url_scheme"] = original.get("wsgi.url_scheme", "http")
        return self.app(environ, start_response)
