"""Camera paths for rendering a scene: the input cameras, smoothed, interpolated, a wander and a dolly zoom.

These are the trajectories of upstream DA3's ``gs_video`` export (its ``trj_mode``), written on camera-to-world
poses and pixel intrinsics. Two places differ on purpose: smoothing re-orthonormalises the rotation (upstream
normalises two columns without making them orthogonal, which can shear the frame), and interpolation turns the
camera about the point both cameras look at with a spherical interpolation of the rotation (upstream goes
through Euler angles about that point; the path has the same ends and the same pivot).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from anydepth.errors import InputError
from anydepth.geometry.rotations import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion

TRAJECTORIES = ("original", "smooth", "interpolate", "interpolate_smooth", "wander", "dolly_zoom", "extend")
"""Path names, as upstream's ``trj_mode``."""

FPS = 24
"""Frame rate that upstream's interpolation lengths assume (2 to 18 seconds of video)."""


def gaussian_smooth_path(camera_to_world: Tensor, kernel_size: int = 50) -> Tensor:
    """Low-pass a camera path: a Gaussian kernel over the first two rotation columns and the centres.

    As upstream's ``render_stabilization_path``: an odd kernel no longer than the path (at least 3 for paths of 3
    or more), OpenCV's default sigma for that size, reflected ends; the rotation is rebuilt from the smoothed columns
    (Gram-Schmidt, so it stays a rotation).

    Args:
        camera_to_world: (V, 3|4, 4).
        kernel_size: kernel length before the limits above.

    Returns:
        (V, 4, 4).
    """
    V = camera_to_world.shape[0]
    poses = _homogeneous(camera_to_world)
    if V <= 1:
        return poses
    size = max(kernel_size, 1)
    size += 1 - size % 2
    size = min(size, V if V % 2 else V - 1)
    if V >= 3:
        size = max(size, 3)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel's sigma for sigma <= 0
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(poses)
    signals = torch.cat([poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 3]], dim=1).T[:, None]  # (9, 1, V)
    padded = F.pad(signals, (size // 2, size // 2), mode="reflect") if size > 1 else signals
    smooth = F.conv1d(padded, kernel.view(1, 1, -1))[:, 0].T  # (V, 9)
    first = F.normalize(smooth[:, 0:3], dim=-1)
    second = F.normalize(smooth[:, 3:6] - (smooth[:, 3:6] * first).sum(-1, keepdim=True) * first, dim=-1)
    out = poses.clone()
    out[:, :3, 0], out[:, :3, 1] = first, second
    out[:, :3, 2] = torch.linalg.cross(first, second)
    out[:, :3, 3] = smooth[:, 6:9]
    return out


def interpolation_length(num_views: int) -> int:
    """Frames per segment between two views: 8, fewer if the video would pass 18 s at 24 fps, more if it would be
    under 2 s (upstream's rule)."""
    segments = max(num_views - 1, 1)
    length = 8
    if segments * length > FPS * 18:
        length = max(1, FPS * 10 // segments)
    if segments * length < FPS * 2:
        length = max(1, FPS * 2 // segments)
    return length


def interpolate_poses(start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """Camera-to-world poses between two cameras, turning about the point both look at.

    The pivot is the least-squares meeting point of the two optical axes (their mid-point when the axes are
    parallel). The rotation is interpolated spherically and the pivot's position in the camera frame linearly, so
    the camera turns about the pivot and the ends are exact.

    Args:
        start, end: (3|4, 4) camera-to-world.
        t: (T,) in [0, 1].

    Returns:
        (T, 4, 4).
    """
    a, b = _homogeneous(start[None])[0].double(), _homogeneous(end[None])[0].double()
    centre_a, centre_b = a[:3, 3], b[:3, 3]
    look_a, look_b = a[:3, 2], b[:3, 2]
    pivot = 0.5 * (centre_a + centre_b)
    if abs(abs(float(look_a @ look_b)) - 1.0) > 1e-4:
        eye = torch.eye(3, dtype=torch.float64)
        lhs = (eye - torch.outer(look_a, look_a)) + (eye - torch.outer(look_b, look_b))
        rhs = (eye - torch.outer(look_a, look_a)) @ centre_a + (eye - torch.outer(look_b, look_b)) @ centre_b
        pivot = torch.linalg.solve(lhs, rhs)
    in_a, in_b = a[:3, :3].T @ (pivot - centre_a), b[:3, :3].T @ (pivot - centre_b)
    tt = t.double()[:, None]
    rotations = _slerp(a[:3, :3], b[:3, :3], t.double())
    in_frame = in_a + (in_b - in_a) * tt  # (T, 3)
    out = torch.eye(4, dtype=torch.float64).repeat(len(t), 1, 1)
    out[:, :3, :3] = rotations
    out[:, :3, 3] = pivot - (rotations @ in_frame[..., None])[..., 0]
    return out.to(start.dtype)


def interpolate_path(camera_to_world: Tensor, intrinsics: Tensor, length: int) -> Tuple[Tensor, Tensor]:
    """``length`` frames per segment between consecutive views, eased (cosine) so the camera slows at each view;
    shared ends are not repeated. Intrinsics are interpolated linearly with the same easing. With ``length <= 2``
    the views are returned as they are (upstream's rule)."""
    poses = _homogeneous(camera_to_world)
    if length <= 2 or len(poses) < 2:
        return poses, intrinsics
    t = torch.linspace(0, 1, length, dtype=torch.float64)
    t = (torch.cos(math.pi * (t + 1)) + 1) / 2
    path, ks = [], []
    for i in range(len(poses) - 1):
        skip = 0 if i == 0 else 1
        path.append(interpolate_poses(poses[i], poses[i + 1], t)[skip:])
        k = intrinsics[i] + (intrinsics[i + 1] - intrinsics[i]) * t.to(intrinsics)[:, None, None]
        ks.append(k[skip:])
    return torch.cat(path), torch.cat(ks)


def wander_path(
    camera_to_world: Tensor, intrinsics: Tensor, num_frames: int = 120, max_disparity: float = 24.0
) -> Tuple[Tensor, Tensor]:
    """A loop of small sideways and up-down moves around one camera, starting and ending at it.

    The camera moves by ``max_disparity / fx`` scene units along x (and a third of that in y and z) on a circle,
    so that content at unit depth shifts by about ``max_disparity`` pixels (upstream's ``render_wander_path``).

    Returns:
        (num_frames + 2, 4, 4) camera-to-world and (num_frames + 2, 3, 3) intrinsics.
    """
    pose = _homogeneous(camera_to_world[None])[0]
    radius = max_disparity / float(intrinsics[0, 0])
    angle = torch.linspace(0.0, 2.0 * math.pi, num_frames, dtype=pose.dtype)
    move = torch.eye(4, dtype=pose.dtype).repeat(num_frames, 1, 1)
    move[:, 0, 3] = -radius * torch.sin(angle)
    move[:, 1, 3] = move[:, 2, 3] = -radius * torch.cos(angle) / 3.0
    poses = torch.cat([pose[None], pose @ move, pose[None]])
    return poses, intrinsics.expand(len(poses), 3, 3).clone()


def dolly_zoom_path(
    camera_to_world: Tensor,
    intrinsics: Tensor,
    num_frames: int = 120,
    max_distance: float = 0.1,
    focus_distance: float = 10.0,
) -> Tuple[Tensor, Tensor]:
    """The camera backs away along its axis and returns, zooming in so that the plane at ``focus_distance`` keeps
    its size (upstream's ``render_dolly_zoom_path``; its single-view video uses ``max_distance=2``,
    ``focus_distance=30``).

    Returns:
        (num_frames, 4, 4) camera-to-world and (num_frames, 3, 3) intrinsics.
    """
    pose = _homogeneous(camera_to_world[None])[0]
    t = torch.linspace(0.0, 2.0, num_frames, dtype=pose.dtype)
    back = 0.5 * (1.0 - torch.cos(math.pi * t)) * max_distance
    move = torch.eye(4, dtype=pose.dtype).repeat(num_frames, 1, 1)
    move[:, 2, 3] = -back
    zoom = (focus_distance / (focus_distance + back)).clamp_min(1e-6).to(intrinsics)
    ks = intrinsics.expand(num_frames, 3, 3).clone()
    ks[:, 0, 0] = ks[:, 0, 0] * zoom
    ks[:, 1, 1] = ks[:, 1, 1] * zoom
    return pose @ move, ks


def camera_path(mode: str, camera_to_world: Tensor, intrinsics: Tensor) -> Tuple[Tensor, Tensor]:
    """The cameras of one of :data:`TRAJECTORIES` through the given views (upstream's ``trj_mode``).

    - "original": the views themselves; "smooth": them, low-passed (:func:`gaussian_smooth_path`).
    - "interpolate": :func:`interpolation_length` frames between consecutive views; "interpolate_smooth": that,
      low-passed; "extend": that, low-passed, with a wander and a dolly zoom inserted at the middle frame.
    - "wander", "dolly_zoom": around the first view only.

    A single view always gets "wander", as upstream (nothing to interpolate).

    Args:
        mode: the path's name.
        camera_to_world: (V, 3|4, 4) poses of the views.
        intrinsics: (V, 3, 3) their pixel intrinsics at the rendered size.

    Returns:
        (F, 4, 4) camera-to-world and (F, 3, 3) intrinsics of the frames.
    """
    if mode not in TRAJECTORIES:
        raise InputError(f"unknown gs_video trajectory {mode!r}; choose one of {', '.join(TRAJECTORIES)}")
    poses = _homogeneous(camera_to_world).float()
    intrinsics = intrinsics.float()
    if len(poses) <= 1 and mode not in ("wander", "dolly_zoom"):
        mode = "wander"
    if mode == "original":
        return poses, intrinsics
    if mode == "smooth":
        return gaussian_smooth_path(poses), intrinsics
    if mode == "wander":
        return wander_path(poses[0], intrinsics[0])
    if mode == "dolly_zoom":
        return dolly_zoom_path(poses[0], intrinsics[0], max_distance=2.0, focus_distance=30.0)
    path, ks = interpolate_path(poses, intrinsics, interpolation_length(len(poses)))
    if mode == "interpolate":
        return path, ks
    path = gaussian_smooth_path(path)
    if mode == "interpolate_smooth":
        return path, ks
    middle = len(path) // 2
    frames = max(36, min(60, middle // 2))
    wander, wander_ks = wander_path(path[middle], ks[middle], num_frames=frames)
    dolly, dolly_ks = dolly_zoom_path(path[middle], ks[middle], num_frames=frames)
    return (
        torch.cat([path[:middle], wander, dolly, path[middle:]]),
        torch.cat([ks[:middle], wander_ks, dolly_ks, ks[middle:]]),
    )


def _homogeneous(poses: Tensor) -> Tensor:
    if poses.shape[-2] == 4:
        return poses
    bottom = torch.zeros_like(poses[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([poses, bottom], dim=-2)


def _slerp(start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """(T, 3, 3) rotations on the shortest arc from ``start`` to ``end``."""
    qa, qb = rotation_matrix_to_quaternion(torch.stack([start, end]))  # scalar last
    dot = float(qa @ qb)
    if dot < 0:
        qb, dot = -qb, -dot
    if dot > 0.9995:  # nearly equal: linear is exact enough and avoids dividing by sin(0)
        q = qa + (qb - qa) * t[:, None]
    else:
        theta = math.acos(min(dot, 1.0))
        q = (torch.sin((1 - t) * theta)[:, None] * qa + torch.sin(t * theta)[:, None] * qb) / math.sin(theta)
    return quaternion_to_rotation_matrix(F.normalize(q, dim=-1))
