"""Reconstruction metrics: the ground truth scores perfectly in both settings and against a reference mesh, a known
offset gives its distance, the reference geometry is read and sampled deterministically, and Open3D's TSDF fusion
(where installed) agrees with the NumPy point fusion."""

from __future__ import annotations

import numpy as np
import pytest

from anydepth.bench.point_clouds import read_ply, sample_mesh, voxel_downsample
from anydepth.bench.reconstruction import (
    FusionSettings,
    compare_clouds,
    fuse_points,
    reconstruction_scores,
    scene_inputs,
    unproject,
)
from anydepth.bench.synthetic import Plane, Scene, Texture, indoor_scene, look_at, orbit, render_views
from anydepth.errors import InputError

pytest.importorskip("scipy")

NUMPY = FusionSettings(fusion="numpy-points")


@pytest.fixture(scope="module")
def views():
    scene = indoor_scene(9)
    frames = list(render_views(scene, orbit(scene, 4, seed=3), 64, 48))
    depth = [f.depth for f in frames]
    w2c = np.stack([f.extrinsics for f in frames])
    K = np.stack([f.intrinsics for f in frames])
    return depth, w2c, K


@pytest.fixture(scope="module")
def wall():
    """One view of the plane z = 4 (nothing else: sky), and the quad of that plane the view sees, as a mesh."""
    scene = Scene("wall", 0, (Plane((0.0, 0.0, -1.0), -4.0, Texture((1, 1, 1), (0, 0, 0))),), sky=True)
    frame = next(render_views(scene, [look_at((0, 0, 0), (0, 0, 1))], 80, 60))
    K = frame.intrinsics
    x0, x1 = -K[0, 2] / K[0, 0] * 4, (80 - K[0, 2]) / K[0, 0] * 4  # the image's edges at z = 4
    y0, y1 = -K[1, 2] / K[1, 1] * 4, (60 - K[1, 2]) / K[1, 1] * 4
    quad = np.array([[x0, y0, 4.0], [x1, y0, 4.0], [x1, y1, 4.0], [x0, y1, 4.0]])
    return frame, quad


def _write_ascii_ply(path, vertices, faces=()):
    """A PLY written by hand (not by the reader's library)."""
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}", "property float x", "property float y",
             "property float z"]  # fmt: skip
    if len(faces):
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    lines += ["end_header"] + [" ".join(f"{c:.6f}" for c in v) for v in vertices]
    lines += [" ".join(str(i) for i in [len(f), *f]) for f in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ground_truth_scores_perfectly_posed_and_up_to_scale(views):
    depth, w2c, K = views
    s = reconstruction_scores(depth, depth, w2c, K, "posed", metric=True, settings=NUMPY)
    assert s.accuracy == pytest.approx(0.0, abs=1e-9) and s.fscore == 1.0
    assert (s.fusion, s.ground_truth, s.protocol) == ("numpy-points", "fused-depth", "fscore")
    s = reconstruction_scores([3.0 * d for d in depth], depth, w2c, K, "posed", settings=NUMPY)
    # float32 rounding of the scale moves a few points across voxel borders: far below the 0.025 voxel
    assert s.accuracy < 1e-3 and s.fscore == 1.0


def test_unposed_prediction_in_another_frame_and_unit_scores_perfectly(views):
    depth, w2c, K = views
    world = np.eye(4)
    c, s_ = np.cos(0.7), np.sin(0.7)
    world[:3, :3] = [[c, 0, s_], [0, 1, 0], [-s_, 0, c]]
    world[:3, 3] = [2.0, -1.0, 0.5]
    pred_w2c = np.concatenate([w2c, np.tile([[[0, 0, 0, 1.0]]], (len(w2c), 1, 1))], 1) @ np.linalg.inv(world)
    pred_w2c[:, :3, 3] *= 0.5  # half the units: depth halves too
    scores = reconstruction_scores([0.5 * d for d in depth], depth, w2c, K, "unposed", pred_w2c=pred_w2c[:, :3],
                                   settings=NUMPY)  # fmt: skip
    assert scores.accuracy < 1e-3 and scores.fscore == 1.0


def test_a_known_offset_is_measured(wall):
    frame, _ = wall
    w2c, K = frame.extrinsics[None], frame.intrinsics[None]
    s = reconstruction_scores([frame.depth + 0.2], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05,
                              settings=NUMPY)  # fmt: skip
    assert s.accuracy == pytest.approx(0.2, abs=0.01) and s.precision == 0.0 and s.fscore == 0.0
    s = reconstruction_scores([frame.depth + 0.02], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05,
                              settings=NUMPY)  # fmt: skip
    assert s.fscore == 1.0


def test_ground_truth_against_a_reference_mesh_scores_perfectly_and_an_offset_is_measured(tmp_path, wall):
    frame, quad = wall
    reference = read_ply(_write_ascii_ply(tmp_path / "reference.ply", quad, [[0, 1, 2, 3]]))  # a quad: 2 triangles
    assert reference.is_mesh and reference.triangles.shape == (2, 3)
    w2c, K = frame.extrinsics[None], frame.intrinsics[None]
    spacing = 4 / K[0, 0, 0]  # the pixels' footprint on the wall (0.058)
    settings = FusionSettings(sampling_number=200_000, down_sample=0.02, fusion="numpy-points")
    s = reconstruction_scores([frame.depth], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05,
                              settings=settings, reference=reference)  # fmt: skip
    assert s.ground_truth == "reference-mesh" and s.fscore == 1.0
    assert s.accuracy < 0.02 and s.completeness < spacing / 2  # the points lie on the mesh; the mesh between them
    s = reconstruction_scores([frame.depth + 0.2], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05,
                              settings=settings, reference=reference)  # fmt: skip
    assert s.accuracy == pytest.approx(0.2, abs=0.005) and s.fscore == 0.0


def test_a_reference_point_cloud_and_the_crop_to_its_box(tmp_path, wall):
    frame, _ = wall
    w2c, K = frame.extrinsics[None], frame.intrinsics[None]
    cloud = unproject(frame.depth, frame.extrinsics, frame.intrinsics)
    reference = read_ply(_write_ascii_ply(tmp_path / "cloud.ply", cloud))
    assert not reference.is_mesh and np.allclose(reference.vertices, cloud, atol=1e-6)
    stray = np.zeros_like(frame.depth)
    stray[:5] = 9.0  # a strip far behind the wall, outside the reference's box
    pred = np.where(stray > 0, stray, frame.depth)
    args = ([pred], [frame.depth], w2c, K, "posed")
    s = reconstruction_scores(*args, metric=True, settings=NUMPY, reference=reference)
    assert s.ground_truth == "reference-points" and s.precision < 0.95
    cropped = FusionSettings(crop_to_reference=0.1, fusion="numpy-points")
    s = reconstruction_scores(*args, metric=True, settings=cropped, reference=reference)
    assert s.precision == 1.0 and s.accuracy < 1e-6


def test_read_ply_errors(tmp_path):
    with pytest.raises(InputError, match="no such reference"):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "bad.ply").write_text("not a ply\n")
    with pytest.raises(InputError, match=r"bad\.ply: unreadable"):
        read_ply(tmp_path / "bad.ply")
    with pytest.raises(InputError, match="faces index vertices"):
        read_ply(_write_ascii_ply(tmp_path / "faces.ply", np.zeros((3, 3)), [[0, 1, 5]]))


