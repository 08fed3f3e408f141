"""Where artifacts come from: copy or download one URI into a path that does not exist yet.

Every byte lands under the caller's staging path: object keys and pvc:// paths that would leave it are
refused, not normalised. URIs are redacted (userinfo, query string) before they reach any message or log,
since presigned URLs and `https://user:token@host/` carry credentials.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 256 << 30
"""Most bytes one download may write (a whole directory for an S3 prefix); a pinned digest does not stop
an endless body from filling the disk before the check."""
HTTP_TIMEOUT_S = 3600.0
"""Whole-download deadline for one HTTP transfer (httpx's timeout is per read)."""
_MAX_REDIRECTS = 10


class SourceError(Exception):
    """The URI could not be read; the message names it redacted."""


def redact(uri: str) -> str:
    """`uri` without userinfo, query string or fragment: safe for logs, errors and status messages."""
    try:
        p = urlparse(uri)
    except ValueError:
        return "<unparseable uri>"
    if not p.scheme:
        return uri
    netloc = p.hostname or ""
    if p.port is not None:
        netloc += f":{p.port}"
    if p.username is not None or p.password is not None:
        netloc = "<redacted>@" + netloc
    query = "<redacted>" if p.query else ""
    return urlunparse((p.scheme, netloc, p.path, p.params, query, ""))


def scrub(text: str, uri: str) -> str:
    """`text` with every credential-bearing part of `uri` replaced by its redacted form."""
    text = text.replace(uri, redact(uri))
    try:
        p = urlparse(uri)
    except ValueError:
        return text
    for secret in (p.query, p.password, p.username, p.fragment):
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def safe_relative(rel: str, what: str) -> str:
    """`rel` if it is a relative '/'-separated path with no empty, '.' or '..' segment; else SourceError."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") or "\x00" in p for p in parts):
        raise SourceError(f"{what}: {rel!r} is not a plain relative path (absolute, empty or dot segment)")
    return rel


def inside(root: Path, rel: str, what: str) -> Path:
    """root/rel, refused unless it resolves inside root (a symlinked parent cannot lead out either)."""
    dest = root / safe_relative(rel, what)
    real_root = root.resolve()
    if not dest.resolve().is_relative_to(real_root):
        raise SourceError(f"{what}: {rel!r} resolves outside {root}")
    return dest


def resolve_local(uri: str, pvc_root: Path) -> Path | None:
    """The local path a file://, pvc:// or plain-path URI names; None for remote schemes.

    A pvc:// path must stay inside its claim: `pvc://claim/../other` is refused."""
    parsed = urlparse(uri)
    if parsed.scheme == "pvc":
        claim = parsed.netloc
        if not claim or "/" in claim or claim in (".", ".."):
            raise SourceError(f"{redact(uri)}: {claim!r} is not a claim name")
        rel = parsed.path.strip("/")
        if not rel:
            return pvc_root / claim
        return inside(pvc_root / claim, rel, redact(uri))
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(uri)
    return None


def download(uri: str, target: Path, pvc_root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Copy or download `uri` into `target` (which must not exist yet)."""
    shown = redact(uri)
    local = resolve_local(uri, pvc_root)
    if local is not None:
        if local.is_dir():
            shutil.copytree(local, target, symlinks=True)
        elif local.is_file():
            shutil.copyfile(local, target)
        else:
            raise SourceError(f"{shown}: {local} does not exist")
        return
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _download_http(uri, target, max_bytes)
    elif scheme == "s3":
        _download_s3(uri, target, max_bytes)
    else:
        raise SourceError(f"{shown}: unsupported scheme {scheme!r} (https, s3, pvc, file or a path)")


def _download_http(uri: str, target: Path, max_bytes: int) -> None:
    import httpx

    shown = redact(uri)
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    # Redirects are followed here, not by httpx, so that https never leads to plain http.
    url = uri
    try:
        with httpx.Client(timeout=60.0, follow_redirects=False) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                # identity: the digest is over the file, and a gzip body must not inflate on our disk.
                with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as resp:
                    if resp.is_redirect:
                        nxt = resp.next_request
                        if nxt is None:
                            raise SourceError(f"{shown}: HTTP {resp.status_code} without a Location")
                        if urlparse(url).scheme == "https" and nxt.url.scheme != "https":
                            raise SourceError(f"{shown}: refusing a redirect from https to {nxt.url.scheme}")
                        url = str(nxt.url)
                        continue
                    if resp.status_code != 200:
                        raise SourceError(f"{shown}: HTTP {resp.status_code}")
                    _write_limited(resp.iter_raw(CHUNK), target, max_bytes, deadline, shown)
                    return
            raise SourceError(f"{shown}: more than {_MAX_REDIRECTS} redirects")
    except httpx.HTTPError as exc:
        raise SourceError(scrub(f"{shown}: {type(exc).__name__}: {exc}", uri)) from None


def _write_limited(
    chunks: Iterator[bytes], target: Path, max_bytes: int, deadline: float, shown: str
) -> None:
    written = 0
    with target.open("wb") as f:
        for chunk in chunks:
            written += len(chunk)
            if written > max_bytes:
                raise SourceError(f"{shown}: larger than the {max_bytes} B download limit")
            if time.monotonic() > deadline:
                raise SourceError(f"{shown}: download took longer than {HTTP_TIMEOUT_S:g} s")
            f.write(chunk)


def _download_s3(uri: str, target: Path, max_bytes: int) -> None:
    import boto3
    import botocore.exceptions

    shown = redact(uri)
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    s3 = boto3.client("s3")
    try:
        if key.endswith("/") or not key:
            _download_s3_prefix(s3, bucket, key, target, max_bytes, shown)
        else:
            size = s3.head_object(Bucket=bucket, Key=key).get("ContentLength", 0)
            if size > max_bytes:
                raise SourceError(f"{shown}: {size} B is over the {max_bytes} B download limit")
            s3.download_file(bucket, key, str(target))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise SourceError(scrub(f"{shown}: {exc}", uri)) from None


def _download_s3_prefix(s3: Any, bucket: str, prefix: str, target: Path, max_bytes: int, shown: str) -> None:
    """Every object under `prefix` into `target`/<rest of its key>. A key whose rest is absolute or holds
    an empty or dot segment refuses the whole artifact before anything is downloaded."""
    objects: list[tuple[str, str]] = []
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if not rel or (rel.endswith("/") and obj.get("Size", 0) == 0):  # "folder" markers
                if rel[:-1]:
                    safe_relative(rel[:-1], f"{shown}: object key")
                continue
            safe_relative(rel, f"{shown}: object key")
            total += int(obj.get("Size", 0))
            objects.append((obj["Key"], rel))
    if not objects:
        raise SourceError(f"{shown}: no objects under the prefix")
    if total > max_bytes:
        raise SourceError(f"{shown}: {total} B under the prefix is over the {max_bytes} B download limit")
    target.mkdir()
    for key, rel in objects:
        dest = inside(target, rel, f"{shown}: object key")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            raise SourceError(f"{shown}: object key {rel!r} names a path already written")
        s3.download_file(bucket, key, str(dest))


def remove_stale_staging(parent: Path, name: str, older_than_s: float = 0.0) -> None:
    """Staging folders a killed fetch left beside `name` (`.<name>.*`); no process is still writing
    them, since a destination is fetched by one init container at a time."""
    if not parent.is_dir():
        return
    now = time.time()
    for entry in parent.iterdir():
        stale = entry.name.startswith(f".{name}.") and entry.is_dir() and not entry.is_symlink()
        if stale and now - entry.stat().st_mtime >= older_than_s:
            shutil.rmtree(entry, ignore_errors=True)
