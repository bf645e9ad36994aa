"""Sim(3) fitting, DA3 extrinsics normalisation and alignment to input poses: hand-made cases and upstream parity.

The parity fixture comes from ``scripts/make_da3_sim3_fixtures.py`` (its docstring says how to regenerate it):
upstream's ``_normalize_extrinsics``, ``align_poses_umeyama`` (evo's Umeyama, RANSAC with ``random_state=42``)
and ``_align_to_input_extrinsics_intrinsics`` on float32 cameras.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
import torch

from anydepth.errors import ShapeError
from anydepth.geometry.cameras import affine_inverse, as_homogeneous, unproject_depth
from anydepth.geometry.rotations import quaternion_to_rotation_matrix
from anydepth.geometry.sim3 import (
    Sim3,
    align_to_input_extrinsics,
    apply_sim3_to_extrinsics,
    normalize_extrinsics,
    ransac_umeyama,
    umeyama,
)
from tests.helpers.paths import FIXTURES

pytestmark = pytest.mark.torch113

FIXTURE = FIXTURES / "da3_sim3.npz"


@cache
def fixture():
    data = np.load(FIXTURE)
    return {k: data[k] for k in data.files}


def case_names(prefix):
    return [c["name"] for c in json.loads(str(fixture()["cases_json"])) if c["name"].startswith(prefix)]


def random_rotation(generator, n=None):
    shape = (4,) if n is None else (n, 4)
    return quaternion_to_rotation_matrix(torch.randn(shape, generator=generator, dtype=torch.float64))


def random_extrinsics(n, generator, spread=3.0):
    rotation = random_rotation(generator, n)
    centre = spread * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    pose = torch.cat((rotation, centre[..., None]), dim=-1)
    return affine_inverse(pose)  # (n, 3, 4) world-to-camera


def known_sim3(generator):
    return Sim3(
        torch.tensor(2.5, dtype=torch.float64), random_rotation(generator), torch.tensor([1.0, -2.0, 0.5]).double()
    )


# --- Umeyama -------------------------------------------------------------------------------------------------


def test_umeyama_recovers_known_similarity():
    g = torch.Generator().manual_seed(0)
    truth = known_sim3(g)
    source = torch.randn(20, 3, generator=g, dtype=torch.float64)
    fit = umeyama(source, truth.apply(source))
    assert float(fit.scale) == pytest.approx(2.5, abs=1e-12)
    torch.testing.assert_close(fit.rotation, truth.rotation, atol=1e-12, rtol=0)
    torch.testing.assert_close(fit.translation, truth.translation, atol=1e-12, rtol=0)
    assert float(torch.det(fit.rotation)) == pytest.approx(1.0)


def test_umeyama_rigid_batched_and_float32():
    g = torch.Generator().manual_seed(1)
    rotation = random_rotation(g, 4)
    source = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    target = source @ rotation.transpose(-1, -2) + 1.0
    fit = umeyama(source.float(), target.float(), with_scale=False)
    assert fit.scale.shape == (4,) and fit.rotation.dtype == torch.float32
    torch.testing.assert_close(fit.scale, torch.ones(4))
    torch.testing.assert_close(fit.rotation, rotation.float(), atol=1e-5, rtol=0)


def test_umeyama_reflection_is_not_returned():
    source = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    mirrored = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    fit = umeyama(source, mirrored)
    assert float(torch.det(fit.rotation)) == pytest.approx(1.0)


def test_weighted_umeyama_ignores_zero_weights():
    g = torch.Generator().manual_seed(2)
    truth = known_sim3(g)
    source = torch.randn(12, 3, generator=g, dtype=torch.float64)
    target = truth.apply(source)
    target[:3] += 10.0  # corrupted points, weight 0
    weights = torch.ones(12, dtype=torch.float64)
    weights[:3] = 0.0
    fit = umeyama(source, target, weights=weights)
    assert float(fit.scale) == pytest.approx(2.5, abs=1e-10)
    torch.testing.assert_close(fit.translation, truth.translation, atol=1e-10, rtol=0)
    uniform = umeyama(source[3:], target[3:], weights=torch.full((9,), 7.0, dtype=torch.float64))
    torch.testing.assert_close(uniform.rotation, fit.rotation, atol=1e-10, rtol=0)


def test_umeyama_degenerate_sets():
    one = umeyama(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    assert float(one.scale) == 1.0
    torch.testing.assert_close(one.apply(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([[0.0, 0.0, 1.0]]))
    # two points: the scale and the mapped points are determined, the roll about the line is not
    source = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0, 1.0], [1.0, 4.0, 1.0]], dtype=torch.float64)
    two = umeyama(source, target)
    assert float(two.scale) == pytest.approx(3.0)
    torch.testing.assert_close(two.apply(source), target, atol=1e-12, rtol=0)


def test_umeyama_bad_input():
    with pytest.raises(ShapeError):
        umeyama(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ShapeError):
        umeyama(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ShapeError):
        umeyama(torch.zeros(4, 3), torch.zeros(4, 3), weights=torch.zeros(4))


def test_sim3_inverse_and_matrix():
    g = torch.Generator().manual_seed(3)
    sim = known_sim3(g)
    points = torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sim.inverse().apply(sim.apply(points)), points)
    homogeneous = torch.cat((points, torch.ones(5, 1, dtype=torch.float64)), dim=-1)
    torch.testing.assert_close((homogeneous @ sim.matrix().T)[:, :3], sim.apply(points))


# --- RANSAC --------------------------------------------------------------------------------------------------


def test_ransac_rejects_outliers_and_is_deterministic():
    g = torch.Generator().manual_seed(4)
    truth = known_sim3(g)
    source = torch.randn(15, 3, generator=g, dtype=torch.float64)
    target = truth.apply(source) + 1e-4 * torch.randn(15, 3, generator=g, dtype=torch.float64)
    target[[2, 9]] += torch.tensor([8.0, -6.0, 5.0], dtype=torch.float64)
    fit, inliers = ransac_umeyama(source, target)
    assert not inliers[2] and not inliers[9]
    assert float(fit.scale) == pytest.approx(2.5, rel=1e-4)
    torch.testing.assert_close(fit.rotation, truth.rotation, atol=1e-4, rtol=0)
    plain = umeyama(source, target)
    assert abs(float(plain.scale) - 2.5) > 10 * abs(float(fit.scale) - 2.5)  # the outliers do pull a plain fit
    again, inliers_again = ransac_umeyama(source, target)
    assert torch.equal(again.rotation, fit.rotation) and torch.equal(inliers, inliers_again)


def test_ransac_needs_three_points():
    with pytest.raises(ShapeError):
        ransac_umeyama(torch.zeros(2, 3), torch.zeros(2, 3))


# --- extrinsics ----------------------------------------------------------------------------------------------


def test_normalize_extrinsics_hand_case():
    ext = torch.eye(4).repeat(3, 1, 1)
    ext[1, 0, 3], ext[2, 0, 3] = 2.0, 4.0
    rotation = random_rotation(torch.Generator().manual_seed(5)).float()
    ext[:, :3, :3] = rotation  # a common rotation: view 0 becomes the identity
    normalized, scale = normalize_extrinsics(ext)
    assert float(scale) == pytest.approx(2.0)  # distances (0, 2, 4): lower median 2
    torch.testing.assert_close(normalized[0], torch.eye(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(normalized[2, :3, 3], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    # two views: the median is view 0's zero distance, clamped to 0.1 (as upstream)
    _, scale2 = normalize_extrinsics(ext[:2, :3])
    assert float(scale2) == pytest.approx(0.1)


def test_apply_sim3_to_extrinsics_moves_camera_centres():
    g = torch.Generator().manual_seed(6)
    ext = random_extrinsics(5, g)
    sim = known_sim3(g)
    moved = apply_sim3_to_extrinsics(sim, ext)
    assert moved.shape == (5, 3, 4)
    centres = affine_inverse(ext)[:, :3, 3]
    torch.testing.assert_close(affine_inverse(moved)[:, :3, 3], sim.apply(centres))
    torch.testing.assert_close(
        moved[:, :3, :3] @ moved[:, :3, :3].transpose(-1, -2), torch.eye(3).double().expand(5, 3, 3)
    )


@pytest.mark.parametrize("align_scale", [True, False])
@pytest.mark.parametrize("num_views", [2, 4, 12])
def test_alignment_keeps_depth_and_cameras_consistent(align_scale, num_views):
    # a scene seen by the input cameras; the "prediction" is the same scene in another frame and scale
    g = torch.Generator().manual_seed(num_views)
    input_ext = random_extrinsics(num_views, g)
    sim = known_sim3(g)  # input world -> predicted world
    predicted_ext = apply_sim3_to_extrinsics(sim, input_ext)
    depth_input = 1.0 + torch.rand(num_views, 4, 5, generator=g, dtype=torch.float64)
    depth_predicted = depth_input * sim.scale
    intrinsics = torch.tensor([[4.0, 0, 2.5], [0, 4.0, 2.0], [0, 0, 1]], dtype=torch.float64).expand(num_views, 3, 3)
    result = align_to_input_extrinsics(predicted_ext, as_homogeneous(input_ext), depth_predicted, align_scale)
    points = unproject_depth(result.depth, intrinsics, result.extrinsics)
    if align_scale:
        torch.testing.assert_close(result.extrinsics, input_ext)
        torch.testing.assert_close(result.depth, depth_input)
        expected = unproject_depth(depth_input, intrinsics, input_ext)
    else:
        torch.testing.assert_close(result.depth, depth_predicted)
        centres = affine_inverse(result.extrinsics)[:, :3, 3]
        torch.testing.assert_close(centres, affine_inverse(predicted_ext)[:, :3, 3])
        if num_views == 2:
            return  # centres on a line: the roll of the frame about it is not determined by the centres
        expected = unproject_depth(depth_predicted, intrinsics, predicted_ext)
    torch.testing.assert_close(points, expected, atol=1e-8, rtol=0)


def test_alignment_bad_shapes():
    with pytest.raises(ShapeError):
        align_to_input_extrinsics(torch.zeros(3, 3, 4), torch.zeros(4, 3, 4))
    with pytest.raises(ShapeError):
        align_to_input_extrinsics(torch.zeros(3, 3, 4), torch.zeros(3, 3, 4), depth=torch.zeros(2, 4, 4))


# --- upstream parity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", case_names("norm_"))
def test_normalize_extrinsics_matches_upstream(name):
    data = fixture()
    normalized, _ = normalize_extrinsics(torch.from_numpy(data[f"{name}__input"]))
    np.testing.assert_allclose(normalized.numpy(), data[f"{name}__output"], atol=1e-5, rtol=0)


def _centres(ext):
    return affine_inverse(as_homogeneous(torch.from_numpy(ext).double()))[:, :3, 3]


@pytest.mark.parametrize("name", case_names("umeyama_") + case_names("ransac_"))
def test_umeyama_matches_upstream(name):
    data = fixture()
    # upstream's api passes the predictions as the reference: the fit maps input centres onto predicted ones
    source, target = _centres(data[f"{name}__input"]), _centres(data[f"{name}__pred"])
    fit = ransac_umeyama(source, target, seed=42)[0] if name.startswith("ransac") else umeyama(source, target)
    assert float(fit.scale) == pytest.approx(float(data[f"{name}__s"]), rel=1e-6)
    aligned = apply_sim3_to_extrinsics(fit, torch.from_numpy(data[f"{name}__input"]).double())
    expected = torch.from_numpy(data[f"{name}__aligned"]).double()
    # camera centres are determined even for two views, where the rotation about their line is not
    torch.testing.assert_close(affine_inverse(aligned)[:, :3, 3], affine_inverse(expected)[:, :3, 3], atol=1e-5, rtol=0)
    if not name.endswith("_2"):
        np.testing.assert_allclose(fit.rotation.numpy(), data[f"{name}__r"], atol=1e-6)
        np.testing.assert_allclose(fit.translation.numpy(), data[f"{name}__t"], atol=1e-5)
        torch.testing.assert_close(aligned, expected[:, :3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", case_names("api_"))
def test_align_to_input_extrinsics_matches_upstream(name):
    data = fixture()
    result = align_to_input_extrinsics(
        torch.from_numpy(data[f"{name}__pred"]),
        torch.from_numpy(data[f"{name}__input"]),
        torch.from_numpy(data[f"{name}__depth"]),
        align_to_input_ext_scale=name.endswith("True"),
    )
    np.testing.assert_allclose(result.extrinsics.numpy(), data[f"{name}__extrinsics"][:, :3], atol=1e-5)
    np.testing.assert_allclose(result.depth.numpy(), data[f"{name}__depth_out"], rtol=1e-5)
    if name.startswith("api_12"):
        assert not result.inliers[0] and not result.inliers[5]  # the two outlier views


@pytest.mark.parametrize("name", case_names("rng_"))
def test_ransac_subsets_follow_numpy_default_rng(name):
    # our RANSAC draws its subsets with the very calls upstream makes; this holds the numpy stream to the fixture
    subsets = fixture()[f"{name}__subsets"]
    n = int(name.split("_")[1])
    generator = np.random.default_rng(42)
    for row in subsets:
        np.testing.assert_array_equal(generator.choice(np.arange(n), size=max(3, (n + 1) // 2), replace=False), row)


def test_fixture_is_small():
    assert FIXTURE.stat().st_size < 100_000
    assert math.isfinite(float(fixture()["umeyama_6__s"]))
