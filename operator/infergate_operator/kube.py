"""A small async Kubernetes REST client on aiohttp (kopf's own HTTP stack).

The operator needs only a handful of verbs on a handful of kinds, so it speaks REST directly
instead of importing the generated `kubernetes` models (tens of MB of RSS for classes it never uses).
Credentials come from kopf's login handlers, so the operator and kopf authenticate the same way.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf
import orjson

FIELD_MANAGER = "infergate"

# kind -> (api path prefix, plural, namespaced)
_RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Event"): ("events", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("events.k8s.io/v1", "Event"): ("events", True),
    ("serving.infergate.io/v1alpha1", "InferenceModel"): ("inferencemodels", True),
    ("argoproj.io/v1alpha1", "Rollout"): ("rollouts", True),
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): ("analysistemplates", True),
    ("argoproj.io/v1alpha1", "AnalysisRun"): ("analysisruns", True),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitors", True),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheusrules", True),
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaledobjects", True),
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"): ("httpscaledobjects", True),
    ("kopf.dev/v1", "ClusterKopfPeering"): ("clusterkopfpeerings", False),
    ("kopf.dev/v1", "KopfPeering"): ("kopfpeerings", True),
}
# A watch stream is idle between events for minutes; the server ends it after this many seconds.
WATCH_SERVER_TIMEOUT_S = 300


class ApiError(Exception):
    """A non-2xx answer from the API server; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        plural, namespaced = _RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"no REST mapping for {api_version} {kind}") from None
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = (
        f"{base}/namespaces/{quote(namespace)}/{plural}" if namespaced and namespace else f"{base}/{plural}"
    )
    return f"{path}/{quote(name)}" if name else path


def _json_payload(response: aiohttp.ClientResponse, raw: bytes) -> dict[str, Any]:
    if raw and response.content_type == "application/json":
        payload: dict[str, Any] = orjson.loads(raw)
        return payload
    return {}


def _api_error(response: aiohttp.ClientResponse, raw: bytes, payload: dict[str, Any]) -> ApiError:
    """The Status the API server sent with a non-2xx answer, or the start of the body without one."""
    return ApiError(
        response.status,
        str(payload.get("reason", response.reason)),
        str(payload.get("message", raw[:500].decode(errors="replace"))),
        payload,
    )


def _materialize(data: str | bytes | None, path: Any, directory: Path, filename: str) -> str | None:
    if path:
        return str(path)
    if data is None:
        return None
    target = directory / filename
    target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(target)


def _ssl_context(info: kopf.ConnectionInfo, directory: Path) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=_materialize(info.ca_data, info.ca_path, directory, "ca.crt"))
    cert = _materialize(info.certificate_data, info.certificate_path, directory, "client.crt")
    key = _materialize(info.private_key_data, info.private_key_path, directory, "client.key")
    if cert:
        context.load_cert_chain(cert, key)
    return context


@dataclass
class KubeClient:
    """Authenticated REST access to one API server."""

    server: str
    session: aiohttp.ClientSession

    @classmethod
    def from_connection(cls, info: kopf.ConnectionInfo, *, limit: int = 48) -> KubeClient:
        directory = Path(tempfile.mkdtemp(prefix="infergate-creds-"))
        headers = {"Accept": "application/json", "User-Agent": "infergate-operator"}
        if info.token:
            headers["Authorization"] = f"Bearer {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info, directory), limit=limit)
        session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            auth=auth,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            # No total: waiting for a pooled connection under load is not a failure; a dead socket is.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
        )
        return cls(server=info.server.rstrip("/"), session=session)

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        accept: str | None = None,
    ) -> dict[str, Any]:
        url = f"{self.server}{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept:
            headers["Accept"] = accept
        async with self.session.request(method, url, data=data, headers=headers) as response:
            raw = await response.read()
            payload = _json_payload(response, raw)
            if response.status >= 400:
                raise _api_error(response, raw, payload)
            return payload

    async def stream(
        self, path: str, *, params: dict[str, str], accept: str = "application/json"
    ) -> AsyncIterator[dict[str, Any]]:
        """One watch request: yields each event object of the newline-delimited JSON stream until the
        server ends it. No read timeout: silence between events is normal; the server's own
        timeoutSeconds ends the request, and the client gives it a minute more."""
        url = f"{self.server}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(
            total=WATCH_SERVER_TIMEOUT_S + 60, sock_connect=5, sock_read=WATCH_SERVER_TIMEOUT_S + 30
        )
        async with self.session.get(url, headers={"Accept": accept}, timeout=timeout) as response:
            if response.status >= 400:
                raw = await response.read()
                raise _api_error(response, raw, _json_payload(response, raw))
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)

    async def apply(
        self, obj: dict[str, Any], *, force: bool, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply of a whole desired object under the infergate field manager."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", params=params
        )

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        result = await self.request("GET", resource_path(api_version, kind, namespace), params=params)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Deletes in the background (dependents by the garbage collector); False if it was already gone."""
        try:
            await self.request(
                "DELETE",
                resource_path(api_version, kind, namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return await self.request(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )

    async def api_group_exists(self, group_version: str) -> bool:
        try:
            await self.request("GET", f"/apis/{group_version}")
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True
