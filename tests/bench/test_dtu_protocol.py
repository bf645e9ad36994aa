"""DTU's protocol: the observation mask, the ground plane and the outlier distance choose the points scored, the
greedy thinning and the consistency fusion keep what upstream keeps, and the .mat files are read with one-line
errors."""

from __future__ import annotations

import numpy as np
import pytest

from anydepth.bench.dtu_protocol import (
    DtuProtocol,
    backprojected_points,
    cap_points,
    consistent_points,
    dtu_scores,
    radius_downsample,
)
from anydepth.bench.reconstruction import unproject
from anydepth.bench.synthetic import indoor_scene, orbit, render_views
from anydepth.errors import InputError

pytest.importorskip("scipy")


def _sheet(z, x_max=10.0, spacing=0.1):
    """Points on the square [0, x_max] x [0, 10] at height z."""
    xs, ys = np.meshgrid(np.arange(0, x_max + 1e-9, spacing), np.arange(0, 10 + 1e-9, spacing))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1)


def _protocol(obs=None, plane=(0.0, 0.0, 1.0, -1.0), **settings):
    """BB [0, 10]^3 at 1 mm voxels, everything observed unless ``obs`` says otherwise; above the plane z = 1."""
    obs = np.ones((11, 11, 11), bool) if obs is None else obs
    bb = np.array([[0.0, 0, 0], [10, 10, 10]])
    settings.setdefault("down_dense", 0.01)  # below the 0.1 mm spacing: no thinning
    return DtuProtocol(obs, bb.astype(np.float32), 1.0, np.array(plane), **settings)


def test_the_observation_mask_chooses_the_points_scored_for_accuracy():
    truth = _sheet(2.0)
    near = _sheet(2.5, x_max=6.0)  # 0.5 mm above the truth, observed
    far = _sheet(4.0)[_sheet(4.0)[:, 0] >= 8.0]  # 2 mm above it, where the mask says unobserved
    obs = np.ones((11, 11, 11), bool)
    obs[7:] = False  # voxels of x >= 6.5
    accuracy, _, scored, _ = dtu_scores(np.concatenate([near, far]), truth, _protocol(obs))
    assert accuracy == pytest.approx(0.5) and scored == len(near)
    accuracy, _, scored, _ = dtu_scores(np.concatenate([near, far]), truth, _protocol())
    expected = (0.5 * len(near) + 2.0 * len(far)) / (len(near) + len(far))
    assert accuracy == pytest.approx(expected) and scored == len(near) + len(far)


def test_the_ground_plane_chooses_the_truth_scored_for_completeness_and_far_points_are_left_out():
    truth = np.concatenate([_sheet(2.0), _sheet(0.0)])  # above and below the plane z = 1
    pred = _sheet(2.5)
    _, completeness, _, truth_scored = dtu_scores(pred, truth, _protocol())
    assert completeness == pytest.approx(0.5) and truth_scored == len(truth) // 2
    flipped = _protocol(plane=(0.0, 0.0, -1.0, 1.0))  # now the sheet at z = 0 is the one above
    assert dtu_scores(pred, truth, flipped)[1] == pytest.approx(2.5)
    # distances of max_dist or more are left out, not clipped
    outliers = np.concatenate([pred, _sheet(4.5, x_max=3.0)])  # 2.5 mm from the truth's z = 2 sheet
    assert dtu_scores(outliers, truth, _protocol(max_dist=1.0))[0] == pytest.approx(0.5)
    assert dtu_scores(outliers, truth, _protocol(max_dist=20.0))[0] > 0.5
    assert dtu_scores(pred, truth, _protocol(plane=(0.0, 0.0, -1.0, 1.0), max_dist=1.0))[1] == np.inf


def test_greedy_thinning_and_the_point_cap_are_seeded():
    points = _sheet(0.0, spacing=0.1)
    thinned = radius_downsample(points, 0.25)
    assert len(thinned) < len(points) / 4
    gaps = np.linalg.norm(thinned[:, None] - thinned[None], axis=-1)
    assert gaps[~np.eye(len(thinned), dtype=bool)].min() > 0.25  # no two kept points within the radius
    assert np.array_equal(thinned, radius_downsample(points, 0.25))
    capped = cap_points(points, 100)
    assert len(capped) == 100 and np.array_equal(capped, cap_points(points, 100))


def test_consistency_fusion_keeps_points_seen_alike_by_enough_views():
    scene = indoor_scene(2)
    frames = list(render_views(scene, orbit(scene, 4, seed=1, arc_deg=30), 48, 36))
    depth = [np.where(f.valid, f.depth, 0.0) for f in frames]
    w2c, K = np.stack([f.extrinsics for f in frames]), np.stack([f.intrinsics for f in frames])
    fused = consistent_points(depth, w2c, K, dist_thresh=0.01, num_consist=3)
    truth = np.concatenate([unproject(d, e, k) for d, e, k in zip(depth, w2c, K)])
    from scipy.spatial import cKDTree

    assert len(fused) > 0.5 * len(truth)  # most of the surface is seen by three of the four views
    assert cKDTree(truth).query(fused)[0].max() < 0.01
    assert len(consistent_points(depth, w2c, K, 0.01, num_consist=5)) == 0  # more views than there are
    every = backprojected_points(depth, w2c, K)
    assert len(every) == len(truth) and np.allclose(every, truth, atol=1e-4)


def test_masks_are_read_from_mat_files_with_one_line_errors(tmp_path):
    io = pytest.importorskip("scipy.io")
    obs = np.zeros((3, 4, 5), np.uint8)
    obs[1, 2, 3] = 1
    io.savemat(tmp_path / "ObsMask1_10.mat", {"ObsMask": obs, "BB": np.array([[0.0, 0, 0], [2, 3, 4]]),
                                               "Res": np.array([[1.0]])})  # fmt: skip
    io.savemat(tmp_path / "Plane1.mat", {"P": np.array([[0.0], [0.0], [1.0], [-1.0]])})
    entry = {"obs_mask": "ObsMask1_10.mat", "ground_plane": "Plane1.mat", "max_dist": 20, "patch_size": 60,
             "down_dense": 0.2}  # fmt: skip
    protocol = DtuProtocol.from_meta(tmp_path, entry)
    assert protocol.obs_mask.shape == (3, 4, 5) and protocol.obs_mask.sum() == 1 and protocol.obs_mask[1, 2, 3]
    assert protocol.resolution == 1.0 and protocol.ground_plane.tolist() == [0, 0, 1, -1]
    assert (protocol.max_dist, protocol.num_consist, protocol.dist_thresh) == (20, 4, 0.2)
    with pytest.raises(InputError, match=r"Plane2\.mat: missing"):
        DtuProtocol.from_meta(tmp_path, {**entry, "ground_plane": "Plane2.mat"})
    with pytest.raises(InputError, match="without obs_mask"):
        DtuProtocol.from_meta(tmp_path, {"obs_mask": "ObsMask1_10.mat"})
    io.savemat(tmp_path / "NoP.mat", {"Q": np.zeros(4)})
    with pytest.raises(InputError, match=r"NoP\.mat: unreadable or without P"):
        DtuProtocol.from_meta(tmp_path, {**entry, "ground_plane": "NoP.mat"})
    with pytest.raises(InputError, match="not a file name"):
        DtuProtocol.from_meta(tmp_path, {**entry, "obs_mask": "../ObsMask1_10.mat"})
