"""The answer to a request held too long while its model woke: 503 with Retry-After, not a dropped connection.

The KEDA HTTP add-on's interceptor holds a request for a model at zero until a replica is Ready; past the
model's `holdTimeoutSeconds` it forwards the request to the model's `coldStartTimeoutFailoverRef`, the
Service `<name>-waking`, which points here (builders/scaledobject.py). Without it the interceptor answers
502. The operator serves this on `wakeTimeoutPort` beside its health and metrics ports.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("infergate.wake_timeout")
# A held request's body is read (so the client sees the answer, not a reset) up to this many bytes.
MAX_DRAIN_BYTES = 1 << 20


def answer(host: str, retry_after_s: int) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for a request to `host` (the Host header, untrusted) that waited too long."""
    model = host.split(":", 1)[0][:253]
    body = json.dumps(
        {
            "error": "the model did not become ready within its hold timeout (spec.autoscaling."
            "holdTimeoutSeconds); retry later",
            "host": model,
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Retry-After": str(retry_after_s),
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
    }
    return 503, headers, body


def _handler(retry_after_s: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "infergate-wake-timeout"
        sys_version = ""

        def _respond(self) -> None:
            length = self.headers.get("Content-Length", "0")
            remaining = min(int(length), MAX_DRAIN_BYTES) if length.isdigit() else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
            status, headers, body = answer(self.headers.get("Host", ""), retry_after_s)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _respond  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            LOG.info("held past its timeout: %s %s", self.command, self.path[:200])

    return Handler


def serve(address: str, port: int, retry_after_s: int) -> ThreadingHTTPServer:
    """Starts the responder in a daemon thread; returns the server (its `server_address` has the port)."""
    server = ThreadingHTTPServer((address, port), _handler(retry_after_s))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="wake-timeout", daemon=True).start()
    return server
