"""DA3 camera decoder (camera token -> pose encoding) and encoder (known cameras -> camera tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence

import torch
from torch import Tensor, nn

from anydepth.errors import ShapeError
from anydepth.geometry.pose_encoding import POSE_ENCODING_DIM, extrinsics_to_pose_encoding
from anydepth.models.dinov2 import Block, DinoV2Config


@dataclass(frozen=True)
class CameraDecoderConfig:
    """Architecture of the camera decoder (upstream ``CameraDec``, keys ``cam_dec.*``).

    Attributes:
        dim_in: width of the backbone's camera token, twice the encoder width (its per-view and cross-view
            halves): 768 (small), 1536 (base), 2048 (large), 3072 (giant).
    """

    dim_in: int


@dataclass(frozen=True)
class CameraEncoderConfig:
    """Architecture of the camera encoder (upstream ``CameraEnc``, keys ``cam_enc.*``).

    Attributes:
        dim_out: token width, the encoder width: 384 (small), 768 (base), 1024 (large), 1536 (giant).
        trunk_depth: transformer blocks over the views' tokens.
        num_heads: attention heads (16 for every size upstream, whatever the width).
        mlp_ratio: hidden width over token width in the blocks.
        norm_eps: epsilon of every LayerNorm (torch's default, unlike the DINOv2 blocks' 1e-6).
    """

    dim_out: int
    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5


# per DINOv2 encoder of the any-view models (configs/da3-{small,base,large,giant}.yaml)
CAMERA_DECODERS: Dict[str, CameraDecoderConfig] = {
    "vits": CameraDecoderConfig(dim_in=768),
    "vitb": CameraDecoderConfig(dim_in=1536),
    "vitl": CameraDecoderConfig(dim_in=2048),
    "vitg": CameraDecoderConfig(dim_in=3072),
}
CAMERA_ENCODERS: Dict[str, CameraEncoderConfig] = {
    "vits": CameraEncoderConfig(dim_out=384),
    "vitb": CameraEncoderConfig(dim_out=768),
    "vitl": CameraEncoderConfig(dim_out=1024),
    "vitg": CameraEncoderConfig(dim_out=1536),
}


class CameraDecoder(nn.Module):
    """Camera token of each view -> pose encoding ``[t(3), q xyzw(4), fov_h, fov_w]`` of its camera-to-world pose.

    Keys: ``backbone.{0,2}`` (two Linear + ReLU), ``fc_t``, ``fc_qvec``, ``fc_fov.0`` (Linear + ReLU, so fields
    of view are non-negative). Decode the result with
    :func:`anydepth.geometry.pose_encoding.pose_encoding_to_extrinsics`.
    """

    def __init__(self, cfg: CameraDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.dim_in
        self.backbone = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, D), nn.ReLU())
        self.fc_t = nn.Linear(D, 3)
        self.fc_qvec = nn.Linear(D, 4)
        self.fc_fov = nn.Sequential(nn.Linear(D, 2), nn.ReLU())

    def forward(self, camera_tokens: Tensor) -> Tensor:
        """(B, S, dim_in) camera tokens -> (B, S, 9) pose encodings (any leading dimensions work)."""
        if camera_tokens.shape[-1] != self.cfg.dim_in:
            raise ShapeError(
                f"camera_tokens must have shape (B, S, {self.cfg.dim_in}), got {tuple(camera_tokens.shape)}"
            )
        # the whole decoder runs in the weights' dtype (float32 in DA3, also under autocast)
        x = self.backbone(camera_tokens.to(self.fc_t.weight.dtype))
        return torch.cat((self.fc_t(x), self.fc_qvec(x), self.fc_fov(x)), dim=-1)


class PoseMlp(nn.Module):
    """Linear -> GELU -> Linear with distinct input, hidden and output widths, keys ``fc1`` / ``fc2``."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CameraEncoder(nn.Module):
    """Known cameras of the views -> one token per view (B, S, dim_out) for pose-conditioned DA3.

    The world-to-camera extrinsics are inverted and encoded as ``[t, q, fov_h, fov_w]``
    (:func:`~anydepth.geometry.pose_encoding.extrinsics_to_pose_encoding`), lifted by ``pose_branch``
    (9 -> dim_out / 2 -> dim_out), LayerNormed (``token_norm``), mixed across the views of each scene by
    ``trunk_depth`` transformer blocks (``trunk.{i}``, DINOv2 layout, layer scale, no masks or positions) and
    LayerNormed again (``trunk_norm``).
    """

    def __init__(self, cfg: CameraEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.dim_out
        self.pose_branch = PoseMlp(POSE_ENCODING_DIM, D // 2, D)
        self.token_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        block_cfg = DinoV2Config(
            embed_dim=D, depth=cfg.trunk_depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, norm_eps=cfg.norm_eps
        )
        self.trunk = nn.Sequential(*(Block(block_cfg) for _ in range(cfg.trunk_depth)))
        self.trunk_norm = nn.LayerNorm(D, eps=cfg.norm_eps)

    def forward(self, extrinsics: Tensor, intrinsics: Tensor, image_size: Sequence[int]) -> Tensor:
        """Camera tokens of known cameras.

        Args:
            extrinsics: (B, S, 3|4, 4) world-to-camera (OpenCV), normalised as the pipeline does (view 0 at the
                origin, median camera distance 1).
            intrinsics: (B, S, 3, 3) pixel intrinsics for ``image_size``.
            image_size: ``(H, W)`` of the network input.

        Returns:
            (B, S, dim_out) tokens in the weights' dtype; the pose encoding is computed in the cameras' dtype.
        """
        if extrinsics.ndim != 4 or intrinsics.ndim != 4 or extrinsics.shape[:2] != intrinsics.shape[:2]:
            raise ShapeError(
                f"extrinsics (B, S, 3|4, 4) and intrinsics (B, S, 3, 3) must share (B, S), got "
                f"{tuple(extrinsics.shape)} and {tuple(intrinsics.shape)}"
            )
        encoding = extrinsics_to_pose_encoding(extrinsics, intrinsics, image_size)  # (B, S, 9)
        tokens = self.token_norm(self.pose_branch(encoding.to(self.token_norm.weight.dtype)))
        return self.trunk_norm(self.trunk(tokens))
