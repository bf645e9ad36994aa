#!/usr/bin/env bash
# Installs PyTorch into a virtualenv, choosing the build the machine can use (called by the Makefiles):
#   - TORCH_INDEX_URL set: torch from that index (e.g. https://download.pytorch.org/whl/cu126 for one CUDA version);
#   - an NVIDIA GPU visible (nvidia-smi -L lists one): PyPI's build, which on Linux is the CUDA build (about 1 GB
#     of torch and 3 GB of NVIDIA libraries);
#   - otherwise on Linux: a torch wheel that pip finds without any index (a wheelhouse in pip's find-links) as it
#     is, or else the CPU build from PyTorch's own index, as PyTorch's install instructions do (a 190 MB download,
#     750 MB installed); on macOS and Windows PyPI's build, which there is the CPU (and MPS) one.
# Usage: scripts/install_torch.sh PYTHON [REQUIREMENT]   (PYTHON: the virtualenv's interpreter; REQUIREMENT
# defaults to torch, e.g. torch==2.13.0). PIP_INSTALL replaces "PYTHON -m pip install" (e.g. "uv pip install
# --python PYTHON"); DRY_RUN=1 prints the install command instead of running it.
set -euo pipefail

py=${1:?usage: install_torch.sh PYTHON [REQUIREMENT]}
requirement=${2:-torch}
CPU_INDEX=https://download.pytorch.org/whl/cpu
read -r -a installer <<<"${PIP_INSTALL:-$py -m pip install}"

install() {
  echo "+ ${installer[*]} $*"
  if [ "${DRY_RUN:-0}" != 1 ]; then "${installer[@]}" "$@"; fi
}

case $requirement in
  torch==*)
    wanted=${requirement#torch==}
    installed=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
    if [ -n "$installed" ] && [ "${installed%%+*}" = "${wanted%%+*}" ]; then
      echo "torch $installed is already installed"
      exit 0
    fi
    ;;
esac

if [ -n "${TORCH_INDEX_URL:-}" ]; then
  echo "installing $requirement from TORCH_INDEX_URL ($TORCH_INDEX_URL)"
  install "$requirement" --index-url "$TORCH_INDEX_URL"
  exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
  echo "an NVIDIA GPU is present: installing the CUDA build of $requirement from PyPI (about 4 GB with" \
    "NVIDIA's libraries; TORCH_INDEX_URL picks another build)"
  install "$requirement"
  exit 0
fi

if [ "$(uname -s)" != Linux ]; then
  echo "installing $requirement from PyPI (its $(uname -s) build has no CUDA)"
  install "$requirement"
  exit 0
fi

# Linux without a GPU: plain PyPI would give the CUDA build. A wheel that pip finds without any index is used
# as it is; otherwise the CPU build comes from PyTorch's index.
wheelhouse=$(mktemp -d)
trap 'rm -rf "$wheelhouse"' EXIT
if "$py" -m pip download -q --no-index --no-deps "$requirement" -d "$wheelhouse" >/dev/null 2>&1 \
  && wheel=$(ls "$wheelhouse"/torch-*.whl 2>/dev/null); then
  echo "no NVIDIA GPU: installing the local wheel $(basename "$wheel")"
  install "$wheel"
else
  echo "no NVIDIA GPU: installing the CPU build of $requirement from $CPU_INDEX (a 190 MB download," \
    "750 MB installed; TORCH_INDEX_URL picks another build)"
  install "$requirement" --index-url "$CPU_INDEX"
fi
