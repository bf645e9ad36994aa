"""2D rotary position embedding (RoPE) for patch tokens, written to trace and export at a fixed size."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

# (cos, signed sin), each (..., N, head_dim), broadcastable against (B, heads, N, head_dim) queries and keys
RopeTables = Tuple[Tensor, Tensor]


class PartialRope(NamedTuple):
    """RoPE of a sequence whose tokens all sit at one shared position except a few, as rotations of those few.

    Attention logits depend only on the offset between two tokens' positions: rotating every token by its
    position minus the shared one gives the same logits (in exact arithmetic), and then the tokens at the shared
    position need no rotation at all. DA3's cross-view blocks put every patch at (1, 1) and only the camera
    tokens elsewhere, so 4 of a 4-view scene's 3,892 tokens rotate instead of all of them.

    Attributes:
        index: (n,) int64 positions in the sequence of the tokens that rotate.
        cos, signed_sin: (n, head_dim) tables of their offsets from the shared position (see :func:`rope_tables`).
    """

    index: Tensor
    cos: Tensor
    signed_sin: Tensor


# what attention layers take: full tables, or the rotations of a few tokens
Rope = Union[RopeTables, PartialRope]


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
        ``(cos, signed_sin)``, each (..., N, head_dim): per head, ``[cos_y, cos_y, cos_x, cos_x]`` and
        ``[-sin_y, sin_y, -sin_x, sin_x]`` in quarters. The sign of the rotation is folded into the sine
        table once, so rotating a token takes no negation (exact: only signs move).
    """
    inv_freq = rope_inverse_frequencies(head_dim, base, positions.device)
    angles = positions.float().unsqueeze(-1) * inv_freq  # (..., N, 2, head_dim // 4)
    y, x = angles.unbind(-2)
    cos = torch.cat((y.cos(), y.cos(), x.cos(), x.cos()), dim=-1)  # (..., N, head_dim)
    sin_y, sin_x = y.sin(), x.sin()
    signed_sin = torch.cat((-sin_y, sin_y, -sin_x, sin_x), dim=-1)
    return cos.to(dtype), signed_sin.to(dtype)


def partial_rope(
    positions: Tensor,
    index: Tensor,
    shared: Tuple[int, int],
    head_dim: int,
    base: float = 100.0,
    dtype: torch.dtype = torch.float32,
) -> PartialRope:
    """:class:`PartialRope` of the tokens at ``index`` of a sequence whose other tokens all sit at ``shared``.

    Args:
        positions: (n, 2) integer (y, x) positions of the tokens at ``index``.
        index: (n,) their places in the sequence.
        shared: the (y, x) position of every other token.
        head_dim, base, dtype: as :func:`rope_tables`.
    """
    offsets = positions - torch.tensor(shared, dtype=positions.dtype, device=positions.device)
    cos, signed_sin = rope_tables(offsets, head_dim, base, dtype)
    return PartialRope(index, cos, signed_sin)


def _swap_pairs(x: Tensor) -> Tensor:
    # within each half of the head (row half, column half) the quarters trade places: (a, b) -> (b, a)
    q0, q1, q2, q3 = x.chunk(4, dim=-1)
    return torch.cat((q1, q0, q3, q2), dim=-1)


def apply_rope(x: Tensor, tables: RopeTables) -> Tensor:
    """Rotate queries or keys by their tokens' angles.

    Args:
        x: (B, heads, N, head_dim).
        tables: ``(cos, signed_sin)`` from :func:`rope_tables`, broadcastable to ``x`` (e.g. (1, 1, N, head_dim)).

    Returns:
        (B, heads, N, head_dim): within each half, pairs ``(a, b)`` become ``(a cos - b sin, b cos + a sin)``.
    """
    cos, signed_sin = tables
    # x * cos + swapped * sin in one pass fewer over the queries and keys, and a bf16 sum rounded once instead of twice
    return torch.addcmul(x * cos, _swap_pairs(x), signed_sin)


def rotate_tokens_(x: Tensor, rope: PartialRope) -> Tensor:
    """Rotate the tokens ``rope.index`` of ``x`` (B, heads, N, head_dim) in place and return ``x``.

    For inference on a temporary (queries or keys fresh from their projection or norm): the other tokens keep
    their values, which is what :class:`PartialRope` asks of them.
    """
    picked = x.index_select(-2, rope.index)
    return x.index_copy_(-2, rope.index, apply_rope(picked, (rope.cos, rope.signed_sin)).to(x.dtype))
