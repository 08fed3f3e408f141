#!/usr/bin/env bash
# Installs what bench/server.py compares against, outside the project's lock:
#  - wrk (Debian package) as the load generator;
#  - a separate virtualenv with KServe's Python ModelServer (pip `kserve`), so its pins never touch
#    requirements.lock;
#  - bytecode for both virtualenvs, as the server image has (UV_COMPILE_BYTECODE=1): uv installs
#    without it, and with PYTHONDONTWRITEBYTECODE set every start recompiles torch, vLLM and
#    transformers from source (measured here: vLLM healthy after 57 s without .pyc, 24 s with).
set -euo pipefail
cd "$(dirname "$0")/.."
KSERVE_VENV="${KSERVE_VENV:-$HOME/.cache/infergate/kserve-venv}"
if ! command -v wrk >/dev/null; then
  apt-get update -q && apt-get install -y -q wrk
fi
if [ ! -x "$KSERVE_VENV/bin/python" ]; then
  .venv/bin/uv venv -q --python 3.11 "$KSERVE_VENV"
  .venv/bin/uv pip install -q --python "$KSERVE_VENV/bin/python" kserve onnxruntime numpy
fi
for venv in .venv "$KSERVE_VENV"; do
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ ! -f "$site/.infergate-bytecode" ]; then
    "$venv/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true  # a few py2-only files fail
    touch "$site/.infergate-bytecode"
  fi
done
echo "wrk: $(command -v wrk)"
echo "kserve venv: $KSERVE_VENV ($("$KSERVE_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))'))"
