#!/usr/bin/env bash
# The inference core on the oldest stack we support (AWS Inf1: torch 1.13.1, Python 3.9): builds a side
# virtualenv and runs the core tests there. Usage: scripts/check_torch113.sh [VENV_DIR]   (default .venv-torch113)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-torch113}
py=""
for candidate in python3.9 "$HOME"/.pyenv/versions/3.9*/bin/python /usr/local/bin/python3.9; do
  if command -v "$candidate" >/dev/null 2>&1; then py=$(command -v "$candidate"); break; fi
done
if [ -z "$py" ]; then
  echo "check_torch113: no Python 3.9 interpreter found (install one, e.g. with pyenv)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "torch==1.13.1" "numpy<2"
  "$venv/bin/python" -m pip install -q -e ".[video,export,heic]" pytest
fi
"$venv/bin/python" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_models.py tests/test_checkpoints.py tests/test_hub_and_api.py tests/test_trace.py \
  tests/test_v2_parity.py tests/test_io_images.py tests/test_io_video.py tests/test_export_depth_maps.py tests/test_cli.py
