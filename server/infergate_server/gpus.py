"""How many GPUs this replica holds, as the NVIDIA device plugin told the container (for the cost metrics)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

_DEVICE_NODE = re.compile(r"^nvidia\d+$")


def gpus_allocated(env: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> int:
    """GPUs in NVIDIA_VISIBLE_DEVICES (a comma-separated list of indices or UUIDs); "all" counts the
    /dev/nvidiaN device nodes; unset, empty, "void" or "none" is 0 (a CPU replica)."""
    value = (os.environ if env is None else env).get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if value.lower() in ("", "void", "none"):
        return 0
    if value.lower() == "all":
        try:
            return sum(1 for p in dev.iterdir() if _DEVICE_NODE.match(p.name))
        except OSError:
            return 0
    return len([part for part in value.split(",") if part.strip()])
