"""Reconstruction metrics: the ground truth scores perfectly in both settings, a known offset gives its distance."""

from __future__ import annotations

import numpy as np
import pytest

from anydepth.bench.reconstruction import compare_clouds, fuse_points, reconstruction_scores, unproject
from anydepth.bench.synthetic import Plane, Scene, Texture, indoor_scene, look_at, orbit, render_views

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def views():
    scene = indoor_scene(9)
    frames = list(render_views(scene, orbit(scene, 4, seed=3), 64, 48))
    depth = [f.depth for f in frames]
    w2c = np.stack([f.extrinsics for f in frames])
    K = np.stack([f.intrinsics for f in frames])
    return depth, w2c, K


def test_ground_truth_scores_perfectly_posed_and_up_to_scale(views):
    depth, w2c, K = views
    s = reconstruction_scores(depth, depth, w2c, K, "posed", metric=True)
    assert s.accuracy == pytest.approx(0.0, abs=1e-9) and s.fscore == 1.0 and s.fusion == "points"
    s = reconstruction_scores([3.0 * d for d in depth], depth, w2c, K, "posed")
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
    scores = reconstruction_scores([0.5 * d for d in depth], depth, w2c, K, "unposed", pred_w2c=pred_w2c[:, :3])
    assert scores.accuracy < 1e-3 and scores.fscore == 1.0


def test_a_known_offset_is_measured():
    wall = Scene("wall", 0, (Plane((0.0, 0.0, -1.0), -4.0, Texture((1, 1, 1), (0, 0, 0))),), sky=True)
    frame = next(render_views(wall, [look_at((0, 0, 0), (0, 0, 1))], 80, 60))
    w2c, K = frame.extrinsics[None], frame.intrinsics[None]
    s = reconstruction_scores([frame.depth + 0.2], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05)
    assert s.accuracy == pytest.approx(0.2, abs=0.01) and s.precision == 0.0 and s.fscore == 0.0
    s = reconstruction_scores([frame.depth + 0.02], [frame.depth], w2c, K, "posed", metric=True, threshold=0.05)
    assert s.fscore == 1.0


def test_fusion_and_empty_clouds():
    pts = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [1.0, 1.0, 1.0]])
    fused = fuse_points([pts], voxel=0.1)
    assert len(fused) == 2 and np.allclose(sorted(fused[:, 0]), [0.015, 1.0])
    empty = compare_clouds(np.zeros((0, 3)), pts, 0.05)
    assert empty.fscore == 0.0 and empty.accuracy == np.inf
    assert unproject(np.zeros((2, 2)), np.eye(4)[:3], np.eye(3)).shape == (0, 3)
