"""The batch job on Ray Data, on a local cluster of this machine (2 CPUs, no dashboard, a 150 MB object store):
results equal the local engine's, and a replica killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from anydepth.jobs.batch import BatchOptions, batch_job
from anydepth.jobs.batch_store import Manifest
from anydepth.jobs.options import ModelSpec, RuntimeOptions
from tests.helpers.batch_inputs import crash_once_loader, write_corrupt, write_images, write_video

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("av")

pytestmark = pytest.mark.slow  # a cluster's start and two replicas' model loads: about a minute on 2 cores

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", threads=1)
BASE = dict(formats=("npz",), input_size=28, batch_size=8, segment_frames=12, segment_overlap=4)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    # the workers import the package and the tests' loaders from the checkout, as the driver does
    path = os.pathsep.join([str(REPO / "src"), str(REPO)])
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """300 small images, two corrupt files, two videos (40 and 16 frames)."""
    root = tmp_path_factory.mktemp("ray_in")
    write_images(root, 300, seed=1, size=(32, 40))
    write_corrupt(root)
    write_video(root / "videos" / "long.mp4", frames=40, h=32, w=48)
    write_video(root / "videos" / "short.mp4", frames=16, h=32, w=48)
    return root


@pytest.fixture
def spec(vits_weights):
    return ModelSpec("dav2-small", weights=str(vits_weights))


def _rows(out):
    return {r["key"]: r for r in Manifest(out).read()}


def _depth(out, row):
    suffix = "_depths.npz" if row["kind"] == "video" else "_depth.npz"
    with np.load(out / f"{row['name']}{suffix}") as z:
        return z[z.files[0]]


def test_ray_equals_local_and_survives_a_killed_replica(cluster, tmp_path, inputs, spec):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    done_local = batch_job(str(inputs), local, spec, RUNTIME, BatchOptions(**BASE), progress=False)
    assert (done_local.done, done_local.failed, done_local.videos) == (302, 2, 2)

    # one replica dies at its third group (os._exit, as a killed worker); Ray restarts it and runs the group again
    marker = tmp_path / "crashed"
    loader = functools.partial(crash_once_loader, marker=str(marker), at=3)
    options = BatchOptions(**BASE, engine="ray", replicas=2)
    report = batch_job(str(inputs), on_ray, spec, RUNTIME, options, progress=False, loader=loader)
    assert marker.exists(), "no replica was killed: the test tested nothing"
    assert (report.done, report.failed, report.videos) == (302, 2, 2)

    lines = [r["key"] for r in Manifest(on_ray).read()]
    assert len(lines) == len(set(lines))  # nothing recorded twice
    rows_local, rows_ray = _rows(local), _rows(on_ray)
    finished = {k for k, r in rows_local.items() if r["kind"] != "segment"}
    assert finished == {k for k, r in rows_ray.items() if r["kind"] != "segment"}  # nothing lost
    for key in finished:
        a, b = _depth(local, rows_local[key]), _depth(on_ray, rows_ray[key])
        if rows_local[key]["kind"] == "image":  # the same groups on both engines: the same bits
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not list(on_ray.rglob("*.tmp-*"))  # the killed replica's half-written files never appear

    # resumed on Ray: nothing to run
    again = batch_job(str(inputs), on_ray, spec, RUNTIME, options, progress=False)
    assert (again.done, again.skipped) == (0, 302)
