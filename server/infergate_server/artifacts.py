"""Fetch a model artifact, verify it, and only then put it where the server loads it.

Digests: a file's is the SHA-256 of its bytes. A directory's is the **manifest digest**: list every regular
file under it (recursively; symlinks are refused) by its path relative to the directory, '/'-separated,
sorted by UTF-8 bytes; write one line `<sha256 hex of the file>  <relative path>\\n` per file (the format
of `sha256sum`); the digest is the SHA-256 of that text. The same value, by shell:
    (cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum

Sources (sources.py): https:// (and http://), s3://bucket/key (a key ending in '/' is a prefix → a
directory; the client honours AWS_ENDPOINT_URL for S3-compatible stores), pvc://claim/path (read from
<pvc root>/claim/path, where the pod mounts its claims), file:// and plain paths. A download lands in a
staging folder beside the destination, is verified, and is renamed into place atomically; a mismatch
deletes it, and the next fetch removes staging folders a killed one left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import oci
from .config import SignatureConfig
from .sources import DEFAULT_MAX_BYTES, SourceError, download, redact, remove_stale_staging, resolve_local

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_PVC_ROOT = "/mnt/pvc"

__all__ = [
    "ArtifactError",
    "DigestMismatch",
    "digest_of",
    "fetch",
    "file_sha256",
    "resolve_local",
    "verify_present",
]


class ArtifactError(Exception):
    """The artifact could not be fetched or failed verification; the message says which and why."""


class DigestMismatch(ArtifactError):  # noqa: N818
    """The artifact's digest is not the pinned one."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in (*filenames, *dirnames):
            p = Path(dirpath) / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{p}: symlinks are not allowed inside a model directory")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO would block the read forever
                raise ArtifactError(f"{p}: only regular files and directories are allowed in a model")
        for name in filenames:
            p = Path(dirpath) / name
            yield p.relative_to(root).as_posix(), p


def manifest(root: Path) -> str:
    entries = sorted(_files(root), key=lambda e: e[0].encode("utf-8"))
    return "".join(f"{file_sha256(p)}  {rel}\n" for rel, p in entries)


def digest_of(path: Path) -> str:
    """SHA-256 of a file, or the manifest digest of a directory."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None
    if stat.S_ISDIR(mode):
        return hashlib.sha256(manifest(path).encode("utf-8")).hexdigest()
    if stat.S_ISREG(mode):
        return file_sha256(path)
    raise ArtifactError(f"{path} is neither a regular file nor a directory")


def verify_digest(path: Path, expected: str) -> str:
    actual = digest_of(path)
    if actual != expected.lower():
        kind = "manifest digest" if path.is_dir() else "sha256"
        raise DigestMismatch(f"{path}: {kind} is {actual}, expected {expected} — refusing the artifact")
    return actual


def verify_signature(model: Path, signature: SignatureConfig, bundle: Path) -> None:
    """Check an OpenSSF model-signing bundle over `model` (file or directory)."""
    try:
        import model_signing
    except ImportError as exc:
        raise ArtifactError(f"model.signature is set but model_signing is not installed: {exc}") from None
    cfg = model_signing.verifying.Config()  # type: ignore[no-untyped-call]
    if signature.public_key is not None:
        cfg = cfg.use_elliptic_key_verifier(public_key=signature.public_key)
    else:
        cfg = cfg.use_sigstore_verifier(identity=signature.identity or "", oidc_issuer=signature.issuer or "")
    try:
        cfg.verify(model, bundle)
    except Exception as exc:  # model_signing raises ValueError and friends for any failed check
        raise ArtifactError(f"{model}: signature verification failed: {exc}") from None


@dataclass(frozen=True)
class Fetched:
    digest: str
    outcome: str
    """"hit" (a copy already in place verified), "miss" (none: fetched), "refetched" (a copy in place did not
    verify: replaced)."""
    detail: str = ""


def fetch(
    uri: str,
    dest: Path,
    sha256: str | None,
    *,
    signature: SignatureConfig | None = None,
    pvc_root: Path = Path(DEFAULT_PVC_ROOT),
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "model.uri",
) -> str:
    """fetch_detailed's digest."""
    return fetch_detailed(
        uri, dest, sha256, signature=signature, pvc_root=pvc_root, max_bytes=max_bytes, field=field
    ).digest


