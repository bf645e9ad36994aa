"""Reference-view selection for Depth Anything 3: pick one view per scene, move it first, and move it back.

DA3 predicts cameras relative to a reference view, which gets its own learned camera token. Without known
poses, the backbone picks that view from the class tokens entering the block before the first alternating
(cross-view) block, reorders the views so that it comes first, and restores the input order on its outputs.
Upstream's ``reference_view_selector.py`` holds the same strategies; these functions reproduce its arithmetic
(float32) and build their permutations from ``arange``/``where``/``index_select``, so that they trace.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from anydepth.errors import InputError

REF_VIEW_STRATEGIES: Tuple[str, ...] = ("first", "middle", "saddle_balanced", "saddle_sim_range")
# upstream's THRESH_FOR_REF_SELECTION: with one or two views the first view stays the reference
MIN_VIEWS_FOR_REF_SELECTION = 3


def check_strategy(strategy: str) -> None:
    """Raise :class:`~anydepth.errors.InputError` (a ValueError) for a name not in :data:`REF_VIEW_STRATEGIES`."""
    if strategy not in REF_VIEW_STRATEGIES:
        raise InputError(f"unknown reference view strategy {strategy!r}; expected one of {list(REF_VIEW_STRATEGIES)}")


def _unit_range(metric: Tensor) -> Tensor:
    # min-max normalisation over the views of each scene; the 1e-8 keeps constant metrics finite
    low = metric.min(dim=1, keepdim=True).values
    high = metric.max(dim=1, keepdim=True).values
    return (metric - low) / (high - low + 1e-8)


def select_reference_view(class_tokens: Tensor, strategy: str = "saddle_balanced") -> Tensor:
    """Index of the reference view of each scene.

    Strategies:
        - ``first``: view 0.
        - ``middle``: view S // 2.
        - ``saddle_balanced``: the view whose mean cosine similarity to the others, class-token norm and
          variance of the unit class token are together closest to the middle of their ranges across views
          (sum of ``|metric - 0.5|`` after min-max normalisation).
        - ``saddle_sim_range``: the view with the widest range of cosine similarities. As upstream, the row
          includes the view itself at similarity 0 (upstream subtracts 1 from the diagonal), so when all
          similarities are positive (the usual case) the range is the view's largest similarity, and the two
          views of the most similar pair tie *exactly*. Upstream breaks that tie by rounding noise (the ~1e-7
          left on its diagonal, ulp asymmetries of the matmul), so its choice changes with hardware and torch
          version; here the similarities are made exactly symmetric with an exact zero diagonal and the lower
          view index wins.

    Args:
        class_tokens: (B, S, C) class tokens of the S views of B scenes.
        strategy: one of :data:`REF_VIEW_STRATEGIES`.

    Returns:
        (B,) int64 view indices.

    Example:
        >>> select_reference_view(torch.randn(2, 5, 8), "middle").tolist()
        [2, 2]
    """
    check_strategy(strategy)
    B, S, _ = class_tokens.shape
    if S <= 1 or strategy == "first":
        return torch.zeros(B, dtype=torch.long, device=class_tokens.device)
    if strategy == "middle":
        return torch.full((B,), S // 2, dtype=torch.long, device=class_tokens.device)

    tokens = class_tokens.float()
    norms = tokens.norm(dim=-1)  # (B, S)
    unit = tokens / norms.unsqueeze(-1)
    similarity = unit @ unit.transpose(1, 2)  # (B, S, S) cosine similarities
    eye = torch.eye(S, device=tokens.device).unsqueeze(0)
    if strategy == "saddle_balanced":
        # upstream's arithmetic exactly (self-similarity brought to ~0 by subtracting 1): no systematic ties here
        mean_similarity = (similarity - eye).sum(dim=-1) / (S - 1)
        balance = (
            (_unit_range(mean_similarity) - 0.5).abs()
            + (_unit_range(norms) - 0.5).abs()
            + (_unit_range(unit.var(dim=-1)) - 0.5).abs()
        )
        return balance.argmin(dim=1)
    # exact symmetry and an exact zero diagonal turn upstream's noise-broken ties into exact ones, which argmax
    # resolves to the first (lowest) index
    similarity = ((similarity + similarity.transpose(1, 2)) / 2).masked_fill(eye.bool(), 0.0)
    similarity_range = similarity.max(dim=-1).values - similarity.min(dim=-1).values
    return similarity_range.argmax(dim=1)


def reference_first_order(reference: Tensor, num_views: int) -> Tensor:
    """For each scene, the input view at each position after moving the reference view to the front.

    Args:
        reference: (B,) int64 reference view indices.
        num_views: S.

    Returns:
        (B, S) int64: ``[ref, 0, 1, ..., ref - 1, ref + 1, ..., S - 1]`` per scene.

    Example:
        >>> reference_first_order(torch.tensor([2]), 5).tolist()
        [[2, 0, 1, 3, 4]]
    """
    positions = torch.arange(num_views, device=reference.device).unsqueeze(0)  # (1, S)
    ref = reference.unsqueeze(1)  # (B, 1)
    order = torch.where(positions <= ref, positions - 1, positions)
    return torch.where(positions == 0, ref, order)


def input_order(reference: Tensor, num_views: int) -> Tensor:
    """Inverse of :func:`reference_first_order`: the reordered position of each input view.

    Returns:
        (B, S) int64: view ``v`` sits at position ``v + 1`` if ``v < ref``, ``0`` if ``v == ref``, else ``v``.
    """
    views = torch.arange(num_views, device=reference.device).unsqueeze(0)  # (1, S)
    ref = reference.unsqueeze(1)  # (B, 1)
    position = torch.where(views < ref, views + 1, views)
    return torch.where(views == ref, torch.zeros_like(position), position)


def _take_views(x: Tensor, order: Tensor) -> Tensor:
    # one index_select over the flattened (B * S) axis: a Gather in ONNX, no index tensor of the size of x
    B, S = x.shape[0], x.shape[1]
    flat = (order + torch.arange(B, device=x.device).unsqueeze(1) * S).reshape(-1)
    return x.reshape(B * S, *x.shape[2:]).index_select(0, flat).reshape(x.shape)


def reorder_by_reference(x: Tensor, reference: Tensor) -> Tensor:
    """Move each scene's reference view first, keeping the others in input order.

    Args:
        x: (B, S, ...) per-view tensor.
        reference: (B,) int64 reference view indices.

    Returns:
        (B, S, ...) with ``out[b] = x[b][reference_first_order(reference, S)[b]]``.
    """
    return _take_views(x, reference_first_order(reference, x.shape[1]))


def restore_input_order(x: Tensor, reference: Tensor) -> Tensor:
    """Undo :func:`reorder_by_reference`: (B, S, ...) in reference-first order -> input view order."""
    return _take_views(x, input_order(reference, x.shape[1]))
