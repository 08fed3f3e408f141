"""oci:// model artifacts: pulled with ORAS's Python library, pinned by manifest digest, verified by blob.

`oci://<registry>/<repository>@sha256:<64 hex>` only: a tag can be moved, so it is refused. The manifest's
bytes must hash to the pinned digest (so every layer digest in it is pinned too), and each layer is hashed
while it streams to disk and must match its descriptor's digest and size; nothing is renamed into place by
the caller before all of that held.

Layout: every layer carries its path in the `org.opencontainers.image.title` annotation (what `oras push`
and `infergate-server push` write). One layer whose title has no '/' is a file artifact; anything else is
a directory whose files are the layers, each at its title (relative, no '.' or '..' segment, no repeats).
Packed layers (a directory pushed as one tarball) are refused rather than unpacked.

Credentials come from a Docker config file (a kubernetes.io/dockerconfigjson Secret's `.dockerconfigjson`,
`$INFERGATE_REGISTRY_AUTH_FILE`); they never reach a message or a log. Registries on loopback and those named
in `$INFERGATE_OCI_PLAIN_HTTP` (host:port, comma-separated) are spoken to over plain HTTP, others over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sources import CHUNK, HTTP_TIMEOUT_S, SourceError, inside, safe_relative

REFERENCE_RE = re.compile(
    r"^oci://(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"@sha256:(?P<digest>[0-9a-f]{64})$"
)
TITLE = "org.opencontainers.image.title"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20
"""The distribution spec's limit on a manifest; a larger body is refused before it is read whole."""
AUTH_FILE_ENV = "INFERGATE_REGISTRY_AUTH_FILE"
MANIFEST_SUFFIX = ".oci-manifest.json"
PLAIN_HTTP_ENV = "INFERGATE_OCI_PLAIN_HTTP"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class OciError(SourceError):
    """The reference, the registry's answer or the content is refused; the message names `field`."""


class OciDigestMismatch(OciError):  # noqa: N818
    """Bytes (the manifest, a layer, a kept copy) do not hash to the digest that pins them."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    digest: str  # "sha256:<hex>"

    @property
    def uri(self) -> str:
        return f"oci://{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    title: str


def parse_reference(uri: str, field: str = "model.uri") -> Reference:
    """The pinned reference; a tag, a missing digest or a malformed name is refused naming `field`."""
    m = REFERENCE_RE.match(uri)
    if m is None:
        head = uri.split("@", 1)[0]
        last = head.rsplit("/", 1)[-1]
        if "@" not in uri and ":" in last:
            why = f"the tag {last.split(':', 1)[1]!r} is not a digest (a tag can be moved)"
        elif "@" not in uri:
            why = "no @sha256:<digest>"
        else:
            why = "not oci://<registry>/<repository>@sha256:<64 lowercase hex>"
        raise OciError(
            f"{field}: {head}: {why}; pin the manifest: oci://<registry>/<repository>@sha256:<digest>"
        )
    return Reference(m["registry"], m["repository"], "sha256:" + m["digest"])


def is_oci(uri: str) -> bool:
    return uri.startswith("oci://")


def plain_http(registry: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry.split("]", 1)[0] + "]"
    listed = {h.strip() for h in environ.get(PLAIN_HTTP_ENV, "").split(",") if h.strip()}
    return host in _LOOPBACK or registry in listed


def credentials(registry: str, auth_file: Path, field: str) -> tuple[str, str] | None:
    """(username, password) for `registry` from a Docker config file, or None when it has no entry."""
    try:
        config = json.loads(auth_file.read_text(encoding="utf-8"))
        auths = config.get("auths", {}) if isinstance(config, dict) else {}
    except (OSError, ValueError) as exc:
        raise OciError(
            f"{field}: the pull secret {auth_file} is not a readable Docker config: {type(exc).__name__}"
        ) from None
    if not isinstance(auths, dict):
        raise OciError(f"{field}: the pull secret {auth_file} has no 'auths' object")
    for key in (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return entry["username"], entry["password"]
        if isinstance(entry.get("auth"), str):
            try:
                user, _, password = (
                    base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
                )
            except (ValueError, UnicodeDecodeError):
                raise OciError(
                    f"{field}: the pull secret's entry for {registry} has an undecodable 'auth'"
                ) from None
            return user, password
    return None


def registry_client(ref: Reference, auth_file: Path | None, field: str) -> Any:
    import oras.provider
    import requests

    insecure = plain_http(ref.registry)
    creds = credentials(ref.registry, auth_file, field) if auth_file is not None else None
    # Basic-auth registries (htpasswd) answer /v2/ with a Basic challenge, token registries with Bearer.
    scheme = "http" if insecure else "https"
    try:
        probe = requests.get(f"{scheme}://{ref.registry}/v2/", timeout=30)
    except requests.RequestException as exc:
        raise OciError(f"{field}: {ref.uri}: {ref.registry} unreachable: {type(exc).__name__}") from None
    basic = probe.headers.get("Www-Authenticate", "").lower().startswith("basic")
    if basic and creds is None:
        raise OciError(
            f"{field}: {ref.uri}: the registry asks for credentials (HTTP {probe.status_code}) and none were "
            "given; set spec.model.pullSecretName"
        )
    backend = "basic" if basic else "token"
    registry = oras.provider.Registry(hostname=ref.registry, insecure=insecure, auth_backend=backend)
    if creds is not None:
        registry.auth.set_basic_auth(*creds)
    return registry


def _get(registry: Any, url: str, ref: Reference, field: str, what: str, **kw: Any) -> Any:
    import requests

    # Without ORAS's retry wrapper: it sleeps 3+5+11+29+83 s on any error, a refused token included. The
    # fetch step fails at once instead, and the kubelet restarts it with its own back-off.
    request = getattr(type(registry).do_request, "__wrapped__", None)
    try:
        resp = request(registry, url, "GET", **kw) if request else registry.do_request(url, "GET", **kw)
    except (requests.RequestException, ValueError) as exc:
        raise OciError(f"{field}: {ref.uri}: {what}: {type(exc).__name__}") from None
    if resp.status_code in (401, 403):
        raise OciError(
            f"{field}: {ref.uri}: the registry refused the credentials (HTTP {resp.status_code}) for {what}; "
            f"check spec.model.pullSecretName"
        )
    if resp.status_code != 200:
        raise OciError(f"{field}: {ref.uri}: HTTP {resp.status_code} for {what}")
    return resp


def fetch_manifest(registry: Any, ref: Reference, field: str) -> bytes:
    """The manifest's bytes, refused unless they hash to the pinned digest."""
    url = f"{registry.prefix}://{ref.registry}/v2/{ref.repository}/manifests/{ref.digest}"
    accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
    with _get(registry, url, ref, field, "the manifest", headers={"Accept": accept}, stream=True) as resp:
        body = b""
        for chunk in resp.iter_content(CHUNK):
            body += chunk
            if len(body) > MAX_MANIFEST_BYTES:
                raise OciError(f"{field}: {ref.uri}: the manifest is larger than {MAX_MANIFEST_BYTES} B")
    check_manifest_digest(body, ref, field, "the registry's manifest")
    return body


