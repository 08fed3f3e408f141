"""Connection-level limits uvicorn's httptools protocol lacks: a deadline for a request's headers and a
cap on their size.

Without them a client that opens connections and sends nothing (or a header a byte at a time) holds
each for as long as it likes, and a 32 MiB header is buffered whole before the app sees the request.
The body is the app's concern (app.py: server.bodyTimeoutSeconds, server.maxBodyBytes).

Deadlines are checked by one sweep timer for all connections (a quarter of the timeout apart), not a
timer per request: a connection in its header phase costs a set insert and a clock read.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeaderWatch:
    """Connections still reading headers, and since when; one timer closes the overdue ones."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started: dict[HttpToolsProtocol, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, proto: HttpToolsProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.started[proto] = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self.timeout_s / 4, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        limit = loop.time() - self.timeout_s
        for proto, since in list(self.started.items()):
            if since <= limit:
                del self.started[proto]
                if not proto.transport.is_closing():
                    proto.transport.close()
        if self.started:
            self._timer = loop.call_later(self.timeout_s / 4, self._sweep, loop)


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol that closes a connection whose request line and headers take longer than
    `header_timeout_s` (up to a quarter more) from the first byte, or from connecting, or grow past
    `max_header_bytes` (431)."""
    watch = _HeaderWatch(header_timeout_s)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _in_headers = True
        _too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            watch.add(self, self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            watch.started.pop(self, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            # Counted by chunk: a chunk that also carries body bytes can overshoot by one read.
            if self._in_headers and self._header_bytes > max_header_bytes and not self.transport.is_closing():
                self._too_large = True
                self.send_400_response("Request header fields too large.")

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(msg), msg.encode("ascii"))
            )
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_headers:  # the next request on a kept-alive connection: its headers start
                self._in_headers = True
                self._header_bytes = 0
                watch.add(self, self.loop)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            watch.started.pop(self, None)
            super().on_headers_complete()

    return GuardedHttpToolsProtocol
