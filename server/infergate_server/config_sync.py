"""Wait until the mounted config is the one this pod's revision was built with.

The operator names, in `INFERGATE_CONFIG_DIGESTS` on the pod template, the SHA-256 of every key of the
model's ConfigMap as it rendered them for this revision (`server.yaml=<hex>,drift-baseline.json=<hex>`).
A new pod's ConfigMap volume can hold the previous revision's copy: the kubelet serves it from the cache
it keeps for the pods already running on the node, and catches up on a later sync. Loading that copy
would run the previous revision's golden set (and model) under the new revision, so a canary that should
fail its golden set could pass it. So the fetch step and the server wait for the files to match, and fail
with a message naming the keys when they never do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .config import ConfigError

log = logging.getLogger(__name__)

DIGESTS_ENV = "INFERGATE_CONFIG_DIGESTS"
TIMEOUT_ENV = "INFERGATE_CONFIG_SYNC_TIMEOUT_S"
# The kubelet refreshes a pod's ConfigMap volumes on its periodic sync (1 min by default, plus jitter and
# the ConfigMap cache's own lag): three of those before calling the mount wrong.
DEFAULT_TIMEOUT_S = 180.0
_KEY = re.compile(r"[-._a-zA-Z0-9]+")  # a ConfigMap key (what the API server accepts)
_HEX = re.compile(r"[0-9a-f]{64}")


def parse_digests(value: str) -> dict[str, str]:
    """`key=hex,key=hex` → {key: hex}; ConfigError naming the variable and the bad entry."""
    digests: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        key, sep, digest = entry.partition("=")
        if not sep or not _KEY.fullmatch(key) or key in (".", "..") or not _HEX.fullmatch(digest):
            raise ConfigError(f"{DIGESTS_ENV}: expected key=<64 lowercase hex> entries, got {entry[:80]!r}")
        digests[key] = digest
    if not digests:
        raise ConfigError(f"{DIGESTS_ENV}: is set but names no key")
    return digests


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def stale_keys(config_dir: Path, expected: Mapping[str, str]) -> list[str]:
    """The keys whose mounted file is missing or differs from the revision's digest."""
    return sorted(key for key, digest in expected.items() if file_digest(config_dir / key) != digest)


def wait_for_revision_config(
    config_path: Path,
    environ: Mapping[str, str] = os.environ,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval_s: float = 1.0,
) -> None:
    """Return once every key named in DIGESTS_ENV matches the file beside `config_path`; at once when the
    variable is unset (a config outside a pod the operator built). ConfigError after the timeout."""
    value = environ.get(DIGESTS_ENV)
    if value is None:
        return
    expected = parse_digests(value)
    try:
        timeout_s = float(environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}: not a number of seconds") from None
    config_dir = config_path.parent
    deadline = clock() + timeout_s
    stale = stale_keys(config_dir, expected)
    if stale:
        log.warning(
            "mounted config is not this revision's yet (%s); waiting for the kubelet", ", ".join(stale)
        )
    while stale:
        if clock() >= deadline:
            raise ConfigError(
                f"{config_dir}: {', '.join(stale)} never matched this revision's config in {timeout_s:.0f}s "
                "(the kubelet still mounts another revision's ConfigMap)"
            )
        sleep(interval_s)
        stale = stale_keys(config_dir, expected)
