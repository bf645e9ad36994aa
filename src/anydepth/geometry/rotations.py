"""Quaternions (x, y, z, w order: scalar last) and rotation matrices."""

from __future__ import annotations

import torch
from torch import Tensor

from anydepth.geometry._checks import check_tensor


def quaternion_to_rotation_matrix(quaternion: Tensor) -> Tensor:
    """Rotation matrices of quaternions stored scalar last, ``(x, y, z, w)``.

    The quaternion need not be unit length: the formula divides by its squared norm (as DA3 does), so
    ``q`` and ``c * q`` give the same rotation for any ``c != 0``, and so do ``q`` and ``-q``. A zero
    quaternion gives non-finite values.

    Args:
        quaternion: (..., 4) quaternions ``(x, y, z, w)``.

    Returns:
        (..., 3, 3) rotation matrices.

    Example:
        >>> q = torch.tensor([0.0, 0.0, 2**-0.5, 2**-0.5])  # 90 degrees about z
        >>> quaternion_to_rotation_matrix(q).round()
        tensor([[ 0., -1.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  0.,  1.]])
    """
    check_tensor(quaternion, "quaternion", (4,))
    x, y, z, w = quaternion.unbind(-1)
    two_s = 2.0 / (quaternion * quaternion).sum(-1)
    matrix = torch.stack(
        (
            1 - two_s * (y * y + z * z),
            two_s * (x * y - z * w),
            two_s * (x * z + y * w),
            two_s * (x * y + z * w),
            1 - two_s * (x * x + z * z),
            two_s * (y * z - x * w),
            two_s * (x * z - y * w),
            two_s * (y * z + x * w),
            1 - two_s * (x * x + y * y),
        ),
        dim=-1,
    )
    return matrix.reshape((*quaternion.shape[:-1], 3, 3))


def standardize_quaternion(quaternion: Tensor) -> Tensor:
    """The same rotation with a non-negative scalar part: ``-q`` where ``w < 0``, else ``q``.

    Args:
        quaternion: (..., 4) quaternions ``(x, y, z, w)``.

    Returns:
        (..., 4) quaternions with ``w >= 0``.
    """
    check_tensor(quaternion, "quaternion", (4,))
    return torch.where(quaternion[..., 3:4] < 0, -quaternion, quaternion)


def _sqrt_positive_part(x: Tensor) -> Tensor:
    # sqrt(max(x, 0)) with a zero gradient where x <= 0 (plain sqrt would give inf * 0 = nan at 0)
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def rotation_matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Unit quaternions ``(x, y, z, w)`` with ``w >= 0`` of rotation matrices.

    Each of ``4 w^2, 4 x^2, 4 y^2, 4 z^2`` can be read off the diagonal, and each gives one candidate
    quaternion from the off-diagonal sums and differences; the candidate with the largest such component is
    the best conditioned and is returned (Shepperd's method, in the form of PyTorch3D's ``matrix_to_quaternion``,
    which DA3 uses: the same 0.1 floor on the divisor and the same tie-break, so results agree to rounding).

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 4) quaternions, scalar last, scalar part non-negative (a 180-degree rotation keeps ``w = 0`` and the
        sign of the chosen candidate).

    Example:
        >>> rotation_matrix_to_quaternion(torch.diag(torch.tensor([1.0, -1.0, -1.0])))  # 180 degrees about x
        tensor([1., 0., 0., 0.])
    """
    check_tensor(matrix, "matrix", (3, 3))
    batch = matrix.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = matrix.reshape((*batch, 9)).unbind(-1)
    # twice the absolute values of (w, x, y, z)
    q_abs = _sqrt_positive_part(
        torch.stack(
            (
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ),
            dim=-1,
        )
    )
    # row r is the quaternion (w, x, y, z) multiplied by 4 times its r-th component
    candidates = torch.stack(
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    )
    # the floor only keeps unused candidates finite: the chosen one has q_abs >= 1
    candidates = candidates / (2.0 * q_abs.clamp(min=0.1)[..., None])
    best = q_abs.argmax(dim=-1)  # first maximum on ties
    wxyz = torch.gather(candidates, -2, best[..., None, None].expand((*batch, 1, 4))).squeeze(-2)
    xyzw = torch.cat((wxyz[..., 1:], wxyz[..., :1]), dim=-1)
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)
