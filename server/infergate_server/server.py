"""Run the app on uvicorn. SIGTERM flips readiness first, keeps serving for server.shutdownDelaySeconds,
waits (up to server.drainTimeoutSeconds) for in-flight requests, and only then lets uvicorn stop, within
a second more: the drain timeout is the whole deadline, not a wait before uvicorn's own."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn

from .app import InferGateApp
from .config import ServerConfig
from .connections import guarded_protocol

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: InferGateApp, cfg: ServerConfig) -> None:
        super().__init__(config)
        self._app = app
        self._cfg = cfg
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or (sig == signal.SIGINT and self.should_exit):
            self.force_exit = self._drain_task is not None and sig == signal.SIGINT
            self.should_exit = True
            return
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain(sig))

    async def _drain(self, sig: int) -> None:
        s = self._cfg.server
        log.info(
            "signal %d: not ready any more; draining (delay %.1fs, timeout %.1fs)",
            sig,
            s.shutdown_delay_seconds,
            s.drain_timeout_seconds,
        )
        self._app.start_draining()
        if s.shutdown_delay_seconds > 0:
            await asyncio.sleep(s.shutdown_delay_seconds)
        if not await self._app.wait_idle(s.drain_timeout_seconds):
            log.warning("drain timeout: %d request(s) still in flight", self._app.in_flight)
        # Whatever is still open now (a stalled upload, a hung call) has had its time.
        self.config.timeout_graceful_shutdown = 1
        self.should_exit = True


def serve(cfg: ServerConfig, listener: socket.socket) -> None:
    """Serves `cfg`'s model on `listener` (listener.py: bound before this module was imported)."""
    logging.basicConfig(
        level=cfg.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = InferGateApp(cfg)
    s = cfg.server
    ucfg = uvicorn.Config(
        app.asgi,
        host=cfg.server.host,  # unused with the socket given to run(): uvicorn logs it
        port=listener.getsockname()[1],
        loop="uvloop",
        http=guarded_protocol(s.header_timeout_seconds, s.max_header_bytes),
        interface="asgi3",  # a bound method: uvicorn's guess would take it for ASGI 2
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing here reads the client address; saves a middleware per request
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=int(s.drain_timeout_seconds) or None,
        timeout_keep_alive=30,
        limit_concurrency=s.max_connections,
        ssl_certfile=str(s.tls.cert_file) if s.tls is not None else None,
        ssl_keyfile=str(s.tls.key_file) if s.tls is not None else None,
    )
    _DrainingServer(ucfg, app, cfg).run(sockets=[listener])
