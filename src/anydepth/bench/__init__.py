"""Evaluation metrics for the benchmarks: video depth accuracy (AbsRel, delta1) and temporal consistency (TAE)."""

from anydepth.bench.video_metrics import (
    VideoDepthScores,
    abs_rel,
    align_disparity_to_depth,
    delta1,
    evaluate_video_depth,
    temporal_alignment_error,
)

__all__ = [
    "VideoDepthScores",
    "abs_rel",
    "align_disparity_to_depth",
    "delta1",
    "evaluate_video_depth",
    "temporal_alignment_error",
]
