"""Connection-level limits uvicorn's httptools protocol lacks: a deadline for a request's headers and a
cap on their size.

Without them a client that opens connections and sends nothing (or a header a byte at a time) holds
each for as long as it likes, and a 32 MiB header is buffered whole before the app sees the request.
The body is the app's concern (app.py: server.bodyTimeoutSeconds, server.maxBodyBytes).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol that closes a connection whose request line and headers take longer than
    `header_timeout_s` from the first byte (or from connecting), or grow past `max_header_bytes` (431)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _in_headers = True
        _too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
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
                self._arm()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_overdue)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_overdue(self) -> None:
            self._header_timer = None
            if self._in_headers and not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpToolsProtocol
