"""The Inferentia batch folder job (deploy/inferentia/Makefile) off Inf1: make dirs / inference / clean on CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import anydepth
from tests.helpers.inputs import write_photo
from tests.helpers.paths import ROOT

MAKEFILE = ROOT / "deploy" / "inferentia" / "Makefile"
pytestmark = [pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"), pytest.mark.torch113]


def _make(folder, *args):
    env = dict(os.environ, PYTHONPATH=str(Path(anydepth.__file__).parents[1]))
    anydepth_cmd = f"{sys.executable} -m anydepth"
    cmd = ["make", "--no-print-directory", "-f", str(MAKEFILE), "-C", str(folder), f"ANYDEPTH={anydepth_cmd}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_setup_inference_skip_and_clean(tmp_path, vits_weights):
    assert _make(tmp_path, "dirs").returncode == 0
    assert (tmp_path / "input_images").is_dir() and (tmp_path / "output_depth").is_dir()
    for name in ("a", "b"):
        write_photo(tmp_path / "input_images" / f"{name}.jpg", seed=len(name))
    (tmp_path / "input_images" / "broken.png").write_bytes(b"broken")
    args = [f"WEIGHTS={vits_weights}", "INPUT_SIZE=28"]

    run = _make(tmp_path, "inference", *args)
    assert run.returncode != 0  # the broken image is reported ...
    assert "broken.png" in run.stderr and "2 image(s) written" in run.stderr
    out = tmp_path / "output_depth"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_depth16.png", "b.png", "b_depth16.png"]

    (tmp_path / "input_images" / "broken.png").unlink()
    write_photo(tmp_path / "input_images" / "c.png", seed=3)
    run = _make(tmp_path, "inference", *args)
    assert run.returncode == 0, run.stderr
    assert "1 image(s) written" in run.stderr and "(2 already done)" in run.stderr  # ... done ones are skipped

    assert _make(tmp_path, "clean").returncode == 0
    assert not out.exists() and (tmp_path / "input_images" / "a.jpg").is_file()


def test_setup_uses_pip_without_uv(tmp_path):
    run = _make(tmp_path, "-n", "setup", "UV=")
    assert run.returncode == 0
    assert "-m venv .venv" in run.stdout and "-m pip install" in run.stdout
    # off Inf1, torch comes through the script that picks the CPU build where there is no NVIDIA GPU
    assert "scripts/install_torch.sh" in run.stdout