def test_mesh_sampling_is_uniform_by_area_and_the_same_for_any_triangle_order():
    # a unit triangle (area 0.5) and one three times larger (area 1.5), apart
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 1, 0]])
    triangles = np.array([[0, 1, 2], [3, 4, 5]])
    points = sample_mesh(vertices, triangles, 40_000, seed=7)
    assert np.mean(points[:, 0] >= 10) == pytest.approx(0.75, abs=0.01)
    small = points[points[:, 0] < 10]
    assert np.all(small[:, 0] + small[:, 1] <= 1 + 1e-12) and np.mean(small[:, 0]) == pytest.approx(1 / 3, abs=0.01)
    assert np.array_equal(points, sample_mesh(vertices, triangles[::-1], 40_000, seed=7))
    assert not np.array_equal(points, sample_mesh(vertices, triangles, 40_000, seed=8))


def test_fusion_downsampling_and_empty_clouds():
    pts = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [1.0, 1.0, 1.0]])
    fused = fuse_points([pts], voxel=0.1)
    assert len(fused) == 2 and np.allclose(sorted(fused[:, 0]), [0.015, 1.0])
    # Open3D's grid starts half a voxel below the lowest point: 0.06 and 0.11 share a voxel (from 0: 0.0 and 0.06)
    assert len(voxel_downsample(np.array([[0.0, 0, 0], [0.06, 0, 0], [0.11, 0, 0]]), 0.1)) == 2
    assert len(voxel_downsample(pts, None)) == 3
    empty = compare_clouds(np.zeros((0, 3)), pts, 0.05)
    assert empty.fscore == 0.0 and empty.accuracy == np.inf
    assert unproject(np.zeros((2, 2)), np.eye(4)[:3], np.eye(3)).shape == (0, 3)


def test_settings_come_from_scene_json(tmp_path):
    meta = {"voxel_length": 0.02, "sdf_trunc": 0.15, "fusion_max_depth": 5.0, "sampling_number": 1000,
            "down_sample": 0.02, "fscore_threshold": 0.05}  # fmt: skip
    s = FusionSettings.from_meta(meta)
    assert (s.voxel_length, s.sdf_trunc, s.max_depth, s.sampling_number, s.down_sample) == (0.02, 0.15, 5.0, 1000, 0.02)
    assert FusionSettings.from_meta({}) == FusionSettings()
    with pytest.raises(InputError, match="unknown fusion"):
        FusionSettings(fusion="marching").resolved_fusion()
    with pytest.raises(InputError, match="not a file name"):
        scene_inputs(tmp_path, {"reference": "../elsewhere.ply"})
    with pytest.raises(InputError, match="no such reference"):
        scene_inputs(tmp_path, {"reference": "reference.ply"})


def test_open3d_tsdf_fusion_scores_the_ground_truth_perfectly_and_agrees_with_the_numpy_fusion(views):
    pytest.importorskip("open3d")
    depth, w2c, K = views
    common = {"voxel_length": 0.05, "sdf_trunc": 0.2, "sampling_number": 100_000, "down_sample": 0.05}
    tsdf, points = FusionSettings(fusion="open3d-tsdf", **common), FusionSettings(fusion="numpy-points", **common)
    s = reconstruction_scores(depth, depth, w2c, K, "posed", metric=True, threshold=0.1, settings=tsdf)
    assert s.fusion == "open3d-tsdf" and s.accuracy == 0.0 and s.fscore == 1.0
    assert reconstruction_scores(depth, depth, w2c, K, "posed", metric=True, threshold=0.1, settings=tsdf) == s
    # 5 cm further along every ray's axis
    pushed = [d + 0.05 * (d > 0) for d in depth]
    a = reconstruction_scores(pushed, depth, w2c, K, "posed", metric=True, threshold=0.1, settings=tsdf)
    b = reconstruction_scores(pushed, depth, w2c, K, "posed", metric=True, threshold=0.1, settings=points)
    assert abs(a.accuracy - b.accuracy) < 0.02 and abs(a.completeness - b.completeness) < 0.02
    assert abs(a.fscore - b.fscore) < 0.01
