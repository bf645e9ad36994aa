"""Synthetic ground truth: exact depth, consistent cameras, determinism, and the layout read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from anydepth.bench import image_depth_scores, pose_scores
from anydepth.bench.synthetic import (
    Plane,
    Scene,
    Sphere,
    Texture,
    indoor_scene,
    intrinsics_for,
    look_at,
    orbit,
    outdoor_scene,
    render,
    render_views,
    walk,
    write_ground_truth,
)

TEX = Texture((0.8, 0.2, 0.2), (0.2, 0.2, 0.8))


def test_depth_of_a_plane_facing_the_camera_is_its_distance():
    scene = Scene("wall", 0, (Plane((0.0, 0.0, -1.0), -4.0, TEX),), sky=True)  # the plane z = 4, seen from z < 4
    frame = render(scene, look_at((0, 0, 0), (0, 0, 1)), intrinsics_for(64, 48), 64, 48)
    assert frame.valid.all()
    np.testing.assert_allclose(frame.depth, 4.0, rtol=1e-6)  # z-depth, not the distance along each ray


def test_depth_of_a_sphere_at_its_centre_pixel():
    scene = Scene("ball", 0, (Sphere((0.0, 0.0, 5.0), 1.0, TEX),), sky=True)
    frame = render(scene, look_at((0, 0, 0), (0, 0, 1)), intrinsics_for(65, 65), 65, 65)
    assert frame.depth[32, 32] == pytest.approx(4.0, abs=1e-3)
    assert not frame.valid[0, 0] and frame.depth[0, 0] == 0.0  # the sky has no depth
    assert tuple(frame.image[0, 0]) != (0, 0, 0)  # but a colour


@pytest.mark.parametrize("make", [indoor_scene, outdoor_scene])
def test_views_agree_through_their_cameras(make):
    """Points unprojected from one view land, in the next, where that view sees the same depth."""
    scene = make(seed=3)
    a, b = list(render_views(scene, orbit(scene, 2, arc_deg=10.0, seed=1), 96, 72))
    K = a.intrinsics
    v, u = np.nonzero(a.valid)
    z = a.depth[v, u]
    cam_a = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
    world = (cam_a - a.extrinsics[:, 3]) @ a.extrinsics[:, :3]  # R^T (x - t)
    cam_b = world @ b.extrinsics[:, :3].T + b.extrinsics[:, 3]
    ub = np.floor(cam_b[:, 0] / cam_b[:, 2] * K[0, 0] + K[0, 2]).astype(int)
    vb = np.floor(cam_b[:, 1] / cam_b[:, 2] * K[1, 1] + K[1, 2]).astype(int)
    inside = (ub >= 0) & (ub < 96) & (vb >= 0) & (vb < 72) & (cam_b[:, 2] > 0)
    seen = b.depth[vb[inside], ub[inside]]
    rel = np.abs(seen - cam_b[inside, 2]) / cam_b[inside, 2]
    assert inside.mean() > 0.5
    assert np.median(rel) < 0.02  # pixel quantisation at edges and occlusions aside


def test_deterministic_from_the_seed_and_different_across_seeds():
    one = render(indoor_scene(5), look_at((0, 0, 0), (1, 0, 1)), intrinsics_for(48, 32), 48, 32)
    two = render(indoor_scene(5), look_at((0, 0, 0), (1, 0, 1)), intrinsics_for(48, 32), 48, 32)
    other = render(indoor_scene(6), look_at((0, 0, 0), (1, 0, 1)), intrinsics_for(48, 32), 48, 32)
    assert np.array_equal(one.image, two.image) and np.array_equal(one.depth, two.depth)
    assert not np.array_equal(one.image, other.image)
    assert one.valid.all()  # a closed room: every ray hits something


def test_a_loop_trajectory_comes_back_to_its_start():
    poses = walk(indoor_scene(0), 40, loop=True)
    centres = np.array([-p[:, :3].T @ p[:, 3] for p in poses])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert np.linalg.norm(centres[-1] - centres[0]) < 2 * steps.max()  # one more step closes it
    assert np.linalg.norm(centres - centres[0], axis=1).max() > 5 * steps.max()  # and it went somewhere


def test_ground_truth_layout_reads_back_and_scores_perfectly(tmp_path):
    scene = outdoor_scene(1)
    poses = orbit(scene, 3, seed=2)
    folder = write_ground_truth(tmp_path / "gt", render_views(scene, poses, 64, 48), scene)
    cams = np.load(folder / "cameras.npz")
    assert cams["extrinsics"].shape == (3, 3, 4) and cams["intrinsics"].shape == (3, 3, 3)
    assert list(cams["image_names"]) == ["000000.png", "000001.png", "000002.png"]
    image = np.asarray(Image.open(folder / "images" / "000001.png"))
    depth = np.load(folder / "depth" / "000001.npy")
    assert image.shape == (48, 64, 3) and depth.shape == (48, 64) and depth.dtype == np.float32
    assert json.loads((folder / "scene.json").read_text())["seed"] == 1
    # ground truth fed back as the prediction: perfect scores
    s = image_depth_scores(depth, depth, "none", mask=depth > 0)
    assert s.abs_rel == 0.0 and s.delta1 == 1.0
    assert all(v == 1.0 for v in pose_scores(cams["extrinsics"], cams["extrinsics"]).auc.values())
