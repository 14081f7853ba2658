"""What keeps other web sites and slow clients out of ``digit-denoise serve``.

- :class:`HostOriginGuard` (ASGI middleware): a request must name a host the server was started for
  (``Host``): an IP literal, ``localhost``, or an ``--allowed-host`` name. A DNS-rebinding page reaches
  the server under *its own* name, so it is refused (403) and cannot read answers. A state-changing
  request (POST, …) from a page of another origin (``Origin`` not this server's own host and port, or
  ``Sec-Fetch-Site: cross-site``) is refused too: a form on any web site could otherwise make the browser
  post to the local server without a preflight.
- :class:`SlowHeadersH11` (uvicorn protocol): a connection whose request headers are not complete
  within ``HEADER_TIMEOUT`` seconds is closed (slow-loris). The body has its own timeout in
  :func:`.upload.read_form`.

Both answer with JSON ``{"error": ...}`` like every other error of the API.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds from connection (or the end of the last response) to complete headers
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _host_only(host: str) -> str:
    """``example.org:8000`` → ``example.org``; ``[::1]:80`` → ``::1`` (lower case, no trailing dot)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """An IP literal (no DNS name, so no DNS rebinding), ``localhost`` or one of ``allowed``."""
    name = _host_only(host)
    if not name:
        return False
    if name in allowed or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HostOriginGuard:
    """ASGI middleware: refuse foreign hosts and cross-origin state-changing requests (403 JSON)."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] = ()):
        self.app = app
        self.allowed = frozenset(_host_only(h) for h in allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not host_allowed(host, self.allowed):
            return await _refuse(send, 403, f"host {host[:60]!r} is not one this server answers to; start it with "
                                            "--allowed-host NAME to allow a name")
        if scope.get("method", "GET") not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.strip().lower()):
                return await _refuse(send, 403, f"cross-origin request from {origin[:60]!r} refused: only this "
                                                "server's own page may post to it")
            if headers.get("sec-fetch-site") == "cross-site":
                return await _refuse(send, 403, "cross-site request refused: only this server's own page may post to it")
        return await self.app(scope, receive, send)


class SlowHeadersH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request headers (closes the connection when missed)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _headers_too_slow(self) -> None:
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        if not self.transport.is_closing():  # keep-alive: the next request gets the same deadline
            self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def connection_lost(self, exc) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)
