"""Depth metrics: the ground truth scores perfectly, known perturbations give the analytic numbers."""

from __future__ import annotations

import numpy as np
import pytest

from anydepth.bench.depth_metrics import image_depth_scores, mean_scores
from anydepth.errors import InputError, ShapeError


def _gt(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 10.0, (24, 32))


@pytest.mark.parametrize("alignment", ["none", "median", "scale", "scale_shift_disparity"])
def test_ground_truth_as_prediction_is_perfect(alignment):
    gt = _gt()
    s = image_depth_scores(gt.copy(), gt, alignment)
    assert s.abs_rel == pytest.approx(0.0, abs=1e-12)
    assert (s.delta1, s.inlier_103, s.valid_pixels) == (1.0, 1.0, gt.size)


def test_a_global_scale_is_removed_by_median_and_least_squares_but_not_unaligned():
    gt = _gt(1)
    for alignment in ("median", "scale"):
        s = image_depth_scores(3.7 * gt, gt, alignment)
        assert s.abs_rel == pytest.approx(0.0, abs=1e-12) and s.scale == pytest.approx(1 / 3.7)
    s = image_depth_scores(1.1 * gt, gt, "none")
    assert s.abs_rel == pytest.approx(0.1)  # |1.1 g - g| / g
    assert s.delta1 == 1.0 and s.inlier_103 == 0.0  # 1.1 is inside 1.25 and outside 1.03


def test_an_affine_disparity_is_removed_in_disparity_space():
    gt = _gt(2)
    disparity = 2.5 / gt + 0.3  # what a V2 model predicts, up to scale and shift
    s = image_depth_scores(disparity, gt, "scale_shift_disparity", pred_is_disparity=True)
    assert s.abs_rel == pytest.approx(0.0, abs=1e-9)
    assert s.scale == pytest.approx(1 / 2.5) and s.shift == pytest.approx(-0.3 / 2.5)
    with pytest.raises(InputError, match="scale_shift_disparity"):
        image_depth_scores(disparity, gt, "median", pred_is_disparity=True)


def test_known_error_fractions():
    gt = np.ones((10, 10))
    pred = gt.copy()
    pred[:2] = 1.5  # 20% of the pixels off by 1.5x: outside delta1, AbsRel 0.5 there
    pred[2:5] = 1.02  # 30% off by 2%: inside the inlier ratio's 1.03
    s = image_depth_scores(pred, gt, "none")
    assert s.abs_rel == pytest.approx(0.2 * 0.5 + 0.3 * 0.02)
    assert s.delta1 == pytest.approx(0.8) and s.inlier_103 == pytest.approx(0.8)


def test_invalid_pixels_and_bad_inputs():
    gt = _gt(3)
    gt[0] = 0.0  # no depth
    gt[1] = np.nan
    pred = gt.copy()
    pred[2] = np.inf
    mask = np.ones_like(gt, bool)
    mask[3] = False
    s = image_depth_scores(pred, gt, "none", mask=mask, max_depth=9.0)
    expected = np.isfinite(gt) & (gt > 1e-3) & (gt < 9.0) & mask
    expected[2] = False
    assert s.valid_pixels == int(expected.sum()) and s.abs_rel == pytest.approx(0.0)
    with pytest.raises(ShapeError):
        image_depth_scores(gt[:, :-1], gt)
    with pytest.raises(InputError, match="no valid pixel"):
        image_depth_scores(gt, np.zeros_like(gt))
    with pytest.raises(InputError, match="unknown alignment"):
        image_depth_scores(gt, gt, "affine")


def test_mean_weighs_images_equally():
    a = image_depth_scores(np.full((2, 2), 1.1), np.ones((2, 2)), "none")
    b = image_depth_scores(np.ones((4, 4)), np.ones((4, 4)), "none")
    m = mean_scores([a, b])
    assert m.abs_rel == pytest.approx(0.05) and m.valid_pixels == 20


def test_aligned_disparity_at_or_below_zero_scores_as_the_far_end_of_the_range():
    gt = _gt(3)
    disparity = 1.0 / gt
    disparity[0, :4] = -0.05  # four pixels beyond the far end: their aligned disparity stays below zero
    s = image_depth_scores(disparity, gt, "scale_shift_disparity", pred_is_disparity=True)
    # without a cap they would be depths of 1e12 (AbsRel in the billions); capped at the image's farthest depth,
    # each contributes at most (max - g) / g: AbsRel stays of the order of the fraction of such pixels
    assert 0.0 < s.abs_rel < 0.2 and s.delta1 > 0.98
    capped = image_depth_scores(disparity, gt, "scale_shift_disparity", max_depth=10.0, pred_is_disparity=True)
    assert capped.abs_rel == pytest.approx(s.abs_rel, rel=0.05)  # a cap given explicitly: the same idea
