"""Benchmark jobs: score saved predictions against ground truth (:mod:`anydepth.bench.score`) and keep the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from anydepth.bench.score import score
from anydepth.io.atomic import atomic_path


def score_job(
    pred: Union[str, Path],
    gt: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    json_out: Optional[Union[str, Path]] = None,
    pred_is_disparity: bool = False,
    fscore_threshold: float = 0.05,
) -> Dict[str, Any]:
    """Score one scene's prediction; with ``json_out``, the result is also written there (atomically)."""
    result = score(pred, gt, modes, alignment, min_depth, max_depth, pred_is_disparity, fscore_threshold)
    if json_out is not None:
        json_out = Path(json_out)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(json_out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1, default=float))
    return result