def check_manifest_digest(body: bytes, ref: Reference, field: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if actual != ref.digest:
        raise OciDigestMismatch(
            f"{field}: {ref.uri}: {what} has digest {actual}, not the pinned {ref.digest}; "
            "refusing the artifact"
        )


def layers_of(body: bytes, ref: Reference, field: str) -> list[Layer]:
    """The manifest's layers, each with a safe relative title and a sha256 digest; refused otherwise."""
    try:
        manifest = json.loads(body)
    except ValueError:
        raise OciError(f"{field}: {ref.uri}: the manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise OciError(f"{field}: {ref.uri}: the manifest is not a JSON object")
    media = manifest.get("mediaType")
    if media in INDEX_TYPES or "manifests" in manifest:
        raise OciError(f"{field}: {ref.uri}: is an index (several platforms); pin one manifest's digest")
    if media is not None and media not in MANIFEST_TYPES:
        raise OciError(f"{field}: {ref.uri}: unsupported manifest media type {media!r}")
    raw = manifest.get("layers")
    if not isinstance(raw, list) or not raw:
        raise OciError(f"{field}: {ref.uri}: the manifest has no layers")
    layers: list[Layer] = []
    seen: set[str] = set()
    for i, desc in enumerate(raw):
        where = f"{field}: {ref.uri}: layer {i}"
        if not isinstance(desc, dict):
            raise OciError(f"{where}: not a descriptor")
        digest, size = desc.get("digest"), desc.get("size")
        if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise OciError(f"{where}: digest {digest!r} is not sha256:<64 lowercase hex>")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OciError(f"{where}: size {size!r} is not a byte count")
        annotations = desc.get("annotations") or {}
        title = annotations.get(TITLE) if isinstance(annotations, dict) else None
        if not isinstance(title, str):
            raise OciError(f"{where}: no {TITLE} annotation (the file's path)")
        if annotations.get("io.deis.oras.content.unpack") == "true":
            raise OciError(f"{where}: a packed directory ({title!r}); push its files as separate layers")
        try:
            safe_relative(title, where)
        except SourceError as exc:
            raise OciError(str(exc)) from None
        if title in seen or any(t.startswith(title + "/") or title.startswith(t + "/") for t in seen):
            raise OciError(f"{where}: title {title!r} repeats or nests under another layer's")
        seen.add(title)
        layers.append(Layer(digest, size, title))
    return layers


def _stream_verified(chunks: Iterator[bytes], dest: Path, layer: Layer, deadline: float, where: str) -> None:
    h = hashlib.sha256()
    written = 0
    with dest.open("wb") as f:
        for chunk in chunks:
            written += len(chunk)
            if written > layer.size:
                raise OciDigestMismatch(
                    f"{where}: more bytes than the manifest's size {layer.size}; refusing it"
                )
            if time.monotonic() > deadline:
                raise OciError(f"{where}: download took longer than {HTTP_TIMEOUT_S:g} s")
            h.update(chunk)
            f.write(chunk)
    actual = "sha256:" + h.hexdigest()
    if written != layer.size or actual != layer.digest:
        raise OciDigestMismatch(
            f"{where}: content is {actual} ({written} B), the manifest pins {layer.digest} ({layer.size} B); "
            "refusing the artifact"
        )


def pull(
    uri: str,
    target: Path,
    max_bytes: int,
    *,
    field: str = "model.uri",
    auth_file: Path | None = None,
) -> bytes:
    """Pull the pinned artifact into `target` (which must not exist) and return the verified manifest's
    bytes (the caller keeps them beside the artifact: `manifest_path`).

    On any refusal `target` may hold a partial download: the caller deletes its staging folder."""
    ref = parse_reference(uri, field)
    if auth_file is None and os.environ.get(AUTH_FILE_ENV):
        auth_file = Path(os.environ[AUTH_FILE_ENV])
    registry = registry_client(ref, auth_file, field)
    body = fetch_manifest(registry, ref, field)
    layers = layers_of(body, ref, field)
    total = sum(layer.size for layer in layers)
    if total > max_bytes:
        raise OciError(f"{field}: {ref.uri}: {total} B of layers is over the {max_bytes} B download limit")
    single = len(layers) == 1 and "/" not in layers[0].title
    if not single:
        target.mkdir()
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    for layer in layers:
        dest = target if single else inside(target, layer.title, f"{field}: {ref.uri}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = f"{registry.prefix}://{ref.registry}/v2/{ref.repository}/blobs/{layer.digest}"
        where = f"{field}: {ref.uri}: layer {layer.title!r}"
        with _get(registry, url, ref, field, f"layer {layer.title!r}", stream=True) as resp:
            _stream_verified(resp.iter_content(CHUNK), dest, layer, deadline, where)
    return body


def verify_local(path: Path, layers: list[Layer], where: str) -> None:
    """`path` holds exactly the layers' files with their digests (a copy pulled before, re-checked)."""
    from .artifacts import digest_of

    single = len(layers) == 1 and "/" not in layers[0].title
    expected = {"": layers[0]} if single else {layer.title: layer for layer in layers}
    if single:
        found = {"": path} if path.is_file() and not path.is_symlink() else {}
    else:
        if not path.is_dir() or path.is_symlink():
            raise OciError(f"{where}: {path} is not a directory")
        found = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if not p.is_dir()}
    if set(found) != set(expected):
        raise OciDigestMismatch(f"{where}: {path} does not hold exactly the manifest's files")
    for key, layer in expected.items():
        actual = "sha256:" + digest_of(found[key])
        if actual != layer.digest:
            raise OciDigestMismatch(f"{where}: {found[key]} is {actual}, the manifest pins {layer.digest}")


def manifest_path(artifact: Path) -> Path:
    """Where the verified manifest is kept beside a pulled artifact (re-verification needs no registry)."""
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def verify_copy(uri: str, path: Path, field: str = "model.uri") -> str:
    """Re-verify a copy pulled before against the pin, offline: the kept manifest must hash to the pinned
    digest and every file must match its layer. Returns the manifest digest."""
    ref = parse_reference(uri, field)
    try:
        body = manifest_path(path).read_bytes()
    except OSError:
        raise OciError(f"{field}: {ref.uri}: no verified manifest beside {path}") from None
    check_manifest_digest(body, ref, field, f"the manifest kept beside {path}")
    verify_local(path, layers_of(body, ref, field), f"{field}: {ref.uri}")
    return ref.digest
