"""Stream jobs: the outputs of a run read back with independent readers, bad input refused before any work,
resuming, and the model checks. The chunk predictions are ground truth plus noise (tests/helpers/streaming.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from anydepth.bench.pose_metrics import trajectory_scores
from anydepth.errors import InputError, MissingDependencyError, OptionError
from anydepth.jobs.options import ModelSpec, RuntimeOptions, StreamJobOptions
from anydepth.jobs.stream import stream_job
from tests.helpers.streaming import NoisyTruth, SyntheticSequence

pytestmark = pytest.mark.torch113  # the inference core on torch 1.13 / Python 3.9 too

FRAMES = 120
SPEC, RUNTIME = ModelSpec("da3-small"), RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def sequence():
    return SyntheticSequence(FRAMES)


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory, sequence):
    folder = tmp_path_factory.mktemp("frames")
    for i in range(FRAMES):
        Image.fromarray(sequence.frame(i)[1]).save(folder / f"{i:05d}.png")
    return folder


def _never_load(spec, runtime):
    raise AssertionError("the model must not load")


def _options(tmp_path, **more):
    return StreamJobOptions(**{"export_dir": tmp_path / "out", "chunk_size": 30, "overlap": 10, **more})


def test_outputs_read_back(tmp_path, sequence, frames_folder):
    pytest.importorskip("pypose")
    options = _options(tmp_path, voxel_size=2e-5, cloud_conf_ratio=0.0)
    summary = stream_job(SPEC, RUNTIME, str(frames_folder), options, _never_load, NoisyTruth(sequence), False)
    out = tmp_path / "out"
    assert summary.frames == FRAMES and summary.chunks == 6
    w2c = np.load(out / "w2c.npy")
    c2w = np.load(out / "c2w.npy")
    assert w2c.shape == (FRAMES, 4, 4) and np.allclose(c2w @ w2c, np.eye(4), atol=1e-6)
    assert trajectory_scores(w2c, sequence.w2c).ate_rmse < 0.03
    # upstream's camera_poses.txt: a camera-to-world 4x4 per line; intrinsic.txt: fx fy cx cy
    poses = np.loadtxt(out / "camera_poses.txt").reshape(-1, 4, 4)
    assert np.allclose(poses, c2w, atol=1e-9)
    assert np.allclose(np.loadtxt(out / "intrinsic.txt"), [[sequence.K[0, 0], sequence.K[1, 1], sequence.K[0, 2],
                                                            sequence.K[1, 2]]] * FRAMES, rtol=1e-5)  # fmt: skip
    kitti = np.loadtxt(out / "trajectory_kitti.txt")
    assert np.allclose(kitti.reshape(-1, 3, 4), c2w[:, :3, :4], atol=1e-9)
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    tum = np.loadtxt(out / "trajectory_tum.txt")
    assert np.allclose(tum[:, 0], np.arange(FRAMES))  # no frame rate: frame numbers
    assert np.allclose(tum[:, 1:4], c2w[:, :3, 3], atol=1e-9)
    assert np.allclose(rotation.from_quat(tum[:, 4:8]).as_matrix(), c2w[:, :3, :3], atol=1e-6)
    # every frame's depth, scaled into the common frame: one scale for all, the trajectory's
    scale = trajectory_scores(w2c, sequence.w2c).scale  # common frame -> ground truth
    for i in (0, 45, FRAMES - 1):
        with np.load(out / "results_output" / f"frame_{i}.npz") as frame:
            assert frame["image"].shape == (36, 48, 3) and np.allclose(frame["extrinsics"], w2c[i, :3], atol=1e-5)
            assert np.median(frame["depth"] * scale / sequence.frame(i)[0]) == pytest.approx(1.0, abs=0.03)
    assert len(list((out / "results_output").glob("frame_*.npz"))) == FRAMES
    # the cloud: every pixel of every frame once (a voxel too small to merge points, bar a rare coincidence), not
    # the overlap frames twice (which would be 40% more points)
    plyfile = pytest.importorskip("plyfile")
    vertices = plyfile.PlyData.read(str(out / "pointcloud.ply"))["vertex"]
    assert len(vertices) == summary.points
    assert 0.99 * FRAMES * 36 * 48 < summary.points <= FRAMES * 36 * 48
    trimesh = pytest.importorskip("trimesh")
    clouds = [g for g in trimesh.load(out / "pointcloud.glb").geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert len(clouds) == 1 and len(clouds[0].vertices) == summary.points
    assert Image.open(out / "trajectory.png").size[0] > 100
    assert summary.loops and str(summary.loops[0][0]) in (out / "loop_closures.txt").read_text()
    assert not (out / "_work").exists()  # the work folder goes once the outputs are written


def test_the_voxel_grid_thins_the_cloud(tmp_path, sequence, frames_folder):
    summary = stream_job(SPEC, RUNTIME, str(frames_folder), _options(tmp_path, loop=False, voxel_size=0.1),
                         _never_load, NoisyTruth(sequence), False)  # fmt: skip
    assert 100 < summary.points < FRAMES * 36 * 48 / 3


def test_an_interrupted_job_resumes(tmp_path, sequence, frames_folder):
    class Interrupt(Exception):
        pass

    def stop(chunk):
        if chunk.index == 1:
            raise Interrupt

    options = _options(tmp_path, loop=False)
    with pytest.raises(Interrupt):
        stream_job(SPEC, RUNTIME, str(frames_folder), options, _never_load, NoisyTruth(sequence), False, stop)
    resumed = NoisyTruth(sequence)
    summary = stream_job(SPEC, RUNTIME, str(frames_folder), options, _never_load, resumed, False)
    assert summary.frames == FRAMES and resumed.calls[0][0] == 40  # from chunk 2 on
    assert len(list((tmp_path / "out" / "results_output").iterdir())) == FRAMES


def test_the_work_folder_is_emptied_of_the_runs_files_only(tmp_path, sequence, frames_folder):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    options = _options(tmp_path, loop=False, work_dir=work, save_frames=False, glb=False)
    stream_job(SPEC, RUNTIME, str(frames_folder), options, _never_load, NoisyTruth(sequence), False)
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "out" / "results_output").exists() and not (tmp_path / "out" / "pointcloud.glb").exists()


def _colmap_without_images(root):
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    (root / "images").mkdir()
    (model / "cameras.txt").write_text("1 PINHOLE 80 60 50 50 40 30\n")
    (model / "images.txt").write_text("")
    (model / "points3D.txt").write_text("")
    return root


@pytest.mark.parametrize(
    ("make_input", "options", "error", "words"),
    [
        (lambda p: p / "missing.mp4", {"overlap": 30}, OptionError, "overlap 30: must be below the chunk size"),
        (lambda p: p / "missing.mp4", {"align_method": "affine"}, OptionError, "align_method affine"),
        (lambda p: p / "missing", {}, InputError, "missing"),
        (lambda p: (p / "broken.mp4").write_bytes(b"not a video") and p / "broken.mp4", {}, InputError, "broken.mp4"),
        (_colmap_without_images, {}, InputError, "no registered images"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, make_input, options, error, words):
    if "no registered" in words:
        pytest.importorskip("pycolmap")
    spec = make_input(tmp_path)
    with pytest.raises(error, match=words):
        stream_job(SPEC, RUNTIME, str(spec), _options(tmp_path, **options), _never_load, None, False)
    assert not (tmp_path / "out").exists()


def test_loop_closure_without_pypose_fails_before_any_work(tmp_path, frames_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "pypose", None)
    with pytest.raises(MissingDependencyError, match=r"anydepth\[stream\]"):
        stream_job(SPEC, RUNTIME, str(frames_folder), _options(tmp_path), _never_load, None, False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "words"), [("dav2-small", "not a DA3 any-view"), ("da3mono-large", "no cameras")])
def test_models_without_cameras_are_refused(tmp_path, frames_folder, name, words):
    with pytest.raises(InputError, match=words):
        stream_job(ModelSpec(name), RUNTIME, str(frames_folder), _options(tmp_path, loop=False), _never_load)
