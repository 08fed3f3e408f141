"""Lays out the built example files as the examples' pvc://models/<example>/<file> URIs expect.

    python examples/stage_models.py DEST

examples/models/<example>/model/<file> becomes DEST/<example>/<file>, or DEST/<example>/model/<file> where
the example's URI names the folder itself; hard links where the filesystem allows, else copies;
world-readable: the model pods run as uid 65532 and mount DEST read-only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent / "models"


def _names_the_folder(example: Path) -> bool:
    """Whether the example's URI is its model folder (pvc://models/<example>/model), not a file in it."""
    manifest = example / "inferencemodel.yaml"
    return manifest.is_file() and f"uri: pvc://models/{example.name}/model\n" in manifest.read_text()


def stage(dest: Path) -> list[Path]:
    placed: list[Path] = []
    for built in sorted(EXAMPLES.glob("*/model")):
        target_dir = dest / built.parent.name
        if _names_the_folder(built.parent):  # e.g. pvc://models/smollm2/model: the folder is the artifact
            target_dir = target_dir / built.name
        for source in sorted(built.rglob("*")):
            if not source.is_file() or source.is_symlink():
                continue
            target = target_dir / source.relative_to(built)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if target.exists() and os.path.samefile(source, target):
                placed.append(target)
                continue
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
            target.chmod(0o644)
            placed.append(target)
    for directory in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    return placed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: stage_models.py DEST")
    for path in stage(Path(sys.argv[1])):
        print(f"  {path}")
