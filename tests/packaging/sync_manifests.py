"""Copies the CRDs into the kustomize base (kustomize cannot load files above its root).

`python -m tests.packaging.sync_manifests` after `make crd`; test_kustomize fails while a copy differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_CRDS = REPO / "manifests" / "base" / "crds"
SOURCES = (
    REPO / "crds" / "serving.infergate.io_inferencemodels.yaml",
    REPO / "crds" / "kopf.dev_peerings.yaml",
)


def stale() -> list[Path]:
    """Sources whose copy in manifests/base/crds/ is missing or different."""
    return [
        s
        for s in SOURCES
        if not (BASE_CRDS / s.name).exists() or (BASE_CRDS / s.name).read_text() != s.read_text()
    ]


def main() -> int:
    for source in stale():
        (BASE_CRDS / source.name).write_text(source.read_text())
        sys.stdout.write(f"updated {(BASE_CRDS / source.name).relative_to(REPO)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
