"""The training losses: zero on their own target, their invariances, hand-computed values, finite gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anydepth.geometry.ray_pose import camera_from_rays
from anydepth.train.losses import (
    camera_rays,
    confidence_depth_loss,
    gradient_matching_loss,
    median_normalised,
    normalise_scene,
    ray_loss,
    relative_depth_loss,
    scale_and_shift,
    silog_loss,
    ssi_loss,
    temporal_gradient_matching_loss,
)


def _maps(seed=0, shape=(3, 12, 16)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
    pred = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
    mask = torch.rand(shape, generator=g) > 0.2
    return pred, target, mask


MAP_LOSSES = [ssi_loss, gradient_matching_loss, relative_depth_loss, silog_loss]


@pytest.mark.parametrize("loss", MAP_LOSSES)
def test_zero_on_the_target_itself(loss):
    _, target, mask = _maps()
    assert loss(target.clone(), target, mask).item() == pytest.approx(0.0, abs=2e-6)


def test_temporal_loss_zero_on_the_target_and_on_an_affine_copy():
    _, target, mask = _maps(shape=(2, 5, 8, 8))
    assert temporal_gradient_matching_loss(target.clone(), target, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert temporal_gradient_matching_loss(3 * target + 2, target, mask).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("loss", [ssi_loss, gradient_matching_loss])
@pytest.mark.parametrize("a, b", [(2.5, 0.0), (0.1, 3.0), (-1.5, 0.7)])
def test_scale_and_shift_invariance(loss, a, b):
    pred, target, mask = _maps(1)
    assert loss(a * pred + b, target, mask).item() == pytest.approx(loss(pred, target, mask).item(), rel=1e-9)


def test_temporal_loss_invariant_to_one_scale_and_shift_per_clip():
    pred, target, mask = _maps(2, shape=(2, 4, 6, 6))
    a = torch.tensor([2.0, 0.5], dtype=torch.float64).view(2, 1, 1, 1)
    b = torch.tensor([-1.0, 4.0], dtype=torch.float64).view(2, 1, 1, 1)
    base = temporal_gradient_matching_loss(pred, target, mask).item()
    assert base > 0
    assert temporal_gradient_matching_loss(a * pred + b, target, mask).item() == pytest.approx(base, rel=1e-9)


def test_silog_with_lambda_one_ignores_a_global_scale_and_with_half_does_not():
    pred, target, mask = _maps(3)
    full = silog_loss(pred, target, mask, lam=1.0).item()
    assert silog_loss(4.0 * pred, target, mask, lam=1.0).item() == pytest.approx(full, rel=1e-9)
    half = silog_loss(pred, target, mask).item()
    assert silog_loss(4.0 * pred, target, mask).item() > half + 0.5  # lambda 0.5 keeps part of the scale error


def test_ssi_known_value():
    # target (0, 1, 2, 3); pred (0, 1, 2, 4): LS fit of t ~ s p + c over 4 points
    pred = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]], dtype=torch.float64)
    target = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]], dtype=torch.float64)
    mask = torch.ones_like(pred, dtype=torch.bool)
    # normal equations: sum p^2 = 21, sum p = 7, n = 4, sum p t = 17, sum t = 6 -> det 35, s = 26/35, c = 7/35
    s, c = scale_and_shift(pred, target, mask)
    assert s.item() == pytest.approx(26 / 35) and c.item() == pytest.approx(7 / 35)
    residuals = [abs(26 / 35 * p + 7 / 35 - t) for p, t in zip([0, 1, 2, 4], [0, 1, 2, 3])]
    assert ssi_loss(pred, target, mask).item() == pytest.approx(sum(residuals) / 4)


def test_gradient_matching_known_value():
    # one image whose residual after alignment is known: pred = target + bump, with the bump not affine
    target = torch.zeros(1, 2, 3, dtype=torch.float64)
    pred = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]]], dtype=torch.float64)
    mask = torch.ones_like(pred, dtype=torch.bool)
    # target constant: the LS fit is s = 0, c = 0 (target = 0) -> residual = 0 everywhere: loss 0
    assert gradient_matching_loss(pred, target, mask, scales=1).item() == pytest.approx(0.0)
    target = pred.clone()
    target[0, 0, 0] = 6.0  # now the fit cannot absorb both bumps
    s, c = scale_and_shift(pred, target, mask)
    r = (s.item() * pred + c.item() - target)[0]
    gx = (r[:, 1:] - r[:, :-1]).abs().sum()
    gy = (r[1:, :] - r[:-1, :]).abs().sum()
    assert gradient_matching_loss(pred, target, mask, scales=1).item() == pytest.approx(((gx + gy) / 6).item())


def test_silog_known_value():
    pred = torch.tensor([[[1.0, 1.0]]])
    target = torch.tensor([[[math.e, 1.0]]])
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    # g = (1, 0): mean(g^2) = 0.5, mean(g) = 0.5 -> sqrt(0.5 - 0.5 * 0.25)
    assert silog_loss(pred, target, mask).item() == pytest.approx(math.sqrt(0.375), rel=1e-6)


def test_confidence_depth_loss_known_value_and_best_confidence():
    depth = torch.tensor([[[[1.0, 2.0]]]])
    target = torch.tensor([[[[1.5, 2.0]]]])
    conf = torch.tensor([[[[2.0, 1.0]]]])
    mask = torch.ones_like(depth, dtype=torch.bool)
    expected = ((2.0 * 0.5 - math.log(2.0)) + (0.0 - 0.0)) / 2
    assert confidence_depth_loss(depth, conf, target, mask).item() == pytest.approx(expected, rel=1e-6)
    # for an error e the loss is smallest at c = 1 / e
    errors = torch.linspace(1.2, 4.0, 50)
    values = [confidence_depth_loss(depth[..., :1], c.view(1, 1, 1, 1), target[..., :1], mask[..., :1]) for c in errors]
    assert errors[int(torch.stack(values).argmin())].item() == pytest.approx(2.0, abs=0.06)


def _cameras():
    from anydepth.bench.synthetic import intrinsics_for, look_at

    ext = torch.from_numpy(np.stack([look_at((0.3, -0.2, -2.0), (0, 0, 0)), look_at((1.0, 0.1, -1.5), (0.2, 0, 0.5))]))
    K = torch.tensor(intrinsics_for(56, 42, 60.0)).expand(2, 3, 3).clone()
    return ext.double(), K.double()


def test_camera_rays_give_back_the_cameras():
    ext, K = _cameras()
    rays = camera_rays(ext, K, (42, 56), (24, 32))
    assert rays.shape == (2, 24, 32, 6)
    recovered_ext, recovered_K = camera_from_rays(rays, torch.ones(2, 24, 32, dtype=torch.float64), (42, 56),
                                                  decomposition="qr")  # fmt: skip
    torch.testing.assert_close(recovered_ext, ext, atol=1e-6, rtol=0)
    torch.testing.assert_close(recovered_K, K, atol=1e-5, rtol=0)


def test_depth_along_the_rays_reaches_the_points():
    ext, K = _cameras()
    rays = camera_rays(ext, K, (42, 56), (42, 56))
    depth = torch.full((2, 42, 56), 3.0, dtype=torch.float64)
    points = rays[..., 3:] + depth[..., None] * rays[..., :3]  # world points
    camera = torch.einsum("sij,shwj->shwi", ext[:, :, :3], points) + ext[:, None, None, :, 3]
    torch.testing.assert_close(camera[..., 2], depth)  # z-depth in each camera
    assert ray_loss(rays, rays).item() == 0.0


def test_normalise_scene_puts_view_zero_at_the_origin_and_the_points_at_unit_mean_norm():
    ext, K = _cameras()
    depth = torch.rand(1, 2, 42, 56, dtype=torch.float64) + 2.0
    mask = torch.ones_like(depth, dtype=torch.bool)
    normalised_depth, normalised_ext = normalise_scene(depth, ext[None], K[None], mask)
    torch.testing.assert_close(normalised_ext[0, 0], torch.eye(4, dtype=torch.float64))
    rays = camera_rays(normalised_ext, K[None], (42, 56), (42, 56))
    points = rays[..., 3:] + normalised_depth[..., None] * rays[..., :3]
    assert points.norm(dim=-1).mean().item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["ssi", "gm", "silog", "conf", "tgm", "ray"])
def test_gradients_finite_when_one_image_has_no_valid_pixel(name):
    pred, target, mask = _maps(4, shape=(2, 4, 8, 8))
    mask[0] = False
    target = torch.where(mask, target, torch.full_like(target, float("nan")))  # no depth there at all
    pred = pred.clone().requires_grad_(True)
    conf = (torch.rand_like(pred) + 1.0).requires_grad_(True)
    flat = (pred.flatten(0, 1), target.flatten(0, 1), mask.flatten(0, 1))
    losses = {
        "ssi": lambda: ssi_loss(*flat),
        "gm": lambda: gradient_matching_loss(*flat),
        "silog": lambda: silog_loss(*flat),
        "conf": lambda: confidence_depth_loss(pred, conf, target, mask),
        "tgm": lambda: temporal_gradient_matching_loss(pred, target, mask),
        "ray": lambda: ray_loss(
            pred[..., None].expand(2, 4, 8, 8, 6), torch.zeros(2, 4, 8, 8, 6), mask.any(-1).any(-1)
        ),
    }
    loss = losses[name]()
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0].abs().sum() == 0 or name == "ray"
    # and a batch with no valid pixel at all gives zero, with zero gradients
    pred.grad = None
    empty = torch.zeros_like(mask)
    for loss in (ssi_loss(pred[0], target[0], empty[0]), silog_loss(pred[0], target[0], empty[0]),
                 temporal_gradient_matching_loss(pred, target, empty)):  # fmt: skip
        loss.backward()
        assert loss.item() == 0.0
    assert pred.grad.abs().sum() == 0


@pytest.mark.parametrize("loss", [ssi_loss, gradient_matching_loss, relative_depth_loss])
def test_median_alignment_is_invariant_to_positive_affine_maps_and_keeps_the_sign(loss):
    pred, target, mask = _maps(3)
    base = loss(pred, target, mask, alignment="median").item()
    assert loss(2.5 * pred + 7.0, target, mask, alignment="median").item() == pytest.approx(base, rel=1e-9)
    assert loss(target.clone(), target, mask, alignment="median").item() == pytest.approx(0.0, abs=1e-9)
    # the target upside down: nothing for the least-squares fit, a loss for the median normalisation
    assert loss(-target, target, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert loss(-target, target, mask, alignment="median").item() > 0.1


def test_median_normalisation_known_value_and_finite_gradients_without_valid_pixels():
    x = torch.tensor([[[1.0, 2.0], [4.0, 100.0]]])
    mask = torch.tensor([[[True, True], [True, False]]])
    # median 2, mean absolute deviation (1 + 0 + 2) / 3 = 1
    np.testing.assert_allclose(median_normalised(x, mask)[0, :, :].numpy(), [[-1.0, 0.0], [2.0, 98.0]])
    pred = torch.rand(2, 6, 8, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(2, 6, 8, dtype=torch.bool)
    valid[1] = False
    relative_depth_loss(pred, torch.rand(2, 6, 8, dtype=torch.float64) + 0.5, valid, alignment="median").backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1] == 0).all()


def test_unknown_alignment_is_refused():
    pred, target, mask = _maps()
    with pytest.raises(ValueError, match="lstsq, median"):
        ssi_loss(pred, target, mask, alignment="mean")
