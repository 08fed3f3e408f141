"""HTTP routes: Open Inference Protocol v2, /healthz, /readyz, /metrics, golden results, OpenAPI.

Endpoints only translate HTTP; ServedModel does the work. Every error goes through one status table
(errors.status_of); 4xx are logged at INFO without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__
from .config import ServerConfig
from .errors import (
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    QueueFull,
    ServingError,
    UnsupportedMediaType,
    status_of,
)
from .metrics import Metrics
from .model import ServedModel
from .openapi import openapi_document
from .protocol import encode_response, parse_request

log = logging.getLogger(__name__)

_JSON = "application/json"
_ACCEPTED_TYPES = ("application/json", "application/octet-stream")
_INFER_HEADERS = frozenset(
    {b"content-type", b"content-encoding", b"content-length", b"inference-header-content-length"}
)


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=_JSON, headers=headers)


def _error(exc: BaseException, model: str | None, metrics: Metrics | None) -> Response:
    status = status_of(exc)
    if status < 500:
        log.info("%d %s", status, exc)
    elif isinstance(exc, ServingError):
        log.warning("%d %s", status, exc)
    else:
        log.error("%d unexpected error", status, exc_info=exc)
    if metrics is not None and model is not None:
        metrics.requests.labels(model, str(status)).inc()
    headers = {"Retry-After": "1"} if isinstance(exc, QueueFull) else None
    message = str(exc) if isinstance(exc, ServingError) or status < 500 else f"{type(exc).__name__}: {exc}"
    return _json({"error": message}, status, headers)


class InferGateApp:
    """Holds the served model and in-flight count; `asgi` is the Starlette app."""

    def __init__(
        self, config: ServerConfig, model: ServedModel | None = None, metrics: Metrics | None = None
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.model = model or ServedModel(config, self.metrics)
        self._ok = self.metrics.requests.labels(self.model.name, "200")
        self._latency = self.metrics.latency.labels(self.model.name)
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        v2 = "/v2/models/{model_name}"
        routes = [  # infer first: Starlette tries routes in order, and infer is the hot path
            Route(v2 + "/infer", self.infer, methods=["POST"]),
            Route(v2 + "/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/v2/health/live", self.healthz, methods=["GET"]),
            Route("/v2/health/ready", self.readyz, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route(v2, self.model_metadata, methods=["GET"]),
            Route(v2 + "/versions/{version}", self.model_metadata, methods=["GET"]),
            Route(v2 + "/ready", self.model_ready, methods=["GET"]),
            Route(v2 + "/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route(v2 + "/golden", self.golden, methods=["GET"]),
        ]
        self.asgi = Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._tasks = [
            asyncio.create_task(self._start_then_watch(), name="model-start"),
        ]
        try:
            yield
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.model.stop()

    async def _start_then_watch(self) -> None:
        await self.model.start()
        if self.model.ready_after_s is not None:
            log.info("model %s ready %.2f s after start", self.model.name, self.model.ready_after_s)
        await asyncio.gather(self.model.golden_loop(), self.model.watch_backend())

    # ---- draining ----------------------------------------------------------------------------------

    def start_draining(self) -> None:
        self.model.start_draining()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # ---- health ------------------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        return _json({"live": True})

    def _readiness(self) -> dict[str, Any]:
        m = self.model
        ready, reason = m.readiness()
        doc: dict[str, Any] = {"ready": ready, "phase": m.phase.value, "reason": reason, "digest": m.digest}
        age = m.golden_age_s()
        doc["goldenAgeSeconds"] = None if age is None else round(age, 3)
        live = m.backend_liveness()
        if live is not None:
            doc["backend"] = {"live": live.alive, "generation": live.generation, "reason": live.reason}
        if m.report is not None:
            doc["golden"] = {k: v for k, v in m.report.to_json().items() if k != "cases"}
        return doc

    async def readyz(self, _request: Request) -> Response:
        self.model.refresh_golden_if_due()
        doc = self._readiness()
        return _json(doc, 200 if doc["ready"] else 503)

    async def prometheus(self, _request: Request) -> Response:
        self.metrics.queue_depth.labels(self.model.name).set(self.model.batcher.depth)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        m = self.model
        inputs = [s.name for s in m.declared_inputs()]
        outputs = [s.name for s in getattr(m.backend, "outputs", ())]
        return _json(openapi_document(__version__, m.name, m.version, inputs, outputs))

    # ---- metadata ----------------------------------------------------------------------------------

    def _model(self, request: Request) -> ServedModel:
        name = request.path_params["model_name"]
        version = request.path_params.get("version")
        if name != self.model.name or (version is not None and version != self.model.version):
            raise ModelNotFound(f"no model {name!r}" + (f" version {version!r}" if version else ""))
        return self.model

    async def server_metadata(self, _request: Request) -> Response:
        return _json({"name": "infergate", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: Request) -> Response:
        try:
            m = self._model(request)
        except ServingError as exc:
            return _error(exc, None, None)
        info = m.backend.info
        outputs = list(getattr(m.backend, "outputs", ()))
        return _json(
            {
                "name": m.name,
                "versions": [m.version],
                "platform": f"{self.config.runtime.backend.value}_{self.config.model.format.value}",
                "inputs": [_spec(s) for s in m.declared_inputs()],
                "outputs": [_spec(s) for s in outputs],
                "parameters": {
                    "runtime": info.runtime,
                    "device": info.device,
                    "digest": m.digest or "",
                    **{k: str(v) for k, v in info.details.items()},
                },
            }
        )

    async def model_ready(self, request: Request) -> Response:
        try:
            m = self._model(request)
        except ServingError as exc:
            return _error(exc, None, None)
        ready, reason = m.readiness()
        return _json({"name": m.name, "ready": ready, "reason": reason}, 200 if ready else 503)

    async def golden(self, request: Request) -> Response:
        try:
            m = self._model(request)
        except ServingError as exc:
            return _error(exc, None, None)
        ready, reason = m.readiness()
        doc: dict[str, Any] = {"name": m.name, "ready": ready, "phase": m.phase.value, "reason": reason}
        if m.report is not None:
            doc.update(m.report.to_json())
        return _json(doc)

    # ---- infer -------------------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        t0 = time.perf_counter()
        self.in_flight += 1
        self._idle.clear()
        name = request.path_params["model_name"]
        try:
            m = self._model(request)
            headers = self._check_headers(request)
            m.check_ready()
            if not m.is_tensor:
                raise InvalidInput(f"model {m.name} is generative: use its OpenAI-compatible API")
            if not m.batcher.has_room():
                raise QueueFull(
                    f"model {m.name}: queue full ({m.batcher.max_queue_depth} waiting); retry later"
                )
            body, header_length = await self._read_body(request, headers)
            parsed = parse_request(body, header_length, m.tensor_specs, m.text_specs)
            outputs = await m.infer(parsed)
            content, json_len = encode_response(m.name, m.version, parsed, outputs)
        except Exception as exc:
            known = name == self.model.name
            return _error(exc, name if known else None, self.metrics if known else None)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
        self._ok.inc()
        self._latency.observe(time.perf_counter() - t0)
        if json_len is None:
            return Response(content, media_type=_JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_len)},
        )

    def _check_headers(self, request: Request) -> dict[bytes, str]:
        """The headers infer reads, found in one pass over the raw list (Starlette's Headers.get scans
        it again per lookup)."""
        found: dict[bytes, str] = {}
        for key, value in request.scope["headers"]:
            if key in _INFER_HEADERS:
                found[key] = value.decode("latin-1")
        ctype = found.get(b"content-type")
        if ctype is not None and ctype.split(";")[0].strip().lower() not in _ACCEPTED_TYPES:
            raise UnsupportedMediaType(f"Content-Type {ctype!r}: send application/json")
        encoding = found.get(b"content-encoding", "identity").lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported")
        length = found.get(b"content-length")
        limit = self.config.server.max_body_bytes
        if length is not None:
            if not length.isdigit():
                raise InvalidInput(f"Content-Length {length!r} is not a number")
            if int(length) > limit:
                raise PayloadTooLarge(f"body of {length} B exceeds server.maxBodyBytes={limit}")
        return found

    async def _read_body(self, request: Request, headers: dict[bytes, str]) -> tuple[bytes, int | None]:
        limit = self.config.server.max_body_bytes
        if b"content-length" in headers:
            body = await request.body()
        else:
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body exceeds server.maxBodyBytes={limit}")
                chunks.append(chunk)
            body = b"".join(chunks)
        hdr = headers.get(b"inference-header-content-length")
        if hdr is None:
            return body, None
        if not hdr.isdigit():
            raise InvalidInput(f"Inference-Header-Content-Length {hdr!r} is not a number")
        return body, int(hdr)


def _spec(s: Any) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}
