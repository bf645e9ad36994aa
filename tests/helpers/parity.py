"""Error measures of the parity tests: against upstream (``p99_rel_err``), of exported graphs (``p99_relative``)."""

from __future__ import annotations

import numpy as np
import torch


def p99_rel_err(ours, theirs) -> float:
    """99th percentile of |ours - theirs| / (|theirs| + eps), eps = 1e-6 * max|theirs| (arrays or tensors).

    The eps keeps pixels where the reference is (near) zero from dominating; shapes must agree.
    """
    if isinstance(ours, torch.Tensor):
        ours = ours.detach().cpu().double().numpy()
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    eps = 1e-6 * max(float(np.abs(theirs).max()), 1e-30)
    return float(np.percentile(np.abs(ours - theirs) / (np.abs(theirs) + eps), 99))


def p99_relative(actual, expected) -> float:
    """99th percentile of |actual - expected| / |expected| (the parity criterion: <= 1e-3 in float32)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.quantile(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-12), 0.99))
