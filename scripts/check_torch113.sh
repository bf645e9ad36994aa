#!/usr/bin/env bash
# The inference core on the oldest stack we support (AWS Inf1: torch 1.13.1, Python 3.9): builds a side
# virtualenv and runs the core tests there. Usage: scripts/check_torch113.sh [VENV_DIR]   (default .venv-torch113)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-torch113}
py=""
# pyenv shims answer to python3.9 even where it is not selected: ask each candidate for its version
for candidate in "$HOME"/.pyenv/versions/3.9*/bin/python python3.9 /usr/local/bin/python3.9 /usr/bin/python3.9; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' >/dev/null 2>&1; then
    py=$candidate
    break
  fi
done
if [ -z "$py" ]; then
  echo "check_torch113: no Python 3.9 interpreter found (install one, e.g. with pyenv)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "torch==1.13.1" "numpy<2"
  # torch 1.13 is built against numpy 1.x: keep numpy < 2 in the same resolve
  "$venv/bin/python" -m pip install -q -e ".[video,export,heic,deploy]" pytest "numpy<2"
fi
"$venv/bin/python" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/models/test_depth_anything_v2.py tests/test_checkpoints.py tests/test_hub_and_api.py tests/models/test_trace.py \
  tests/geometry/test_geometry.py tests/models/da3/test_backbone.py tests/models/da3/test_heads.py tests/models/da3/test_camera.py \
  tests/models/da3/test_network_parity.py tests/models/da3/test_loading.py tests/export/test_formats.py tests/pipelines/test_da3_preprocess.py \
  tests/geometry/test_sim3.py tests/pipelines/test_background.py tests/pipelines/test_multiview.py tests/compat/test_depth_anything_3.py tests/jobs/test_scene.py \
  tests/models/test_depth_anything_v2_parity.py tests/io/test_images.py tests/io/test_video.py tests/export/test_depth_maps.py tests/cli/test_main.py \
  tests/deploy/test_deploy.py tests/cli/test_deploy.py tests/deploy/test_inferentia.py tests/pipelines/depthcrafter/test_windows.py tests/pipelines/test_multiview_precision.py
