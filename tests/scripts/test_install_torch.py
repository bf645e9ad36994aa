"""scripts/install_torch.sh picks the torch build for the machine: the CPU build unless an NVIDIA GPU is present."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "scripts" / "install_torch.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the script's Linux branch")


def _executable(path: Path, text: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _run(tmp_path, gpu=False, local_wheel=False, installed="", **env):
    """The script in DRY_RUN mode against a stand-in interpreter and nvidia-smi; returns its output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    _executable(bin_dir / "nvidia-smi", 'echo "GPU 0: NVIDIA H100 (UUID: GPU-0)"\n' if gpu else "exit 9\n")
    # the stand-in python: `-c` prints the installed torch version (or fails), `-m pip download` finds a local
    # wheel (or fails)
    python = _executable(
        tmp_path / "python",
        f"""if [ "$1" = -c ]; then [ -n "{installed}" ] && echo "{installed}" && exit 0; exit 1; fi
if [ "$1 $2 $3" = "-m pip download" ]; then
  [ {int(local_wheel)} = 1 ] || exit 1
  for a in "$@"; do [ "$prev" = -d ] && touch "$a/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"; prev=$a; done
  exit 0
fi
exit 3
""",
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("TORCH_INDEX_URL", "PIP_INSTALL")}
    environ.update(PATH=f"{bin_dir}:{environ['PATH']}", DRY_RUN="1", **env)
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(python), "torch==2.13.0"], capture_output=True, text=True, env=environ, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, str(python)


def _install_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, output
    return lines[0]


def test_no_gpu_takes_the_cpu_build_from_pytorchs_index(tmp_path):
    output, python = _run(tmp_path)
    assert _install_line(output) == f"+ {python} -m pip install torch==2.13.0 --index-url {CPU_INDEX}"


def test_no_gpu_takes_a_local_wheel_that_pip_finds_without_an_index(tmp_path):
    output, python = _run(tmp_path, local_wheel=True)
    line = _install_line(output)
    assert line.startswith(f"+ {python} -m pip install /") and "--index-url" not in line
    assert line.endswith("/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


def test_a_gpu_takes_pypis_cuda_build(tmp_path):
    output, python = _run(tmp_path, gpu=True, local_wheel=True)
    assert _install_line(output) == f"+ {python} -m pip install torch==2.13.0"
    assert "CUDA build" in output


def test_an_index_given_by_the_user_wins(tmp_path):
    index = "https://download.pytorch.org/whl/cu126"
    output, python = _run(tmp_path, gpu=False, TORCH_INDEX_URL=index)
    assert _install_line(output) == f"+ {python} -m pip install torch==2.13.0 --index-url {index}"


def test_another_installer_and_an_installed_torch(tmp_path):
    output, _ = _run(tmp_path, PIP_INSTALL="uv pip install --python X")
    assert _install_line(output) == f"+ uv pip install --python X torch==2.13.0 --index-url {CPU_INDEX}"
    output, _ = _run(tmp_path / "again", installed="2.13.0+cpu")
    assert "torch 2.13.0+cpu is already installed" in output and "+ " not in output
