#!/usr/bin/env bash
# The inference core on the oldest stack we support (AWS Inf1: torch 1.13.1, Python 3.9): builds a side
# virtualenv and runs the core tests there: the test modules marked torch113 (pytest -m torch113).
# Usage: scripts/check_torch113.sh [VENV_DIR]   (default .venv-torch113)
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
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m torch113 tests
