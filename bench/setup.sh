#!/usr/bin/env bash
# Installs what bench/server.py compares against, outside the project's lock:
#  - wrk (Debian package) as the load generator;
#  - a separate virtualenv with KServe's Python ModelServer (pip `kserve`), so its pins never touch
#    requirements.lock.
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
echo "wrk: $(command -v wrk)"
echo "kserve venv: $KSERVE_VENV ($("$KSERVE_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))'))"
