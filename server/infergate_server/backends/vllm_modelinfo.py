"""vLLM's model-info cache, seeded from the image so that a pod's first start skips an inspection.

Before it loads a model, vLLM inspects the model's class in a subprocess that imports vLLM again, and
keeps the answer in `<VLLM_CACHE_ROOT>/modelinfos/`, keyed by a hash of the model's source file (not of
the weights). A pod's cache lives in an emptyDir, so without a seed every pod start pays for that
subprocess: about 7 s of the 26 s SmolLM2 takes to turn ready on two idle cores (bench/RESULTS-vllm.md).

The image build runs `python -m infergate_server.backends.vllm_modelinfo DIR ARCH...`, which asks the
installed vLLM to inspect each architecture and copies what vLLM wrote into DIR; the backend copies
DIR's files into the child's cache before each start, never over a file already there. vLLM checks each
file's hash itself, so a seed from another vLLM build is ignored, never trusted.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

SEED_ENV = "INFERGATE_VLLM_MODELINFO_SEED"
DEFAULT_SEED = Path("/opt/infergate/vllm-modelinfos")
# The decoder families the image warms by default; any other architecture is inspected at start as before.
DEFAULT_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Gemma2ForCausalLM",
    "Phi3ForCausalLM",
)


def cache_root(env: Mapping[str, str]) -> Path:
    """Where vLLM running with `env` keeps its cache (vLLM's own rule: VLLM_CACHE_ROOT, else
    $XDG_CACHE_HOME/vllm, else ~/.cache/vllm)."""
    if env.get("VLLM_CACHE_ROOT"):
        return Path(env["VLLM_CACHE_ROOT"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or str(Path.home()), ".cache")
    return Path(xdg).expanduser() / "vllm"


def seed_directory(env: Mapping[str, str]) -> Path:
    return Path(env.get(SEED_ENV) or DEFAULT_SEED)


def seed_cache(env: Mapping[str, str]) -> int:
    """Copy the seed's model-info files into the cache of a vLLM that runs with `env`; logs and returns
    how many were copied. A missing seed, or a cache that cannot be written, only costs the start its
    inspection."""
    seed = seed_directory(env)
    if not seed.is_dir():
        return 0
    target = cache_root(env) / "modelinfos"
    copied = 0
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(seed.glob("*.json")):
            dest = target / source.name
            if not dest.exists():
                shutil.copyfile(source, dest)
                copied += 1
    except OSError as exc:
        log.warning("vLLM model-info seed %s not copied to %s: %s", seed, target, exc)
    if copied:
        log.info("seeded vLLM's model-info cache with %d file(s) from %s", copied, seed)
    return copied


def build_seed(out: Path, architectures: list[str]) -> list[Path]:
    """Inspect each architecture with the installed vLLM and put the cache files it wrote into `out`."""
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as tmp:
        os.environ["VLLM_CACHE_ROOT"] = tmp  # read by vLLM when it saves, so set before it is imported
        from vllm.model_executor.models.registry import ModelRegistry

        for arch in architectures:
            # vLLM's registry has no public call for one class without a model config; this is the
            # step `vllm serve` runs, and it fails loudly if the pinned vLLM changes it.
            if ModelRegistry._try_inspect_model_cls(arch) is None:
                raise SystemExit(f"vLLM does not know the architecture {arch!r}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for source in sorted((Path(tmp) / "modelinfos").glob("*.json")):
            written.append(Path(shutil.copy(source, out / source.name)))
    return written


def check_kernels() -> int:
    """Import vLLM and its compiled kernels for this platform and return how many ops they registered.
    vLLM only logs a warning when its extension fails to load (on CPU: `libnuma.so.1` missing), and then
    fails at the first forward pass; the image build calls this to fail instead."""
    import torch
    import vllm
    from vllm.platforms import current_platform

    current_platform.import_kernels()
    ops = [name for name in torch._C._dispatch_get_all_op_names() if name.startswith("_C::")]
    if not ops:
        raise SystemExit(f"vLLM {vllm.__version__} imported, but its kernels did not load (see the warning)")
    print(f"vllm {vllm.__version__} on {type(current_platform).__name__}: {len(ops)} kernel ops")
    return len(ops)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check-kernels"]:
        check_kernels()
        return
    if not args or args[0].startswith("-"):
        usage = "python -m infergate_server.backends.vllm_modelinfo DIR [ARCHITECTURE...] | --check-kernels"
        raise SystemExit(f"usage: {usage}")
    out, archs = Path(args[0]), args[1:] or list(DEFAULT_ARCHITECTURES)
    written = build_seed(out, archs)
    if not written:  # the image build relies on this: no seed is an error, not a quiet slow start
        raise SystemExit(f"vLLM wrote no model-info files for {', '.join(archs)}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
