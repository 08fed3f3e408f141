#!/usr/bin/env bash
# Installs what bench/server.py compares against, outside the project's lock:
#  - wrk (Debian package) as the closed-loop load generator;
#  - oha (crates.io, pinned, built once into ~/.cache/infergate/bench-tools) as the open-loop one: it
#    sends at a fixed rate with latency measured from each request's scheduled time, in about a tenth
#    of the CPU a Python generator needs (which on a 2-core host is taken from the server measured);
#  - a separate virtualenv with KServe's Python ModelServer (pip `kserve`), pinned in bench/kserve.lock
#    so that its pins never touch requirements.lock;
#  - py-spy (PyPI, pinned in bench/versions.env) into .venv, outside the lock: the sampling profiler the
#    readings in bench/RESULTS-server.md use on the server's event loop;
#  - bytecode for both virtualenvs, as the server image has (UV_COMPILE_BYTECODE=1): uv installs
#    without it, and with PYTHONDONTWRITEBYTECODE set every start recompiles torch, vLLM and
#    transformers from source (measured here: vLLM healthy after 57 s without .pyc, 24 s with).
set -euo pipefail
cd "$(dirname "$0")/.."
KSERVE_VENV="${KSERVE_VENV:-$HOME/.cache/infergate/kserve-venv}"
source bench/versions.env
OHA_ROOT="$HOME/.cache/infergate/bench-tools/oha-$OHA_VERSION"
if ! command -v wrk >/dev/null; then
  apt-get update -q && apt-get install -y -q wrk
fi
if [ ! -x "$OHA_ROOT/bin/oha" ]; then
  cargo install -q oha --version "$OHA_VERSION" --locked --root "$OHA_ROOT"  # ~6 min on 2 cores
fi
if [ "$(.venv/bin/py-spy --version 2>/dev/null)" != "py-spy $PYSPY_VERSION" ]; then
  .venv/bin/uv pip install -q --python .venv/bin/python "py-spy==$PYSPY_VERSION"
fi
if [ ! -x "$KSERVE_VENV/bin/python" ]; then
  .venv/bin/uv venv -q --python 3.11 "$KSERVE_VENV"
fi
.venv/bin/uv pip sync -q --python "$KSERVE_VENV/bin/python" bench/kserve.lock  # a no-op when current
for venv in .venv "$KSERVE_VENV"; do
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ ! -f "$site/.infergate-bytecode" ]; then
    "$venv/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true  # a few py2-only files fail
    touch "$site/.infergate-bytecode"
  fi
done
echo "wrk: $(command -v wrk)"
echo "oha: $OHA_ROOT/bin/oha ($("$OHA_ROOT/bin/oha" --version))"
echo "py-spy: $(.venv/bin/py-spy --version)"
echo "kserve venv: $KSERVE_VENV ($("$KSERVE_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))'))"
