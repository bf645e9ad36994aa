"""Robust (IRLS) Sim(3) / SE(3) / scale+SE(3) fits, Sim(3) composition, and moving cameras and depth by a Sim(3)."""

from __future__ import annotations

import math

import pytest
import torch

from anydepth.errors import ShapeError
from anydepth.geometry.cameras import unproject_depth
from anydepth.geometry.rotations import quaternion_to_rotation_matrix
from anydepth.geometry.sim3 import Sim3, apply_sim3_to_extrinsics, robust_sim3, umeyama, weighted_median_ratio

pytestmark = pytest.mark.torch113


def _sim3(seed: int, scale: float = 2.5) -> Sim3:
    g = torch.Generator().manual_seed(seed)
    rotation = quaternion_to_rotation_matrix(torch.randn(4, generator=g, dtype=torch.float64))
    return Sim3(torch.tensor(scale, dtype=torch.float64), rotation, torch.randn(3, generator=g, dtype=torch.float64))


def _points(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2.0


def _with_outliers(target: torch.Tensor, fraction: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    bad = torch.randperm(len(target), generator=g)[: int(fraction * len(target))]
    corrupted = target.clone()
    corrupted[bad] += 20.0 * torch.randn(len(bad), 3, generator=g, dtype=torch.float64)
    return corrupted


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = ((a @ b.T).diagonal().sum() - 1.0) / 2.0
    return math.degrees(math.acos(float(cos.clamp(-1.0, 1.0))))


def test_sim3_fit_recovers_a_known_transform_through_outliers():
    truth = _sim3(0)
    source = _points(2000)
    target = _with_outliers(truth.apply(source) + 0.01 * _points(2000, seed=5), 0.2)
    plain = umeyama(source, target)
    robust = robust_sim3(source, target, delta=0.1, max_iters=20)
    assert abs(float(robust.sim3.scale) - 2.5) < 0.01
    assert _angle_deg(robust.sim3.rotation, truth.rotation) < 0.2
    assert (robust.sim3.translation - truth.translation).norm() < 0.05
    # the outliers pull the plain least-squares fit far off: the robust one is what makes the difference
    assert abs(float(plain.scale) - 2.5) > 10 * abs(float(robust.sim3.scale) - 2.5)
    assert robust.iterations >= 1


def test_confidence_weights_switch_points_off():
    truth = _sim3(1, scale=0.7)
    source = _points(300)
    target = truth.apply(source)
    target[:30] += 50.0
    weights = torch.ones(300, dtype=torch.float64)
    weights[:30] = 0.0
    fit = robust_sim3(source, target, weights, max_iters=0)  # the confidence-weighted fit alone
    assert fit.sim3.matrix().allclose(truth.matrix(), atol=1e-9)


def test_se3_keeps_unit_scale_and_scale_se3_keeps_the_given_scale():
    rigid = _sim3(2, scale=1.0)
    source = _points(500)
    target = rigid.apply(source)
    fit = robust_sim3(source, target, method="se3")
    assert float(fit.sim3.scale) == 1.0
    assert fit.sim3.matrix().allclose(rigid.matrix(), atol=1e-9)
    scaled = _sim3(3, scale=3.0)
    fit = robust_sim3(source, scaled.apply(source), method="scale+se3", scale=3.0)
    assert float(fit.sim3.scale) == pytest.approx(3.0, abs=1e-12)
    assert fit.sim3.matrix().allclose(scaled.matrix(), atol=1e-9)
    # a wrong fixed scale stays wrong: the rotation and translation are fitted, the scale is not
    assert float(robust_sim3(source, scaled.apply(source), method="scale+se3", scale=2.0).sim3.scale) == 2.0


def test_robust_fit_is_deterministic():
    source = _points(800)
    target = _with_outliers(_sim3(4).apply(source), 0.3)
    a = robust_sim3(source, target, max_iters=5)
    b = robust_sim3(source, target, max_iters=5)
    assert torch.equal(a.sim3.matrix(), b.sim3.matrix()) and torch.equal(a.weights, b.weights)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"method": "affine"}, "unknown alignment"), ({"method": "scale+se3"}, "positive scale")],
)
def test_robust_fit_refuses_bad_arguments(kwargs, words):
    with pytest.raises(ShapeError, match=words):
        robust_sim3(_points(10), _points(10, 1), **kwargs)
    with pytest.raises(ShapeError, match="all zero"):
        robust_sim3(_points(10), _points(10, 1), torch.zeros(10, dtype=torch.float64))


def test_compose_inverse_and_matrix_round_trip():
    a, b = _sim3(5, 1.5), _sim3(6, 0.4)
    assert a.compose(b).matrix().allclose(a.matrix() @ b.matrix(), atol=1e-12)
    assert a.compose(a.inverse()).matrix().allclose(torch.eye(4, dtype=torch.float64), atol=1e-12)
    back = Sim3.from_matrix(a.matrix())
    assert float(back.scale) == pytest.approx(1.5, abs=1e-12)
    assert back.rotation.allclose(a.rotation, atol=1e-12) and back.translation.allclose(a.translation)
    assert Sim3.identity().matrix().equal(torch.eye(4, dtype=torch.float64))


def test_moving_cameras_and_depth_by_a_sim3_moves_their_points():
    """Cameras moved by S and depth scaled by S's scale unproject to S applied to the original points."""
    S = _sim3(7, scale=1.8)
    g = torch.Generator().manual_seed(3)
    depth = 1.0 + torch.rand(2, 6, 8, generator=g, dtype=torch.float64)
    K = torch.tensor([[5.0, 0, 4], [0, 5.0, 3], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    w2c = torch.cat((_sim3(8, 1.0).rotation.expand(2, 3, 3), torch.randn(2, 3, 1, generator=g).double()), dim=-1)
    points = unproject_depth(depth, K, w2c)
    moved = unproject_depth(depth * S.scale, K, apply_sim3_to_extrinsics(S, w2c))
    assert moved.allclose(S.apply(points.reshape(-1, 3)).reshape(points.shape), atol=1e-10)


def test_weighted_median_ratio_ignores_a_minority_of_wrong_pixels():
    truth = torch.linspace(1.0, 5.0, 101, dtype=torch.float64)
    seen = truth * 0.5
    seen[:20] = 100.0  # a fifth of the pixels wrong
    assert weighted_median_ratio(truth, seen) == pytest.approx(2.0)
    weights = torch.ones(101, dtype=torch.float64)
    weights[20:] = 0.0  # only the wrong ones count
    assert weighted_median_ratio(truth, seen, weights) < 0.1
    assert weighted_median_ratio(torch.zeros(3), torch.ones(3)) == 1.0  # nothing usable
