"""anydepth.bench video metrics, and what they say about stitching windows, on a rendered video with exact depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anydepth.bench import abs_rel, align_disparity_to_depth, delta1, evaluate_video_depth, temporal_alignment_error
from anydepth.pipelines.video_depth import VideoDepthRunner
from tests.helpers.synthetic_video import AffineDisparityNet, per_window_depth, render_video

INPUT_SIZE = 42  # the rendered 42 x 56 frames are already multiples of 14: no resampling anywhere


@pytest.fixture(scope="module")
def video():
    return render_video(num_frames=80)


def test_exact_depth_scores_perfectly(video):
    scores = evaluate_video_depth(1.0 / video.depth, video.depth, video.extrinsics, video.intrinsics)
    assert scores.abs_rel < 1e-9 and scores.delta1 == 1.0
    # exact depth reprojects onto exact depth; what is left is rounding to the nearest pixel
    assert scores.tae < 3.0


def test_metrics_on_hand_made_cases():
    gt = np.array([[[2.0, 4.0]]])
    valid = np.ones_like(gt, bool)
    assert abs_rel(np.array([[[1.0, 4.0]]]), gt, valid) == pytest.approx(0.25)
    assert delta1(np.array([[[2.4, 6.0]]]), gt, valid) == pytest.approx(0.5)
    assert np.allclose(align_disparity_to_depth(5.0 / gt - 0.1, gt), gt)


def test_tae_sees_scale_flicker(video):
    steady = temporal_alignment_error(video.depth, video.extrinsics, video.intrinsics)
    flicker = video.depth * (1.0 + 0.1 * (np.arange(len(video.depth)) % 2))[:, None, None]
    assert temporal_alignment_error(flicker, video.extrinsics, video.intrinsics) > steady + 5.0


def test_tae_with_static_camera_is_frame_to_frame_abs_rel():
    depth = np.stack([np.full((4, 5), 2.0), np.full((4, 5), 2.5)])
    E = np.tile(np.eye(4)[:3], (2, 1, 1))
    K = np.array([[3.0, 0, 2.5], [0, 3.0, 2.0], [0, 0, 1]])
    # 2 -> 2.5: |2.5 - 2| / 2.5 = 0.2; 2.5 -> 2: 0.5 / 2 = 0.25
    assert temporal_alignment_error(depth, E, K) == pytest.approx(100 * (0.2 + 0.25) / 2)


def _stitched(video, align: str, flicker: float, seed: int) -> np.ndarray:
    runner = VideoDepthRunner(AffineDisparityNet(seed, flicker), torch.device("cpu"))
    return np.stack(list(runner.windowed(iter(video.frames), INPUT_SIZE, align=align)))


def _per_window(video, flicker: float, seed: int) -> np.ndarray:
    """Each frame from the first window that infers it, with no scale/shift between windows and no cross-fade."""
    return per_window_depth(video, AffineDisparityNet(seed, flicker))


def _tae(video, disparity) -> float:
    return evaluate_video_depth(disparity, video.depth, video.extrinsics, video.intrinsics).tae


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stitching_is_no_worse_than_per_window_output(video, seed):
    per_window = _tae(video, _per_window(video, 0.0, seed))
    stitched = _tae(video, _stitched(video, "keyframes", 0.0, seed))
    # the frames quantise disparity to 8 bits; their own TAE is the floor
    quantised = _tae(video, video.frames[..., 0].astype(np.float64))
    assert stitched == pytest.approx(quantised, rel=1e-3)  # windows seen through different affine maps rejoin
    assert per_window > stitched + 0.3


def test_overlap_alignment_beats_keyframes_under_flicker(video):
    # with per-frame flicker, a fit over 10 frames is steadier than one over 2, so later windows land closer to
    # the first one's scale: AbsRel after one per-sequence alignment drops. TAE is dominated by the flicker itself
    # here and moves by under 1% either way (see benchmarks/RESULTS.md). Summed over seeds to be robust.
    def scores(align):
        return [evaluate_video_depth(_stitched(video, align, 0.03, seed), video.depth) for seed in range(4)]

    keyframes, overlap = scores("keyframes"), scores("overlap")
    assert sum(s.abs_rel for s in overlap) < 0.95 * sum(s.abs_rel for s in keyframes)
