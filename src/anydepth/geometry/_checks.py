"""Input checks for the public geometry functions: wrong shapes and dtypes raise ShapeError."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from anydepth.errors import ShapeError

# one trailing dimension: an exact size, a choice of sizes, or None for any size
Dim = Union[int, Tuple[int, ...], None]


def _spec(trailing: Sequence[Dim]) -> str:
    parts = []
    for d in trailing:
        if d is None:
            parts.append("*")
        elif isinstance(d, tuple):
            parts.append("|".join(str(v) for v in d))
        else:
            parts.append(str(d))
    return "(..., " + ", ".join(parts) + ")" if parts else "(...)"


def check_tensor(
    x: object,
    name: str,
    trailing: Sequence[Dim] = (),
    floating: bool = True,
    min_ndim: Optional[int] = None,
) -> Tensor:
    """Raise ShapeError unless ``x`` is a tensor whose last dimensions match ``trailing``.

    Args:
        x: the value to check.
        name: the argument's name, for the message.
        trailing: sizes of the last dimensions: an int, a tuple of allowed ints, or None for any size.
        floating: also require a floating-point dtype.
        min_ndim: at least this many dimensions (default: ``len(trailing)``).

    Returns:
        ``x``, so a check can wrap an assignment.
    """
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    need = len(trailing) if min_ndim is None else max(min_ndim, len(trailing))
    ok = x.ndim >= need
    if ok:
        for want, got in zip(trailing, x.shape[x.ndim - len(trailing) :]):
            if want is None:
                continue
            allowed = want if isinstance(want, tuple) else (want,)
            if got not in allowed:
                ok = False
                break
    if not ok:
        raise ShapeError(f"{name} must have shape {_spec(trailing)}, got {tuple(x.shape)}")
    return x


def check_same_leading(name_a: str, a: Tensor, dims_a: int, name_b: str, b: Tensor, dims_b: int) -> None:
    """Raise ShapeError unless the leading (batch) dimensions of ``a`` and ``b`` broadcast together.

    ``dims_a`` / ``dims_b`` are the numbers of trailing dimensions that are not batch dimensions.
    """
    lead_a, lead_b = a.shape[: a.ndim - dims_a], b.shape[: b.ndim - dims_b]
    try:
        torch.broadcast_shapes(lead_a, lead_b)
    except RuntimeError:
        raise ShapeError(
            f"batch dimensions of {name_a} {tuple(lead_a)} and {name_b} {tuple(lead_b)} do not broadcast"
        ) from None


def check_image_size(image_size: object) -> Tuple[int, int]:
    """``(height, width)`` as two positive ints, or ShapeError."""
    try:
        height, width = (int(v) for v in image_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError(f"image_size must be (height, width), got {image_size!r}") from None
    if height <= 0 or width <= 0:
        raise ShapeError(f"image_size must be positive, got {(height, width)}")
    return height, width
