"""Rigid transforms, homogeneous coordinates, pinhole intrinsics, unprojection and projection (OpenCV convention)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from anydepth.geometry._checks import check_same_leading, check_tensor


def as_homogeneous(transform: Tensor) -> Tensor:
    """4x4 matrices from (..., 3, 4) rigid transforms by appending the row ``(0, 0, 0, 1)``; 4x4 pass through.

    Args:
        transform: (..., 3, 4) or (..., 4, 4).

    Returns:
        (..., 4, 4); the input itself when it is already 4x4.

    Example:
        >>> as_homogeneous(torch.zeros(3, 4))[3]
        tensor([0., 0., 0., 1.])
    """
    check_tensor(transform, "transform", ((3, 4), 4))
    if transform.shape[-2] == 4:
        return transform
    bottom = torch.zeros_like(transform[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat((transform, bottom), dim=-2)


def affine_inverse(transform: Tensor) -> Tensor:
    """Inverse of rigid transforms ``[R | t]``: ``[R^T | -R^T t]``, keeping the input's row count.

    Turns world-to-camera extrinsics into camera-to-world poses and back. Exact only for a rotation ``R``
    (no scale or shear), as in DA3; a 4x4 input keeps its bottom row as given.

    Args:
        transform: (..., 3, 4) or (..., 4, 4).

    Returns:
        the inverse, same shape as ``transform``.

    Example:
        >>> pose = torch.tensor([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
        >>> affine_inverse(pose)
        tensor([[ 0.,  1.,  0., -2.],
                [-1.,  0.,  0.,  1.],
                [ 0.,  0.,  1., -3.]])
    """
    check_tensor(transform, "transform", ((3, 4), 4))
    rotation_t = transform[..., :3, :3].transpose(-1, -2)
    translation = transform[..., :3, 3:]
    top = torch.cat((rotation_t, -rotation_t @ translation), dim=-1)
    return torch.cat((top, transform[..., 3:, :]), dim=-2)


def to_homogeneous(points: Tensor) -> Tensor:
    """Append a coordinate 1: (..., D) -> (..., D + 1).

    Example:
        >>> to_homogeneous(torch.tensor([2.0, 3.0]))
        tensor([2., 3., 1.])
    """
    check_tensor(points, "points", (None,))
    return torch.cat((points, torch.ones_like(points[..., :1])), dim=-1)


def from_homogeneous(points: Tensor, eps: float = 0.0) -> Tensor:
    """Divide by the last coordinate and drop it: (..., D + 1) -> (..., D).

    Args:
        points: (..., D + 1).
        eps: where ``|last| <= eps`` the divisor is replaced by ``eps`` with the sign of ``last`` (0 keeps the
            plain division, which gives inf or nan there).

    Example:
        >>> from_homogeneous(torch.tensor([4.0, 6.0, 2.0]))
        tensor([2., 3.])
    """
    check_tensor(points, "points", (None,), min_ndim=1)
    last = points[..., -1:]
    if eps > 0:
        sign = torch.where(last < 0, -torch.ones_like(last), torch.ones_like(last))
        last = torch.where(last.abs() > eps, last, sign * eps)
    return points[..., :-1] / last


def transform_points(transform: Tensor, points: Tensor) -> Tensor:
    """Apply rigid transforms ``x' = R x + t`` to 3D points.

    Args:
        transform: (..., 3, 4) or (..., 4, 4); the leading dimensions broadcast with those of ``points``.
        points: (..., N, 3).

    Returns:
        (..., N, 3) transformed points.

    Example:
        >>> shift = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
        >>> transform_points(shift, torch.zeros(1, 3))
        tensor([[1., 2., 3.]])
    """
    check_tensor(transform, "transform", ((3, 4), 4))
    check_tensor(points, "points", (None, 3))
    check_same_leading("transform", transform, 2, "points", points, 2)
    rotation = transform[..., :3, :3]
    translation = transform[..., None, :3, 3]  # (..., 1, 3)
    return points @ rotation.transpose(-1, -2) + translation


def make_intrinsics(focal: Tensor, principal_point: Tensor) -> Tensor:
    """Pinhole intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.

    Args:
        focal: (..., 2) ``(fx, fy)`` in pixels.
        principal_point: (..., 2) ``(cx, cy)`` in pixels; broadcasts with ``focal``.

    Returns:
        (..., 3, 3) intrinsics, in the dtype of ``focal``.

    Example:
        >>> make_intrinsics(torch.tensor([500.0, 400.0]), torch.tensor([320.0, 240.0]))
        tensor([[500.,   0., 320.],
                [  0., 400., 240.],
                [  0.,   0.,   1.]])
    """
    check_tensor(focal, "focal", (2,))
    check_tensor(principal_point, "principal_point", (2,))
    check_same_leading("focal", focal, 1, "principal_point", principal_point, 1)
    batch = torch.broadcast_shapes(focal.shape[:-1], principal_point.shape[:-1])
    intrinsics = torch.zeros((*batch, 3, 3), dtype=focal.dtype, device=focal.device)
    intrinsics[..., 0, 0] = focal[..., 0]
    intrinsics[..., 1, 1] = focal[..., 1]
    intrinsics[..., 0, 2] = principal_point[..., 0].to(focal.dtype)
    intrinsics[..., 1, 2] = principal_point[..., 1].to(focal.dtype)
    intrinsics[..., 2, 2] = 1.0
    return intrinsics


def pixel_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None
) -> Tensor:
    """Pixel coordinates ``(u, v) = (column, row)``, pixel centres at integers (as DA3 and OpenCV).

    Returns:
        (height, width, 2); ``grid[v, u] == (u, v)``.

    Example:
        >>> pixel_grid(2, 3)[1, 2]
        tensor([2., 1.])
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack((u, v), dim=-1)


def unproject_depth(depth: Tensor, intrinsics: Tensor, extrinsics: Optional[Tensor] = None) -> Tensor:
    """3D points of z-depth maps: ``x_cam = depth * K^-1 (u, v, 1)``, then into the world frame.

    Pixel ``(u, v)`` is column ``u``, row ``v`` with centres at integers. ``extrinsics`` are world-to-camera
    (OpenCV: ``x_cam = R x_world + t``), so ``x_world = R^T (x_cam - t)``. Without them the points stay in the
    camera frame.

    Args:
        depth: (..., H, W) z-depth.
        intrinsics: (..., 3, 3) pixel intrinsics; leading dimensions broadcast with ``depth``'s.
        extrinsics: optional (..., 3, 4) or (..., 4, 4) world-to-camera transforms.

    Returns:
        (..., H, W, 3) points, in the world frame when ``extrinsics`` is given.

    Example:
        >>> K = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
        >>> unproject_depth(torch.full((2, 4), 4.0), K)[1, 3]  # pixel u=3, v=1
        tensor([4., 0., 4.])
    """
    check_tensor(depth, "depth", (None, None))
    check_tensor(intrinsics, "intrinsics", (3, 3))
    check_same_leading("depth", depth, 2, "intrinsics", intrinsics, 2)
    H, W = depth.shape[-2:]
    dtype = torch.promote_types(depth.dtype, intrinsics.dtype)
    pixels = to_homogeneous(pixel_grid(H, W, dtype=dtype, device=depth.device)).reshape(H * W, 3)
    rays = pixels @ torch.linalg.inv(intrinsics.to(dtype)).transpose(-1, -2)  # (..., H*W, 3)
    points = rays * depth.reshape((*depth.shape[:-2], H * W, 1)).to(dtype)
    if extrinsics is not None:
        check_tensor(extrinsics, "extrinsics", ((3, 4), 4))
        check_same_leading("depth", depth, 2, "extrinsics", extrinsics, 2)
        points = transform_points(affine_inverse(extrinsics.to(dtype)), points)
    return points.reshape((*points.shape[:-2], H, W, 3))


def project_points(
    points: Tensor, intrinsics: Tensor, extrinsics: Optional[Tensor] = None, eps: float = 0.0
) -> Tuple[Tensor, Tensor]:
    """Pixel coordinates and z-depth of 3D points seen by pinhole cameras (inverse of :func:`unproject_depth`).

    Args:
        points: (..., N, 3) points, in the world frame when ``extrinsics`` is given, else in the camera frame.
        intrinsics: (..., 3, 3) pixel intrinsics.
        extrinsics: optional (..., 3, 4) or (..., 4, 4) world-to-camera transforms.
        eps: floor on ``|z|`` in the division (see :func:`from_homogeneous`); 0 divides as is.

    Returns:
        ``(pixels (..., N, 2) as (u, v), depth (..., N))``.

    Example:
        >>> K = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
        >>> project_points(torch.tensor([[4.0, 0.0, 4.0]]), K)
        (tensor([[3., 1.]]), tensor([4.]))
    """
    check_tensor(points, "points", (None, 3))
    check_tensor(intrinsics, "intrinsics", (3, 3))
    check_same_leading("points", points, 2, "intrinsics", intrinsics, 2)
    if extrinsics is not None:
        check_tensor(extrinsics, "extrinsics", ((3, 4), 4))
        check_same_leading("points", points, 2, "extrinsics", extrinsics, 2)
        points = transform_points(extrinsics, points)
    image = points @ intrinsics.to(points.dtype).transpose(-1, -2)
    return from_homogeneous(image, eps=eps), points[..., 2]