def fetch_detailed(
    uri: str,
    dest: Path,
    sha256: str | None,
    *,
    signature: SignatureConfig | None = None,
    pvc_root: Path = Path(DEFAULT_PVC_ROOT),
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "model.uri",
) -> Fetched:
    """Put a verified copy of `uri` at `dest` and return its digest; nothing unverified lands at `dest`.

    Messages and logs name `uri` redacted (no userinfo, no query string). An oci:// uri is pinned by its
    manifest digest (oci.py); `sha256`, when given as well, must also match. `field` names the uri's field
    in messages (model.uri, runtime.tokenizer.uri)."""
    shown = redact(uri)
    pinned_by_uri = oci.is_oci(uri)
    if pinned_by_uri:
        try:
            oci.parse_reference(uri, field)  # a tag is refused before anything is written
        except oci.OciError as exc:
            raise ArtifactError(str(exc)) from None
    if sha256 is None and not pinned_by_uri:
        raise ArtifactError(f"{shown}: no sha256 given; refusing an unpinned artifact")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dest.parent, dest.name)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    outcome, detail = "miss", ""
    try:
        if dest.exists():
            try:
                digest = verify_present(uri, dest, sha256, field)
            except (DigestMismatch, oci.OciError) as exc:
                log.warning("%s exists but does not verify (%s); fetching again", dest, exc)
                outcome, detail = "refetched", str(exc)
            else:
                if signature is not None:  # a matching digest does not vouch for the signature
                    _check_signature(dest, signature, work, pvc_root)
                log.info("%s already present and verified (%s)", dest, digest)
                return Fetched(digest, "hit")
        staged = work / dest.name
        kept: Path | None = None
        if pinned_by_uri:
            kept = oci.manifest_path(staged)
            kept.write_bytes(oci.pull(uri, staged, max_bytes, field=field))
            digest = oci.parse_reference(uri, field).digest.removeprefix("sha256:")  # the manifest's
            if sha256 is not None:  # the manifest pins the layers; a given sha256 must hold as well
                verify_digest(staged, sha256)
        else:
            download(uri, staged, pvc_root, max_bytes)
            digest = verify_digest(staged, sha256 or "")
        if signature is not None:
            _check_signature(staged, signature, work, pvc_root)
        if dest.exists():
            old = work / "previous"
            dest.rename(old)
        staged.rename(dest)
        if kept is not None:
            kept.replace(oci.manifest_path(dest))
        log.info("fetched %s to %s (%s)", shown, dest, digest)
        return Fetched(digest, outcome, detail)
    except DigestMismatch as exc:
        raise DigestMismatch(str(exc).replace(str(work / dest.name), shown)) from None
    except oci.OciDigestMismatch as exc:
        raise DigestMismatch(str(exc).replace(str(work / dest.name), shown)) from None
    except SourceError as exc:
        raise ArtifactError(str(exc)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify_in_place(
    path: Path,
    sha256: str,
    *,
    signature: SignatureConfig | None = None,
    pvc_root: Path = Path(DEFAULT_PVC_ROOT),
) -> str:
    """Verify an artifact that is already where it will be loaded from and is not ours to copy (an image
    volume): its digest against `sha256`, then its signature. Returns the digest."""
    if not path.exists():
        raise ArtifactError(f"{path}: not found in the mounted image (model.imageVolume.path)")
    digest = verify_digest(path, sha256)
    if signature is not None:
        with tempfile.TemporaryDirectory(prefix="infergate-signature.") as work:
            _check_signature(path, signature, Path(work), pvc_root)
    log.info("%s verified in place (%s)", path, digest)
    return digest


def verify_present(uri: str, dest: Path, sha256: str | None, field: str = "model.uri") -> str:
    """Re-verify a copy fetched before against its pin, offline (the fetch step on reuse, the node cache's
    sweep): an oci:// copy against the manifest kept beside it, which must hash to the uri's digest; any
    other against `sha256`. Returns the digest; raises DigestMismatch or oci.OciError."""
    if oci.is_oci(uri):
        digest = oci.verify_copy(uri, dest, field).removeprefix("sha256:")
        if sha256 is not None:
            verify_digest(dest, sha256)
        return digest
    return verify_digest(dest, sha256 or "")


def _check_signature(model: Path, signature: SignatureConfig, work: Path, pvc_root: Path) -> None:
    bundle = work / "signature.bundle"
    download(signature.bundle_uri, bundle, pvc_root)
    verify_signature(model, signature, bundle)
