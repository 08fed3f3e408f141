"""HTTP routes: Open Inference Protocol v2, /healthz, /readyz, /metrics, golden results, OpenAPI.

Endpoints only translate HTTP; ServedModel does the work. Every error goes through one status table
(errors.status_of); 4xx are logged at INFO without a traceback.

`POST .../infer` is answered at the ASGI level, before Starlette: its router, middleware stack, Request
and Response objects were a third of the event loop's time per request, and on a CPU host that time
is taken from the model runtime's threads. Every other route goes through Starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import __version__
from .codec import INLINE_BYTES
from .config import ServerConfig
from .deadlines import ReadDeadlines
from .errors import (
    Forbidden,
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    QueueFull,
    RequestBodyTimeout,
    ServingError,
    Unauthorized,
    UnsupportedMediaType,
    one_line,
    public_message,
    status_of,
)
from .fairness import FairShare
from .metrics import Metrics
from .model import ServedModel
from .openapi import openapi_document
from .protocol import encode_response, parse_request
from .tenancy import Tenant, Tenants, bearer

log = logging.getLogger(__name__)

_JSON = "application/json"
_ACCEPTED_TYPES = ("application/json", "application/octet-stream")
_INFER_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"content-length",
        b"inference-header-content-length",
        b"authorization",
        b"x-api-key",
    }
)


_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_JSON_HEADER = (b"content-type", _JSON.encode())
_BINARY_HEADER = (b"content-type", b"application/octet-stream")


class ClientGone(Exception):  # noqa: N818
    """The client closed the connection before its request body arrived; nobody is left to answer."""


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=_JSON, headers=headers)


def _error(exc: BaseException, model: str | None, metrics: Metrics | None) -> Response:
    status, body, headers = _error_answer(exc, model, metrics)
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


def _error_answer(
    exc: BaseException, model: str | None, metrics: Metrics | None
) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
    """Status, JSON body and headers for an error; logged, and counted when the model is known."""
    status = status_of(exc)
    if status < 500:
        if log.isEnabledFor(logging.INFO):  # under overload every 429 passes here: no text built for nothing
            log.info("%d %s", status, one_line(str(exc)))
    elif isinstance(exc, ServingError):
        log.warning("%d %s", status, one_line(str(exc)))
    else:
        log.error("%d unexpected error", status, exc_info=exc)
    if metrics is not None and model is not None:
        metrics.count(model, status)
    if isinstance(exc, QueueFull):
        headers: tuple[tuple[bytes, bytes], ...] = (_JSON_HEADER, (b"retry-after", b"%d" % exc.retry_after_s))
    elif isinstance(exc, Unauthorized):
        headers = (_JSON_HEADER, (b"www-authenticate", b"Bearer"))
    elif isinstance(exc, RequestBodyTimeout):  # the rest of the body may never come: do not wait for it
        headers = (_JSON_HEADER, (b"connection", b"close"))
    else:
        headers = (_JSON_HEADER,)
    return status, orjson.dumps({"error": public_message(exc, status)}), headers


async def _respond(send: Send, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class InferGateApp:
    """Holds the served model and in-flight count; `asgi` is the ASGI app (infer, else Starlette)."""

    def __init__(
        self, config: ServerConfig, model: ServedModel | None = None, metrics: Metrics | None = None
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.model = model or ServedModel(config, self.metrics)
        self._ok = self.metrics.requests.labels(self.model.name, "200")
        self._latency = self.metrics.latency.labels(self.model.name)
        self.in_flight = 0
        # The pod the operator's template names (downward API): golden reports say which replica wrote them.
        self._pod_name = os.environ.get("POD_NAME", "")[:253]
        self.tenants = Tenants(config.tenancy) if config.tenancy is not None else None
        self._tenant_children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self._fair = FairShare(config.runtime.max_queue_depth)
        self._body_deadlines = ReadDeadlines(config.server.body_timeout_seconds)
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        v2 = "/v2/models/{model_name}"
        routes = [  # POST .../infer never reaches Starlette (see `asgi`); these answer its other methods
            Route(v2 + "/infer", _post_only, methods=["POST"]),
            Route(v2 + "/versions/{version}/infer", _post_only, methods=["POST"]),
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
        self._starlette = Starlette(routes=routes, lifespan=self._lifespan)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            match = _INFER_PATH.fullmatch(path)
            if match is not None:
                await self.infer(scope, receive, send, match[1], match[2])
                return
        await self._starlette(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._tasks = [
            asyncio.create_task(self._start_then_watch(), name="model-start"),
        ]
        if self.tenants is not None and self.config.tenancy is not None:
            self._tasks.append(
                asyncio.create_task(self._reload_keys(self.config.tenancy.reload_seconds), name="api-keys")
            )
        try:
            yield
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._body_deadlines.close()
            await self.model.stop()

    async def _start_then_watch(self) -> None:
        await self.model.start()
        # Everything loaded so far (runtimes, model, tokenizer) lives as long as the process; without
        # freezing it, every full collection walks it again: a 15-45 ms pause in some request's latency.
        gc.collect()
        gc.freeze()
        if self.model.ready_after_s is not None:
            log.info("model %s ready %.2f s after start", self.model.name, self.model.ready_after_s)
        m = self.model
        extra = [*([m.drift.run()] if m.drift else []), *([m.shadow.run()] if m.shadow else [])]
        await asyncio.gather(m.golden_loop(), m.watch_backend(), *extra)

    async def _reload_keys(self, period_s: float) -> None:
        tenants = self.tenants
        assert tenants is not None
        while True:
            await asyncio.sleep(period_s)
            try:
                await asyncio.to_thread(tenants.reload)
            except OSError as exc:  # keep the keys we have; say why
                log.warning("could not reload API keys: %s", exc)

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
        hold = self.config.server.readiness_hold_seconds
        if hold > 0 and self.model.starting:
            await self.model.wait_while_starting(hold)
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
                    **(m.runtime.parameters() if m.runtime is not None else {}),
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
        doc["artifact"] = m.artifact_facts()
        doc["startup"] = m.startup_facts()
        if m.runtime is not None:
            doc["runtime"] = m.runtime.to_json()
        if m.drift is not None:
            doc["drift"] = m.drift.to_json()
        if m.shadow is not None:
            doc["shadow"] = m.shadow.to_json()
        if self._pod_name:
            doc["pod"] = self._pod_name
        # Readers of this report reach a revision's pods through a Service whose selector moves to the new
        # revision (the canary's golden gate): a kept-alive connection would stay with the pod it was
        # opened to (kube-proxy balances connections, not requests) and keep reading the old revision.
        return _json(doc, headers={"connection": "close"})

    # ---- infer -------------------------------------------------------------------------------------

    async def infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None) -> None:
        t0 = time.perf_counter()
        self.in_flight += 1
        self._idle.clear()
        m = self.model
        known = name == m.name
        tenant: Tenant | None = None
        client: str | None = None  # the fair-share key, once counted
        usage: list[float] | None = None
        try:
            try:
                if not known or (version is not None and version != m.version):
                    raise ModelNotFound(f"no model {name!r}" + (f" version {version!r}" if version else ""))
                headers = self._check_headers(scope)
                if self.tenants is not None:
                    tenant = self.tenants.authenticate(
                        bearer(headers.get(b"authorization"), headers.get(b"x-api-key"))
                    )
                    self.tenants.admit(tenant, m.name)
                    usage = []  # admitted: released below
                m.check_ready()
                if not m.is_tensor:
                    raise InvalidInput(f"model {m.name} is generative: use its OpenAI-compatible API")
                key = tenant.name if tenant is not None else _peer(scope)
                full = not m.batcher.has_room()
                if not self._fair.admit(key, full):  # answered before the body is read
                    raise QueueFull(
                        f"model {m.name}: queue full ({m.batcher.max_queue_depth} waiting); retry later"
                    )
                client = key
                body = await self._read_body(receive, headers)
                header_length = (
                    None if b"inference-header-content-length" not in headers else _header_length(headers)
                )
                args = (body, header_length, m.tensor_specs, m.text_specs, m.batcher.max_batch_size)
                parsed = (
                    parse_request(*args)
                    if len(body) <= INLINE_BYTES
                    else await m.codec.run(parse_request, *args)
                )
                outputs = await m.infer(parsed, fair_share=full or self._fair.under_share(key), usage=usage)
                limit = self.config.server.max_response_bytes
                if sum([a.nbytes for a in outputs.values()]) <= INLINE_BYTES:
                    content, json_len = encode_response(m.name, m.version, parsed, outputs, limit)
                else:
                    content, json_len = await m.codec.run(
                        encode_response, m.name, m.version, parsed, outputs, limit
                    )
            except ClientGone:
                return
            except Exception as exc:
                status, err, err_headers = _error_answer(
                    exc, name if known else None, self.metrics if known else None
                )
                if tenant is not None and not isinstance(exc, Forbidden | Unauthorized):
                    self._account(tenant, status, None, usage)
                await _respond(send, status, err, *err_headers)
                return
            self._ok.inc()
            took = time.perf_counter() - t0
            self._latency.observe(took)
            if tenant is not None:
                self._account(tenant, 200, took, usage)
            if json_len is None:  # _respond, inline: the one answer every request but errors gets
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"%d" % len(content)), _JSON_HEADER],
                    }
                )
                await send({"type": "http.response.body", "body": content})
            else:
                await _respond(
                    send, 200, content, _BINARY_HEADER, (b"inference-header-content-length", b"%d" % json_len)
                )
        finally:
            if client is not None:
                self._fair.release(client)
            if usage is not None and tenant is not None:
                Tenants.release(tenant)
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    def _account(
        self, tenant: Tenant, status: int, latency_s: float | None, usage: list[float] | None
    ) -> None:
        children = self._tenant_children.get((tenant.name, status))
        if children is None:  # labelled children looked up once per (tenant, status), not per request
            mt, m = self.metrics, self.model.name
            children = (
                mt.tenant_requests.labels(m, tenant.name, str(status)),
                mt.tenant_latency.labels(m, tenant.name),
                mt.tenant_compute.labels(m, tenant.name),
            )
            self._tenant_children[(tenant.name, status)] = children
        children[0].inc()
        if latency_s is not None:
            children[1].observe(latency_s)
        if usage:
            children[2].inc(sum(usage))

    def _check_headers(self, scope: Scope) -> dict[bytes, str]:
        """The headers infer reads, found in one pass over the raw list."""
        found: dict[bytes, str] = {}
        for key, value in scope["headers"]:
            if key in _INFER_HEADERS:
                found[key] = value.decode("latin-1")
        ctype = found.get(b"content-type")
        if (
            ctype is not None
            and ctype != _JSON  # what nearly every client sends: no parsing
            and ctype.split(";")[0].strip().lower() not in _ACCEPTED_TYPES
        ):
            raise UnsupportedMediaType(f"Content-Type {ctype!r}: send application/json")
        encoding = found.get(b"content-encoding")
        if encoding is not None and encoding.lower() != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding.lower()!r} is not supported")
        length = found.get(b"content-length")
        limit = self.config.server.max_body_bytes
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise InvalidInput(f"Content-Length {length!r} is not a number")
            if int(length) > limit:
                raise PayloadTooLarge(f"body of {length} B exceeds server.maxBodyBytes={limit}")
        return found

    async def _read_body(self, receive: Receive, headers: dict[bytes, str]) -> bytes:
        limit = self.config.server.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        watch = self._body_deadlines.start()
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body exceeds server.maxBodyBytes={limit}")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except asyncio.CancelledError:
            if not self._body_deadlines.finish(watch):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            timeout = self._body_deadlines.timeout_s
            raise RequestBodyTimeout(
                f"the body did not arrive within server.bodyTimeoutSeconds={timeout:g} ({size} B read)"
            ) from None
        finally:
            self._body_deadlines.finish(watch)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _header_length(headers: dict[bytes, str]) -> int | None:
    hdr = headers.get(b"inference-header-content-length")
    if hdr is None:
        return None
    if not (hdr.isascii() and hdr.isdigit()):
        raise InvalidInput(f"Inference-Header-Content-Length {hdr!r} is not a number")
    return int(hdr)


async def _post_only(_request: Request) -> Response:  # pragma: no cover - InferGateApp.asgi answers POST
    return _json({"error": "internal routing error"}, 500)


def _spec(s: Any) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}
