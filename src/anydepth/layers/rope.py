"""2D rotary position embedding (RoPE) for patch tokens, written to trace and export at a fixed size."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

# (cos, sin), each (..., N, head_dim), broadcastable against (B, heads, N, head_dim) queries and keys
RopeTables = Tuple[Tensor, Tensor]


def grid_positions(grid_h: int, grid_w: int, device: Optional[torch.device] = None) -> Tensor:
    """Integer (y, x) coordinates of a patch grid in row-major token order.

    Built from ``arange`` and ``meshgrid`` (not ``cartesian_prod``, which ONNX cannot export).

    Args:
        grid_h, grid_w: patch rows and columns.
        device: where to build the tensor.

    Returns:
        (grid_h * grid_w, 2) int64, ``[..., 0]`` the row and ``[..., 1]`` the column.

    Example:
        >>> grid_positions(2, 3).tolist()
        [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    """
    ys, xs = torch.meshgrid(
        torch.arange(int(grid_h), device=device), torch.arange(int(grid_w), device=device), indexing="ij"
    )
    return torch.stack((ys.reshape(-1), xs.reshape(-1)), dim=-1)


def rope_inverse_frequencies(head_dim: int, base: float = 100.0, device: Optional[torch.device] = None) -> Tensor:
    """Angular frequencies of one spatial axis: (head_dim // 4,) float32, ``base ** (-2k / (head_dim / 2))``.

    Half of each head rotates with the row, half with the column; within a half, feature ``k`` and
    ``k + head_dim / 4`` form a rotated pair.
    """
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
    axis_dim = head_dim // 2
    # the same float32 operations as the reference implementation, so that angles agree to the bit
    exponents = torch.arange(0, axis_dim, 2, device=device).float() / axis_dim
    return 1.0 / (base**exponents)


def rope_tables(
    positions: Tensor, head_dim: int, base: float = 100.0, dtype: torch.dtype = torch.float32
) -> RopeTables:
    """Cosine and sine of every token's rotation angles, computed in float32.

    Args:
        positions: (..., N, 2) integer (y, x) positions of the tokens.
        head_dim: width of one attention head (divisible by 4).
        base: frequency base (DA3: 100).
        dtype: dtype of the returned tables (that of the queries and keys they will rotate).

    Returns:
        ``(cos, sin)``, each (..., N, head_dim): per head, ``[cos_y, cos_y, cos_x, cos_x]`` in quarters.
    """
    inv_freq = rope_inverse_frequencies(head_dim, base, positions.device)
    angles = positions.float().unsqueeze(-1) * inv_freq  # (..., N, 2, head_dim // 4)
    y, x = angles.unbind(-2)
    angles = torch.cat((y, y, x, x), dim=-1)  # (..., N, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_pairs(x: Tensor) -> Tensor:
    # within each half of the head (row half, column half): (a, b) -> (-b, a), pairing quarter 0 with 1, 2 with 3
    q0, q1, q2, q3 = x.chunk(4, dim=-1)
    return torch.cat((-q1, q0, -q3, q2), dim=-1)


def apply_rope(x: Tensor, tables: RopeTables) -> Tensor:
    """Rotate queries or keys by their tokens' angles.

    Args:
        x: (B, heads, N, head_dim).
        tables: ``(cos, sin)`` from :func:`rope_tables`, broadcastable to ``x`` (e.g. (1, 1, N, head_dim)).

    Returns:
        (B, heads, N, head_dim)
    """
    cos, sin = tables
    return x * cos + _rotate_pairs(x) * sin
