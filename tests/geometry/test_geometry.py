"""Geometry: hand-computed cases and round trips for rotations, transforms, cameras, pose encodings, ray pose."""

from __future__ import annotations

import math

import pytest
import torch

from anydepth.errors import ShapeError
from anydepth.geometry import (
    affine_inverse,
    align_to_metric,
    alignment_mask,
    apply_metric_scaling,
    as_homogeneous,
    camera_from_rays,
    camera_to_pose_encoding,
    extrinsics_to_pose_encoding,
    fill_sky,
    fill_sky_with_far_depth,
    from_homogeneous,
    least_squares_scale,
    make_intrinsics,
    non_sky_mask,
    pixel_grid,
    pose_encoding_to_camera,
    pose_encoding_to_extrinsics,
    project_points,
    quantile,
    quaternion_to_rotation_matrix,
    ray_grid,
    rotation_matrix_to_quaternion,
    sample_for_quantile,
    solve_ray_camera,
    standardize_quaternion,
    to_homogeneous,
    transform_points,
    unproject_depth,
)

pytestmark = pytest.mark.torch113

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
s = math.sqrt(0.5)


def random_quaternions(n: int, dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return standardize_quaternion(q / q.norm(dim=-1, keepdim=True)).to(dtype)


def random_poses(shape, dtype, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    """(..., 4, 4) rigid transforms: random rotations (``spread`` < 1 keeps them near identity)."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.Size(shape).numel())
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q[:, :3] *= spread
    pose = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    pose[:, :3, :3] = quaternion_to_rotation_matrix(q)
    pose[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return pose.reshape((*shape, 4, 4)).to(dtype)


# -------------------------------------------------------------------------------------------------- rotations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "quaternion, matrix",
    [
        ((0.0, 0.0, 0.0, 1.0), [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        ((0.0, 0.0, s, s), [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # +90 degrees about z
        ((s, 0.0, 0.0, s), [[1, 0, 0], [0, 0, -1], [0, 1, 0]]),  # +90 degrees about x
        ((0.0, s, 0.0, s), [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),  # +90 degrees about y
        ((1.0, 0.0, 0.0, 0.0), [[1, 0, 0], [0, -1, 0], [0, 0, -1]]),  # 180 degrees about x
        ((0.5, 0.5, 0.5, 0.5), [[0, 0, 1], [1, 0, 0], [0, 1, 0]]),  # 120 degrees about (1, 1, 1): x->y->z->x
    ],
)
def test_quaternion_matrix_hand_cases(quaternion, matrix, dtype):
    q = torch.tensor(quaternion, dtype=dtype)
    R = torch.tensor(matrix, dtype=dtype)
    assert torch.allclose(quaternion_to_rotation_matrix(q), R, atol=TOL[dtype])
    assert torch.allclose(rotation_matrix_to_quaternion(R), q, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_quaternion_scale_and_sign_do_not_change_the_rotation(dtype):
    q = random_quaternions(16, dtype)
    R = quaternion_to_rotation_matrix(q)
    assert torch.allclose(quaternion_to_rotation_matrix(-2.5 * q), R, atol=10 * TOL[dtype])
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=dtype).expand(16, 3, 3), atol=10 * TOL[dtype])
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=dtype), atol=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_quaternion_matrix_round_trips(dtype):
    q = random_quaternions(256, dtype, seed=1)
    assert (rotation_matrix_to_quaternion(quaternion_to_rotation_matrix(q)) - q).abs().max() < 10 * TOL[dtype]
    assert (rotation_matrix_to_quaternion(quaternion_to_rotation_matrix(-q)) - q).abs().max() < 10 * TOL[dtype]
    R = quaternion_to_rotation_matrix(q).reshape(4, 64, 3, 3)  # any batch shape
    back = quaternion_to_rotation_matrix(rotation_matrix_to_quaternion(R))
    assert back.shape == (4, 64, 3, 3)
    assert (back - R).abs().max() < 10 * TOL[dtype]


def test_rotation_matrix_to_quaternion_has_non_negative_scalar_part_and_zero_gradient_at_kinks():
    q = rotation_matrix_to_quaternion(quaternion_to_rotation_matrix(random_quaternions(64, torch.float64)))
    assert (q[:, 3] >= 0).all()
    R = torch.eye(3, dtype=torch.float64, requires_grad=True)  # three of the four square roots are at 0
    rotation_matrix_to_quaternion(R).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_standardize_quaternion():
    q = torch.tensor([[0.1, 0.2, 0.3, -0.9], [0.1, 0.2, 0.3, 0.9]])
    assert torch.equal(standardize_quaternion(q), torch.tensor([[-0.1, -0.2, -0.3, 0.9], [0.1, 0.2, 0.3, 0.9]]))


# ----------------------------------------------------------------------------------------- rigid transforms


def test_affine_inverse_hand_case():
    pose = torch.tensor([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])  # 90 deg about z
    expected = torch.tensor([[0.0, 1.0, 0.0, -2.0], [-1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, -3.0]])
    assert torch.equal(affine_inverse(pose), expected)
    assert torch.equal(affine_inverse(as_homogeneous(pose)), as_homogeneous(expected))


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_inverse_round_trip(dtype):
    pose = random_poses((2, 5), dtype)
    eye = torch.eye(4, dtype=dtype).expand(2, 5, 4, 4)
    assert torch.allclose(pose @ affine_inverse(pose), eye, atol=10 * TOL[dtype])
    assert torch.allclose(affine_inverse(affine_inverse(pose[..., :3, :])), pose[..., :3, :], atol=10 * TOL[dtype])


def test_as_homogeneous_and_homogeneous_points():
    pose = torch.arange(12.0).reshape(3, 4)
    full = as_homogeneous(pose)
    assert torch.equal(full[:3], pose) and torch.equal(full[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert as_homogeneous(full) is full
    assert torch.equal(to_homogeneous(torch.tensor([[2.0, 3.0]])), torch.tensor([[2.0, 3.0, 1.0]]))
    assert torch.equal(from_homogeneous(torch.tensor([[4.0, 6.0, 2.0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(from_homogeneous(torch.tensor([1.0, 0.0]), eps=0.5), torch.tensor([2.0]))


def test_transform_points_hand_case_and_batches():
    pose = torch.tensor([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
    points = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert torch.equal(transform_points(pose, points), torch.tensor([[1.0, 3.0, 3.0], [0.0, 2.0, 4.0]]))
    poses = random_poses((3,), torch.float64)
    pts = torch.randn(3, 7, 3, dtype=torch.float64)
    manual = torch.stack([pts[i] @ poses[i, :3, :3].T + poses[i, :3, 3] for i in range(3)])
    assert torch.allclose(transform_points(poses, pts), manual)


# ------------------------------------------------------------------------------------------------- cameras


def test_make_intrinsics_and_pixel_grid():
    K = make_intrinsics(torch.tensor([[500.0, 400.0]]), torch.tensor([320.0, 240.0]))
    assert torch.equal(K[0], torch.tensor([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]]))
    grid = pixel_grid(2, 3)
    assert grid.shape == (2, 3, 2) and torch.equal(grid[1, 2], torch.tensor([2.0, 1.0]))


def test_unproject_hand_case():
    K = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    depth = torch.full((2, 4), 4.0)
    cam = unproject_depth(depth, K)
    assert torch.equal(cam[1, 3], torch.tensor([4.0, 0.0, 4.0]))  # ((3 - 1) / 2 * 4, (1 - 1) / 2 * 4, 4)
    assert torch.equal(cam[0, 0], torch.tensor([-2.0, -2.0, 4.0]))
    # OpenCV world-to-camera: x_cam = x_world + (0, 0, 1), so x_world = x_cam - (0, 0, 1)
    w2c = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    world = unproject_depth(depth, K, w2c)
    assert torch.equal(world[1, 3], torch.tensor([4.0, 0.0, 3.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unproject_then_project_round_trip(dtype):
    B, S, H, W = 2, 3, 5, 7
    g = torch.Generator().manual_seed(0)
    depth = (torch.rand(B, S, H, W, generator=g, dtype=torch.float64) * 5 + 0.5).to(dtype)
    focal = torch.rand(B, S, 2, generator=g, dtype=torch.float64) * 10 + 5
    K = make_intrinsics(focal, torch.tensor([3.2, 2.1], dtype=torch.float64)).to(dtype)
    K[..., 0, 1] = 0.3  # skew is allowed too
    w2c = random_poses((B, S), dtype, seed=2)
    world = unproject_depth(depth, K, w2c)
    assert world.shape == (B, S, H, W, 3)
    pixels, z = project_points(world.reshape(B, S, H * W, 3), K, w2c)
    assert torch.allclose(z, depth.reshape(B, S, H * W), atol=100 * TOL[dtype])
    expected = pixel_grid(H, W, dtype=dtype).reshape(H * W, 2).expand(B, S, H * W, 2)
    assert torch.allclose(pixels, expected, atol=100 * TOL[dtype])
    # one camera for all views broadcasts
    cam = unproject_depth(depth, K[0, 0])
    assert torch.allclose(cam[..., 2], depth, atol=TOL[dtype])


# ------------------------------------------------------------------------------------------- pose encoding


def test_pose_encoding_hand_case():
    K = torch.tensor([[100.0, 0.0, 100.0], [0.0, 50.0, 100.0], [0.0, 0.0, 1.0]])
    pose = torch.cat(
        (quaternion_to_rotation_matrix(torch.tensor([0.0, 0.0, s, s])), torch.tensor([[1.0], [2.0], [3.0]])), 1
    )
    enc = camera_to_pose_encoding(pose, K, (100, 200))  # fov_h = 2 atan(50 / 50), fov_w = 2 atan(100 / 100)
    expected = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, s, s, math.pi / 2, math.pi / 2])
    assert torch.allclose(enc, expected, atol=1e-6)
    pose_back, K_back = pose_encoding_to_camera(enc, (100, 200))
    assert torch.allclose(pose_back, pose, atol=1e-6)
    # the principal point comes back at (W / 2, H / 2), DA3's choice
    assert torch.allclose(K_back, torch.tensor([[100.0, 0.0, 100.0], [0.0, 50.0, 50.0], [0.0, 0.0, 1.0]]), atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pose_encoding_round_trips(dtype):
    B, S, H, W = 2, 4, 280, 378
    g = torch.Generator().manual_seed(0)
    c2w = random_poses((B, S), dtype)
    focal = (torch.rand(B, S, 2, generator=g, dtype=torch.float64) * 300 + 150).to(dtype)
    K = make_intrinsics(focal, torch.tensor([W / 2, H / 2], dtype=dtype))
    enc = camera_to_pose_encoding(c2w, K, (H, W))
    assert enc.shape == (B, S, 9) and enc.dtype == dtype
    pose, K_back = pose_encoding_to_camera(enc, (H, W))
    assert torch.allclose(pose, c2w[..., :3, :], atol=10 * TOL[dtype])
    assert torch.allclose(K_back, K, rtol=10 * TOL[dtype])
    assert torch.allclose(camera_to_pose_encoding(pose, K_back, (H, W)), enc, atol=10 * TOL[dtype])
    # the world-to-camera pair: encode(inverse) and decode-then-invert
    w2c = affine_inverse(c2w)
    assert torch.allclose(extrinsics_to_pose_encoding(w2c, K, (H, W)), enc, atol=10 * TOL[dtype])
    ext, _ = pose_encoding_to_extrinsics(enc, (H, W))
    assert torch.allclose(ext, w2c[..., :3, :], atol=10 * TOL[dtype])


def test_pose_decoding_floors_a_zero_field_of_view():
    enc = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    _, K = pose_encoding_to_camera(enc, (10, 20))
    assert K[0, 0] == pytest.approx(10 / 1e-6) and K[1, 1] == pytest.approx(5 / 1e-6)


# --------------------------------------------------------------------------------------------- ray pose


def synthetic_rays(cam_to_world, focal, centre, grid, dtype, seed=0):
    """Ray maps (V, h, w, 6) of pinhole cameras in DA3's normalised image (focal/centre in those units)."""
    h, w = grid
    g = torch.Generator().manual_seed(seed)
    xy = ray_grid(h, w, dtype=torch.float64)
    cam = torch.cat(
        ((xy - centre[:, None, None]) / focal[:, None, None], torch.ones(len(focal), h, w, 1, dtype=torch.float64)), -1
    )
    directions = cam @ cam_to_world[:, None, :3, :3].transpose(-1, -2)
    directions = directions * (torch.rand((*directions.shape[:-1], 1), generator=g, dtype=torch.float64) + 0.5)
    origins = cam_to_world[:, None, None, :3, 3].expand_as(directions)
    conf = torch.rand(directions.shape[:-1], generator=g, dtype=torch.float64) + 0.5
    return torch.cat((directions, origins), -1).to(dtype), conf.to(dtype)


def test_ray_grid_hand_case():
    grid = ray_grid(2, 4)
    assert torch.allclose(grid[0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(grid[:, 0, 1], torch.tensor([-0.5, 0.5]))


@pytest.mark.parametrize("decomposition", ["ql", "qr"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ray_pose_recovers_a_known_camera(dtype, decomposition):
    c2w = random_poses((3,), torch.float64, seed=4, spread=0.3)
    focal = torch.tensor([[1.2, 1.5], [0.9, 0.9], [2.0, 1.7]], dtype=torch.float64)
    rays, conf = synthetic_rays(c2w, focal, torch.zeros(3, 2, dtype=torch.float64), (12, 16), dtype)
    pose, f, pp = solve_ray_camera(
        rays.reshape(1, 3, 12, 16, 6), conf.reshape(1, 3, 12, 16), decomposition=decomposition
    )
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert pose.shape == (1, 3, 4, 4) and pose.dtype == dtype
    assert (pose[0].double() - c2w).abs().max() < tol
    assert (f[0].double() - focal).abs().max() < tol
    assert (pp[0].double() - 1.0).abs().max() < tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_ray_pose_qr_recovers_an_off_centre_principal_point(dtype):
    c2w = random_poses((2,), torch.float64, seed=5, spread=0.3)
    focal = torch.tensor([[1.2, 1.4], [1.0, 1.1]], dtype=torch.float64)
    centre = torch.tensor([[0.1, -0.05], [-0.2, 0.15]], dtype=torch.float64)
    rays, conf = synthetic_rays(c2w, focal, centre, (10, 14), dtype)
    pose, f, pp = solve_ray_camera(rays, conf, decomposition="qr")
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert (pose.double() - c2w).abs().max() < tol
    assert (f.double() - focal).abs().max() < tol
    assert (pp.double() - (centre + 1)).abs().max() < tol
    # DA3's QL split reads a different triangle: off-centre principal points bend its rotation
    pose_ql, _, _ = solve_ray_camera(rays, conf, decomposition="ql")
    assert (pose_ql.double() - c2w).abs().max() > 1e-2


def test_ray_pose_ignores_outliers_and_flat_rays():
    c2w = random_poses((1,), torch.float64, seed=6, spread=0.3)
    focal = torch.tensor([[1.3, 1.3]], dtype=torch.float64)
    rays, conf = synthetic_rays(c2w, focal, torch.zeros(1, 2, dtype=torch.float64), (20, 24), torch.float64)
    g = torch.Generator().manual_seed(1)
    outliers = torch.rand(rays.shape[:-1], generator=g) < 0.2
    rays[..., :3][outliers] = torch.randn(int(outliers.sum()), 3, generator=g, dtype=torch.float64)
    rays[0, 3, 5, 2] = 0.0  # a ray parallel to the world xy-plane: ignored, also for the camera centre
    rays[0, 3, 5, 3:] += 100.0
    conf_before = conf.clone()
    pose, f, _ = solve_ray_camera(rays, conf)
    assert torch.equal(conf, conf_before)
    assert (pose[0] - c2w[0]).abs().max() < 1e-9
    assert (f - focal).abs().max() < 1e-9


def test_ray_pose_caps_the_inliers_of_large_maps():
    c2w = random_poses((1,), torch.float64, seed=7, spread=0.3)
    focal = torch.tensor([[1.1, 1.2]], dtype=torch.float64)
    rays, conf = synthetic_rays(c2w, focal, torch.zeros(1, 2, dtype=torch.float64), (96, 128), torch.float64)
    pose, f, _ = solve_ray_camera(rays, conf, max_inliers=5000)
    assert (pose[0] - c2w[0]).abs().max() < 1e-9
    assert (f - focal).abs().max() < 1e-9
    # the draws come from a private generator: repeatable, and the global one is untouched
    state = torch.get_rng_state()
    again = solve_ray_camera(rays, conf, max_inliers=5000)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(again[0], pose)


def test_camera_from_rays_in_pixels():
    c2w = random_poses((2,), torch.float64, seed=8, spread=0.3)
    focal = torch.tensor([[1.2, 1.5], [0.9, 1.0]], dtype=torch.float64)
    rays, conf = synthetic_rays(c2w, focal, torch.zeros(2, 2, dtype=torch.float64), (9, 12), torch.float64)
    extrinsics, intrinsics = camera_from_rays(rays, conf, (280, 378))
    assert extrinsics.shape == (2, 3, 4)
    assert torch.allclose(extrinsics, affine_inverse(c2w)[:, :3], atol=1e-9)
    expected = make_intrinsics(
        focal * torch.tensor([189.0, 140.0], dtype=torch.float64), torch.tensor([189.0, 140.0], dtype=torch.float64)
    )
    assert torch.allclose(intrinsics, expected, atol=1e-7)


# ------------------------------------------------------------------------------------------- depth scale


def test_metric_helpers_hand_cases():
    K = torch.tensor([[600.0, 0.0, 0.0], [0.0, 300.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(apply_metric_scaling(torch.full((2, 2), 2.0), K), torch.full((2, 2), 3.0))
    assert least_squares_scale(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 2.0])) == 2.0
    assert least_squares_scale(torch.tensor([1.0]), torch.tensor([0.0])) == 0.0  # eps keeps it finite
    assert torch.equal(non_sky_mask(torch.tensor([0.1, 0.3, 0.5])), torch.tensor([True, False, False]))
    conf = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = alignment_mask(
        conf, torch.tensor([True, True, False, True]), torch.tensor([1.0, 1.0, 1.0, 0.0]),
        torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor(2.0),
    )  # fmt: skip
    assert torch.equal(mask, torch.tensor([False, True, False, False]))
    depth = torch.tensor([1.0, 2.0, 3.0])
    filled, filled_conf = fill_sky(depth, torch.tensor([True, False, True]), 9.0, torch.zeros(3))
    assert torch.equal(filled, torch.tensor([1.0, 9.0, 3.0])) and torch.equal(
        filled_conf, torch.tensor([0.0, 1.0, 0.0])
    )
    assert torch.equal(depth, torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_quantile_equals_torch_quantile(n, q):
    values = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert torch.allclose(quantile(values, q), torch.quantile(values, q))
    assert quantile(torch.tensor([4.0, 1.0, 3.0, 2.0]), 0.5) == 2.5


def test_sample_for_quantile_is_deterministic():
    values = torch.arange(1000.0)
    assert sample_for_quantile(values, max_samples=1000) is values
    a, b = sample_for_quantile(values, max_samples=100), sample_for_quantile(values, max_samples=100)
    assert a.shape == (100,) and torch.equal(a, b) and a.unique().numel() == 100
    assert not torch.equal(a, sample_for_quantile(values, max_samples=100, seed=1))


def test_align_to_metric_recovers_a_known_scale_per_sample():
    B, S, H, W = 2, 2, 8, 10
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(B, S, H, W, generator=g) * 3 + 0.5
    conf = torch.rand(B, S, H, W, generator=g) + 1
    sky = torch.zeros(B, S, H, W)
    sky[..., :2, :] = 0.9
    K = make_intrinsics(torch.full((B, S, 2), 600.0), torch.full((B, S, 2), 5.0))
    true_scale = torch.tensor([2.0, 0.5])
    metric = depth * true_scale[:, None, None, None] * 300.0 / 600.0  # raw DA3METRIC output
    ext = random_poses((B, S), torch.float32, seed=1)[..., :3, :]
    out = align_to_metric(depth, conf, ext, K, metric, sky)
    assert torch.allclose(out.scale, true_scale)
    assert torch.allclose(out.depth[..., 2:, :], depth[..., 2:, :] * true_scale[:, None, None, None])
    assert torch.allclose(out.extrinsics[..., :3, 3], ext[..., :3, 3] * true_scale[:, None, None])
    assert torch.equal(out.extrinsics[..., :3, :3], ext[..., :3, :3])
    for b in range(B):
        sky_depth = quantile(out.depth[b, :, 2:, :], 0.99)
        assert torch.allclose(out.depth[b, :, :2, :], sky_depth.expand(S, 2, W))
    assert (out.depth_conf[..., :2, :] == 1).all()


def test_align_to_metric_leaves_an_all_sky_sample_unscaled():
    depth = torch.ones(1, 1, 4, 4)
    out = align_to_metric(
        depth, depth, torch.eye(4)[None, None], torch.eye(3)[None, None], depth, torch.ones(1, 1, 4, 4)
    )
    assert out.scale == 1 and torch.equal(out.depth, depth)


def test_fill_sky_with_far_depth():
    depth = torch.arange(1.0, 101.0).reshape(10, 10)
    sky = torch.zeros(10, 10)
    sky[0] = 1.0
    # upstream's rule: at most 10 sky pixels (or at most 10 others) leave the depth unchanged
    assert torch.equal(fill_sky_with_far_depth(depth, sky), depth)
    sky[1, :5] = 1.0
    out = fill_sky_with_far_depth(depth, sky)
    far = torch.quantile(torch.arange(16.0, 101.0), 0.99)  # the non-sky depths are 16..100
    assert torch.allclose(out[0], far.expand(10)) and torch.allclose(out[1, :5], far.expand(5))
    assert torch.equal(out[1, 5:], depth[1, 5:]) and torch.equal(out[2:], depth[2:])


# ----------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "call",
    [
        lambda: quaternion_to_rotation_matrix(torch.zeros(3)),
        lambda: rotation_matrix_to_quaternion(torch.zeros(3, 4)),
        lambda: affine_inverse(torch.zeros(4, 3)),
        lambda: transform_points(torch.zeros(3, 4), torch.zeros(5, 2)),
        lambda: transform_points(torch.zeros(2, 3, 4), torch.zeros(3, 5, 3)),
        lambda: unproject_depth(torch.zeros(4, 4), torch.zeros(2, 2)),
        lambda: unproject_depth(torch.zeros(4, 4, dtype=torch.long), torch.eye(3)),
        lambda: camera_to_pose_encoding(torch.zeros(3, 3), torch.eye(3), (4, 4)),
        lambda: pose_encoding_to_camera(torch.zeros(7), (4, 4)),
        lambda: pose_encoding_to_camera(torch.zeros(9), (0, 4)),
        lambda: pose_encoding_to_camera(torch.zeros(9), 4),
        lambda: solve_ray_camera(torch.zeros(4, 4, 3), torch.ones(4, 4)),
        lambda: solve_ray_camera(torch.zeros(4, 4, 6), torch.ones(4, 5)),
        lambda: solve_ray_camera(torch.zeros(2, 2, 6), torch.ones(2, 2)),
        lambda: apply_metric_scaling(torch.zeros(2, 4, 4), torch.eye(3)),
        lambda: least_squares_scale(torch.zeros(3), torch.zeros(4)),
        lambda: quantile(torch.zeros(0), 0.5),
        lambda: align_to_metric(*(torch.zeros(1, 4, 4),) * 2, torch.eye(4), torch.eye(3), *(torch.zeros(1, 4, 4),) * 2),
    ],
)
def test_bad_shapes_raise_shape_error(call):
    with pytest.raises(ShapeError):
        call()


def test_non_tensor_input_raises_shape_error():
    with pytest.raises(ShapeError, match=r"torch\.Tensor"):
        quaternion_to_rotation_matrix([0.0, 0.0, 0.0, 1.0])
