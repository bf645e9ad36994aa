"""Evaluation metrics for the benchmarks, each defined with its formula in its module's docstring:

- :mod:`~anydepth.bench.depth_metrics`: AbsRel, delta1 and the inlier ratio at 1.03 of single images or views,
  after no alignment, median scaling, a least-squares scale, or a scale and shift in disparity space;
- :mod:`~anydepth.bench.pose_metrics`: rotation and translation-direction errors over all pairs of views and their
  AUC at 3 / 5 / 15 / 30 degrees, as upstream DA3 computes them;
- :mod:`~anydepth.bench.video_metrics`: video depth accuracy (one scale and shift per sequence) and temporal
  consistency (TAE).
"""

from anydepth.bench.depth_metrics import DepthScores, image_depth_scores, mean_scores
from anydepth.bench.pose_metrics import PoseScores, pose_auc, pose_scores, relative_pose_errors
from anydepth.bench.video_metrics import (
    VideoDepthScores,
    abs_rel,
    align_disparity_to_depth,
    delta1,
    evaluate_video_depth,
    temporal_alignment_error,
)

__all__ = [
    "DepthScores",
    "PoseScores",
    "VideoDepthScores",
    "abs_rel",
    "align_disparity_to_depth",
    "delta1",
    "evaluate_video_depth",
    "image_depth_scores",
    "mean_scores",
    "pose_auc",
    "pose_scores",
    "relative_pose_errors",
    "temporal_alignment_error",
]
