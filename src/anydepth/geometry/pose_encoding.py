"""DA3's 9-number camera encoding [translation(3), quaternion xyzw(4), fov_h, fov_w] and its inverse."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from anydepth.geometry._checks import check_image_size, check_same_leading, check_tensor
from anydepth.geometry.cameras import affine_inverse
from anydepth.geometry.rotations import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion

POSE_ENCODING_DIM = 9
# tan(fov / 2) is floored here before dividing, so a zero field of view (the decoder's ReLU) gives a finite focal
MIN_TAN_HALF_FOV = 1e-6


def camera_to_pose_encoding(cam_to_world: Tensor, intrinsics: Tensor, image_size: Sequence[int]) -> Tensor:
    """Encode cameras as ``[t(3), q(4), fov_h, fov_w]``, the vector DA3's camera encoder and decoder use.

    ``t`` and ``q`` (a unit quaternion ``(x, y, z, w)``, ``w >= 0``) are the camera-to-world translation and
    rotation. ``fov_h = 2 atan(H / 2 / fy)`` and ``fov_w = 2 atan(W / 2 / fx)`` are in radians; the principal
    point is not encoded (the decoder puts it at the image centre).

    Args:
        cam_to_world: (..., 3, 4) or (..., 4, 4) camera-to-world poses.
        intrinsics: (..., 3, 3) pixel intrinsics; leading dimensions broadcast with ``cam_to_world``'s.
        image_size: ``(H, W)`` in pixels, the size the intrinsics refer to.

    Returns:
        (..., 9) encodings, in the promoted dtype of the inputs (upstream always returns float32).

    Example:
        >>> K = torch.tensor([[100.0, 0.0, 100.0], [0.0, 100.0, 100.0], [0.0, 0.0, 1.0]])
        >>> pose = torch.cat((torch.eye(3), torch.tensor([[1.0], [2.0], [3.0]])), dim=1)
        >>> camera_to_pose_encoding(pose, K, (200, 200))  # fov pi/2 both ways
        tensor([1.0000, 2.0000, 3.0000, 0.0000, 0.0000, 0.0000, 1.0000, 1.5708, 1.5708])
    """
    check_tensor(cam_to_world, "cam_to_world", ((3, 4), 4))
    check_tensor(intrinsics, "intrinsics", (3, 3))
    check_same_leading("cam_to_world", cam_to_world, 2, "intrinsics", intrinsics, 2)
    H, W = check_image_size(image_size)
    dtype = torch.promote_types(cam_to_world.dtype, intrinsics.dtype)
    cam_to_world, intrinsics = cam_to_world.to(dtype), intrinsics.to(dtype)
    batch = torch.broadcast_shapes(cam_to_world.shape[:-2], intrinsics.shape[:-2])
    translation = cam_to_world[..., :3, 3].expand((*batch, 3))
    quaternion = rotation_matrix_to_quaternion(cam_to_world[..., :3, :3]).expand((*batch, 4))
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1]).expand(batch)
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0]).expand(batch)
    return torch.cat((translation, quaternion, fov_h[..., None], fov_w[..., None]), dim=-1)


def pose_encoding_to_camera(pose_encoding: Tensor, image_size: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """Decode ``[t(3), q(4), fov_h, fov_w]`` into a camera-to-world pose and pinhole intrinsics.

    The quaternion need not be normalised. ``fy = (H / 2) / tan(fov_h / 2)`` and ``fx = (W / 2) / tan(fov_w / 2)``,
    with ``tan`` floored at 1e-6; the principal point is ``(W / 2, H / 2)``, DA3's choice (half a pixel off the
    centre of an image whose pixel centres are at integers).

    Args:
        pose_encoding: (..., 9).
        image_size: ``(H, W)`` in pixels.

    Returns:
        ``(cam_to_world (..., 3, 4), intrinsics (..., 3, 3))`` in the dtype of ``pose_encoding`` (upstream builds
        the intrinsics in the default dtype).

    Example:
        >>> enc = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 1.5707963, 1.5707963])
        >>> pose, K = pose_encoding_to_camera(enc, (200, 300))
        >>> K
        tensor([[150.0000,   0.0000, 150.0000],
                [  0.0000, 100.0000, 100.0000],
                [  0.0000,   0.0000,   1.0000]])
    """
    check_tensor(pose_encoding, "pose_encoding", (POSE_ENCODING_DIM,))
    H, W = check_image_size(image_size)
    translation = pose_encoding[..., :3]
    rotation = quaternion_to_rotation_matrix(pose_encoding[..., 3:7])
    cam_to_world = torch.cat((rotation, translation[..., None]), dim=-1)
    fov_h, fov_w = pose_encoding[..., 7], pose_encoding[..., 8]
    fy = (H / 2.0) / torch.clamp(torch.tan(fov_h / 2.0), min=MIN_TAN_HALF_FOV)
    fx = (W / 2.0) / torch.clamp(torch.tan(fov_w / 2.0), min=MIN_TAN_HALF_FOV)
    intrinsics = torch.zeros((*pose_encoding.shape[:-1], 3, 3), dtype=pose_encoding.dtype, device=pose_encoding.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return cam_to_world, intrinsics


def extrinsics_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_size: Sequence[int]) -> Tensor:
    """Encode world-to-camera extrinsics (OpenCV) as DA3's camera encoder does: invert, then encode.

    Args:
        extrinsics: (..., 3, 4) or (..., 4, 4) world-to-camera transforms.
        intrinsics: (..., 3, 3) pixel intrinsics.
        image_size: ``(H, W)`` in pixels.

    Returns:
        (..., 9) encodings of the camera-to-world poses.
    """
    check_tensor(extrinsics, "extrinsics", ((3, 4), 4))
    return camera_to_pose_encoding(affine_inverse(extrinsics), intrinsics, image_size)


def pose_encoding_to_extrinsics(pose_encoding: Tensor, image_size: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """Decode into world-to-camera extrinsics (OpenCV) and intrinsics, as DA3 returns its predicted cameras.

    Args:
        pose_encoding: (..., 9).
        image_size: ``(H, W)`` in pixels.

    Returns:
        ``(extrinsics (..., 3, 4) world-to-camera, intrinsics (..., 3, 3))``.

    Example:
        >>> enc = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 1.5707963, 1.5707963])
        >>> pose_encoding_to_extrinsics(enc, (200, 200))[0][:, 3]
        tensor([-1., -2., -3.])
    """
    cam_to_world, intrinsics = pose_encoding_to_camera(pose_encoding, image_size)
    return affine_inverse(cam_to_world), intrinsics
