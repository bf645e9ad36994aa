"""Upstream's own client against `anydepth backend`: `da3 auto --use-backend --backend-url` from upstream's PyPI
package (the side environment) sends a scene, and the exports it asks for land in its folder, the same files with
the same arrays as a direct `anydepth auto`; upstream's pydantic models accept our task records; and our own
`anydepth auto --use-backend` still works against the same server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from tests.helpers.backend import BackendProcess  # noqa: E402
from tests.helpers.cli import run_cli  # noqa: E402
from tests.helpers.inputs import scene_views  # noqa: E402
from tests.helpers.paths import SRC  # noqa: E402

UPSTREAM_VENV = Path(os.environ.get("ANYDEPTH_UPSTREAM_VENV", "/work/main/.upstream-venv"))
UPSTREAM_PYTHON = UPSTREAM_VENV / "bin" / "python"
UPSTREAM_DA3 = UPSTREAM_VENV / "bin" / "da3"

pytestmark = pytest.mark.skipif(
    not UPSTREAM_DA3.exists(), reason=f"upstream's depth-anything-3 is not installed in {UPSTREAM_VENV}"
)

OPTIONS = ["--export-format", "mini_npz-glb", "--process-res", "56", "--conf-thresh-percentile", "10"]

# upstream's own response models check our answers: every field they declare, and no other
VALIDATE = """
import json, sys, requests
from depth_anything_3.services.backend import InferenceRequest, TaskStatus
url, task_id = sys.argv[1], sys.argv[2]
task = requests.get(f"{url}/task/{task_id}", timeout=30).json()
TaskStatus.model_validate(task)
assert set(task) == set(TaskStatus.model_fields), sorted(set(task) ^ set(TaskStatus.model_fields))
assert set(task["request"]) >= set(InferenceRequest.model_fields), task["request"]
listed = requests.get(f"{url}/tasks", timeout=30).json()
for record in listed["tasks"] + listed["active_tasks"] + listed["completed_tasks"]:
    TaskStatus.model_validate(record)
print(json.dumps({"status": task["status"], "listed": sorted(listed)}))
"""


def _write_scene(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, view in enumerate(scene_views(3)):
        Image.fromarray(view).save(folder / f"{i:03d}.png")
    return folder


def _files(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _assert_same_exports(got: Path, expected: Path) -> None:
    """Same files; the npz arrays and the GLB's point cloud and camera lines equal within float tolerance."""
    import trimesh

    assert _files(got) == _files(expected)
    relative = Path("exports", "mini_npz", "results.npz")
    with np.load(got / relative) as a, np.load(expected / relative) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    scene_a = trimesh.load(got / "scene.glb", force="scene")
    scene_b = trimesh.load(expected / "scene.glb", force="scene")
    assert sorted(scene_a.geometry) == sorted(scene_b.geometry)
    for name, geometry in scene_a.geometry.items():
        np.testing.assert_allclose(geometry.vertices, scene_b.geometry[name].vertices, rtol=1e-4, atol=1e-4)


def _wait_task(url: str, task_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = httpx.get(f"{url}/task/{task_id}", timeout=30).json()
        if task["status"] in ("completed", "failed"):
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.2)


def test_upstream_da3_client_and_ours_against_anydepth_backend(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    root = tmp_path / "root"
    scene = _write_scene(root / "scene")
    direct = tmp_path / "direct"
    code, output = run_cli(
        "auto", scene, "--weights", weights, "--device", "cpu", "--precision", "fp32", "--export-dir", direct, *OPTIONS
    )
    assert code == 0, output

    (tmp_path / "data").mkdir()
    server = BackendProcess(weights, tmp_path / "data", workers=1, extra_args=["--allowed-root", str(root)])
    try:
        export_dir = root / "upstream_out"
        client = subprocess.run(
            [str(UPSTREAM_DA3), "auto", str(scene), "--use-backend", "--backend-url", server.url,
             "--export-dir", str(export_dir), "--auto-cleanup", *OPTIONS],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert client.returncode == 0, client.stdout + client.stderr
        task_id = re.search(r"Task ID: (\S+)", client.stdout).group(1)
        task = _wait_task(server.url, task_id)
        assert task["status"] == "completed", task
        _assert_same_exports(export_dir, direct)

        checked = subprocess.run(
            [str(UPSTREAM_PYTHON), "-c", VALIDATE, server.url, task_id], capture_output=True, text=True, timeout=300
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout.strip().splitlines()[-1])["status"] == "completed"

        # the server refuses what upstream's would write anywhere: a folder outside its allowed roots
        refused = subprocess.run(
            [str(UPSTREAM_DA3), "auto", str(scene), "--use-backend", "--backend-url", server.url,
             "--export-dir", str(tmp_path / "elsewhere"), "--auto-cleanup", *OPTIONS],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
        assert httpx.get(f"{server.url}/tasks").json()["total_count"] == 1

        ours = tmp_path / "ours"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        native = subprocess.run(
            [sys.executable, "-m", "anydepth", "auto", str(scene), "--use-backend", "--backend-url", server.url,
             "--export-dir", str(ours), *OPTIONS],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert native.returncode == 0, native.stdout + native.stderr
        _assert_same_exports(ours, direct)
        assert httpx.get(f"{server.url}/tasks").json()["total_count"] == 2  # one queue for both protocols
    finally:
        server.stop()
