"""The Gaussian rasteriser held to a plain per-pixel reference written here, to hand-computed cases, to the Gaussian
head's SH rotation, and (where gsplat and CUDA are present) to gsplat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anydepth.errors import ShapeError
from anydepth.geometry.gaussians import (
    quaternion_scale_to_covariance,
    render_gaussians,
    sh_colors,
)
from anydepth.models.da3.gaussian_head import rotate_sh

pytestmark = pytest.mark.torch113  # the inference core on torch 1.13 / Python 3.9 too


def _look_at(centre, target):
    """World-to-camera (3, 4), OpenCV axes (x right, y down, z forward)."""
    centre, target = np.asarray(centre, float), np.asarray(target, float)
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return np.concatenate([R, -(R @ centre)[:, None]], axis=1)


def _scene(n=40, seed=0, sh_coefficients=9):
    g = np.random.default_rng(seed)
    return {
        "means": g.uniform([-1.0, -0.8, 2.0], [1.0, 0.8, 4.0], size=(n, 3)),
        "quats": g.normal(size=(n, 4)),
        "scales": g.uniform(0.03, 0.25, size=(n, 3)),
        "opacities": g.uniform(0.2, 1.0, size=n),
        "harmonics": g.normal(scale=0.4, size=(n, 3, sh_coefficients)),
    }


def _reference(scene, w2c, K, width, height, degree, background, tile=16):
    """Per pixel and per Gaussian, in float64 loops: gsplat's projection, 16 px tile coverage, thresholds and early
    stop, written out without vectorisation."""
    R, t = w2c[:3, :3], w2c[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    centre = -R.T @ t
    projected = []
    for i in range(len(scene["means"])):
        w, x, y, z = scene["quats"][i] / np.linalg.norm(scene["quats"][i])
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )
        cov = rot @ np.diag(scene["scales"][i] ** 2) @ rot.T
        p = R @ scene["means"][i] + t
        if not 0.01 < p[2] < 1e10:
            continue
        u, v = p[0] / p[2], p[1] / p[2]
        u = min(max(u, -(cx / fx + 0.15 * width / fx)), (width - cx) / fx + 0.15 * width / fx)
        v = min(max(v, -(cy / fy + 0.15 * height / fy)), (height - cy) / fy + 0.15 * height / fy)
        J = np.array([[fx / p[2], 0, -fx * u / p[2]], [0, fy / p[2], -fy * v / p[2]]])
        cov2 = J @ R @ cov @ R.T @ J.T + 0.3 * np.eye(2)
        det = np.linalg.det(cov2)
        if det <= 0:
            continue
        lam = np.linalg.eigvalsh(cov2).max()
        radius = math.ceil(3 * math.sqrt(lam))
        mx, my = fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy
        if mx + radius <= 0 or mx - radius >= width or my + radius <= 0 or my - radius >= height:
            continue
        tiles = (
            math.floor((mx - radius) / tile), math.ceil((mx + radius) / tile),
            math.floor((my - radius) / tile), math.ceil((my + radius) / tile),
        )  # fmt: skip
        d = scene["means"][i] - centre
        d /= np.linalg.norm(d)
        dx_, dy_, dz_ = d
        basis = [0.28209479177387814, -0.4886025119029199 * dy_, 0.4886025119029199 * dz_, -0.4886025119029199 * dx_,
                 1.0925484305920792 * dx_ * dy_, -1.0925484305920792 * dy_ * dz_,
                 0.31539156525252005 * (3 * dz_ * dz_ - 1), -1.0925484305920792 * dx_ * dz_,
                 0.5462742152960396 * (dx_ * dx_ - dy_ * dy_)][: (degree + 1) ** 2]  # fmt: skip
        rgb = np.maximum(scene["harmonics"][i][:, : len(basis)] @ np.array(basis) + 0.5, 0.0)
        projected.append((p[2], i, mx, my, np.linalg.inv(cov2), tiles, rgb))
    projected.sort(key=lambda e: (e[0], e[1]))
    color = np.zeros((height, width, 3))
    depth = np.zeros((height, width))
    alpha_out = np.zeros((height, width))
    for py in range(height):
        for px in range(width):
            T, c, dep = 1.0, np.zeros(3), 0.0
            for z, i, mx, my, conic, (tx0, tx1, ty0, ty1), rgb in projected:
                if not (tx0 <= px // tile < tx1 and ty0 <= py // tile < ty1):
                    continue
                delta = np.array([mx - (px + 0.5), my - (py + 0.5)])
                sigma = 0.5 * delta @ conic @ delta
                alpha = min(0.999, scene["opacities"][i] * math.exp(-sigma))
                if sigma < 0 or alpha < 1 / 255:
                    continue
                if T * (1 - alpha) <= 1e-4:
                    break
                c += alpha * T * rgb
                dep += alpha * T * z
                T *= 1 - alpha
            color[py, px] = c + T * background
            alpha_out[py, px] = 1 - T
            depth[py, px] = dep / max(1 - T, 1e-10)
    return color, depth, alpha_out


def _tensors(scene):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in scene.items()}


@pytest.mark.parametrize("degree", [0, 2])
def test_matches_the_per_pixel_reference(degree):
    scene = _scene()
    width, height = 37, 29  # partial tiles on both edges
    K = np.array([[30.0, 0, 17.0], [0, 32.0, 15.5], [0, 0, 1]])
    cams = [_look_at([0, 0, 0], [0, 0, 3]), _look_at([0.6, -0.3, 0.2], [0.1, 0, 3])]
    background = np.array([0.2, 0.4, 0.6])
    t = _tensors(scene)
    out = render_gaussians(
        t["means"], t["quats"], t["scales"], t["opacities"], t["harmonics"],
        torch.tensor(np.stack(cams), dtype=torch.float32), torch.tensor(np.stack([K, K]), dtype=torch.float32),
        width, height, sh_degree=degree, background=torch.tensor(background, dtype=torch.float32), budget=50,
        depth_chunk=9,
    )  # fmt: skip
    assert out.colors.shape == (2, height, width, 3) and out.depth.shape == out.alpha.shape == (2, height, width)
    for v, cam in enumerate(cams):
        color, depth, alpha = _reference(scene, cam, K, width, height, degree, background)
        assert alpha.max() > 0.9 and (alpha < 0.5).any()  # a scene with both covered and open pixels
        np.testing.assert_allclose(out.colors[v].numpy(), color, atol=2e-5)
        np.testing.assert_allclose(out.alpha[v].numpy(), alpha, atol=2e-5)
        hit = alpha > 1e-3
        np.testing.assert_allclose(out.depth[v].numpy()[hit], depth[hit], rtol=2e-5, atol=2e-5)


def test_the_memory_budget_and_depth_chunks_do_not_change_the_image():
    t = _tensors(_scene(n=120, seed=3))
    cam = torch.tensor(_look_at([0, 0, 0], [0, 0, 3]), dtype=torch.float32)[None]
    K = torch.tensor([[[40.0, 0, 32.0], [0, 40.0, 24.0], [0, 0, 1]]])
    args = (t["means"], t["quats"], t["scales"], t["opacities"], t["harmonics"], cam, K, 64, 48)
    a = render_gaussians(*args, budget=1, depth_chunk=5)  # one overlap per run, five Gaussians per chunk
    b = render_gaussians(*args)
    torch.testing.assert_close(a.colors, b.colors, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.alpha, b.alpha, atol=1e-5, rtol=1e-5)


def test_one_gaussian_by_hand():
    """An isotropic Gaussian straight ahead: the centre pixel's alpha is opacity * exp(-sigma) with the 2D
    covariance f^2 s^2 / z^2 + 0.3; plain colour, black background."""
    f, s, z, opacity = 20.0, 0.05, 2.0, 0.8
    var = (f * s / z) ** 2 + 0.3
    out = render_gaussians(
        torch.tensor([[0.0, 0.0, z]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), s),
        torch.tensor([opacity]), torch.tensor([[1.0, 0.5, 0.25]]), torch.eye(4)[None],
        torch.tensor([[[f, 0, 8.0], [0, f, 8.0], [0, 0, 1]]]), 16, 16,
    )  # fmt: skip
    # pixel (8, 8) has its centre at (8.5, 8.5): half a pixel from the mean in x and y
    expected = opacity * math.exp(-0.5 * (0.25 + 0.25) / var)
    assert out.alpha[0, 8, 8].item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(out.colors[0, 8, 8].numpy(), expected * np.array([1.0, 0.5, 0.25]), rtol=1e-5)
    assert out.depth[0, 8, 8].item() == pytest.approx(z, rel=1e-6)
    assert out.alpha[0, 0, 0].item() == 0.0  # 8 px away: far beyond alpha 1/255


def test_opaque_stack_stops_early_and_near_plane_culls():
    """Ten opaque Gaussians, wide enough to cover the image evenly, at increasing depth: the first takes alpha
    0.999 (the clamp), the second would bring the transmittance to 1e-6 <= 1e-4, so only the first counts; one
    behind the camera is never drawn."""
    zs = torch.tensor([-1.0] + [1.0 + 0.1 * i for i in range(10)])
    means = torch.stack([torch.zeros_like(zs), torch.zeros_like(zs), zs], 1)
    colours = torch.rand(11, 3, generator=torch.Generator().manual_seed(0))
    out = render_gaussians(
        means, torch.tensor([[1.0, 0, 0, 0]]).repeat(11, 1), torch.full((11, 3), 100.0), torch.ones(11), colours,
        torch.eye(4)[None], torch.tensor([[[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1]]]), 8, 8, depth_chunk=2,
    )  # fmt: skip  # the tile is done after the first chunk: the rest is skipped
    np.testing.assert_allclose(out.alpha[0].numpy(), 0.999, rtol=1e-6)
    np.testing.assert_allclose(out.colors[0].numpy(), 0.999 * colours[1].numpy()[None, None].repeat(8, 0).repeat(8, 1),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(out.depth[0].numpy(), 1.0, rtol=1e-6)


def test_covariance_and_sh_conventions():
    q = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    s = torch.rand(5, 3) + 0.1
    cov = quaternion_scale_to_covariance(q, s)
    torch.testing.assert_close(cov, cov.transpose(-1, -2))
    torch.testing.assert_close(torch.linalg.eigvalsh(cov), (s**2).sort(-1).values, rtol=1e-5, atol=1e-6)
    # the renderer's SH basis is the one the Gaussian head rotates: colour along d of the rotated coefficients is
    # the original colour along R^T d
    g = torch.Generator().manual_seed(2)
    harmonics = torch.randn(6, 3, 9, generator=g)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    rotation = rotation * torch.det(rotation)  # a proper rotation
    d = torch.randn(6, 3, generator=g)
    rotated = rotate_sh(harmonics, rotation)
    torch.testing.assert_close(sh_colors(rotated, d, 2), sh_colors(harmonics, d @ rotation, 2), atol=1e-5, rtol=1e-5)


def test_bad_shapes_raise():
    t = _tensors(_scene(n=4))
    with pytest.raises(ShapeError):
        render_gaussians(t["means"], t["quats"][:3], t["scales"], t["opacities"], t["harmonics"], torch.eye(4)[None],
                         torch.eye(3)[None], 8, 8)  # fmt: skip
    with pytest.raises(ShapeError):
        render_gaussians(t["means"], t["quats"], t["scales"], t["opacities"], t["harmonics"], torch.eye(4)[None],
                         torch.eye(3)[None].repeat(2, 1, 1), 8, 8)  # fmt: skip


@pytest.mark.gpu
def test_matches_gsplat_on_cuda():
    gsplat = pytest.importorskip("gsplat")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    t = {k: v.cuda() for k, v in _tensors(_scene(n=300, seed=5)).items()}
    cam = torch.tensor(_look_at([0, 0, 0], [0, 0, 3]), dtype=torch.float32, device="cuda")
    viewmat = torch.cat([cam, torch.tensor([[0, 0, 0, 1.0]], device="cuda")])[None]
    K = torch.tensor([[[60.0, 0, 40.0], [0, 60.0, 30.0], [0, 0, 1]]], device="cuda")
    ours = render_gaussians(t["means"], t["quats"], t["scales"], t["opacities"], t["harmonics"], viewmat, K, 80, 60)
    colors, alphas, _ = gsplat.rasterization(
        t["means"], t["quats"], t["scales"], t["opacities"], t["harmonics"].transpose(1, 2).contiguous(), viewmat,
        K, 80, 60, sh_degree=2, render_mode="RGB+ED", packed=False,
    )  # fmt: skip
    torch.testing.assert_close(ours.colors, colors[..., :3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.alpha, alphas[..., 0], atol=1e-4, rtol=1e-4)
