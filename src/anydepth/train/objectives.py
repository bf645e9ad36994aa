"""What training a family's network means: its forward on a batch, the paper's loss, and the map that is scored.

One :class:`Objective` per family, chosen by :func:`objective_for` from the table :data:`OBJECTIVES` (adding a
family is one row). They train the bare networks of :mod:`anydepth.models` (the pipelines run them under
``torch.inference_mode``); none of those networks blocks gradients.

- Depth Anything V2 (:class:`V2Objective`): relative models learn disparity with the SSI loss plus twice the
  gradient matching term; metric models learn metres with SILog (lambda 0.5), as the V2 paper and code do.
- Depth Anything 3 (:class:`DA3Objective`): any-view models learn depth with confidence and, where the samples
  have cameras, the ray map and the camera head's pose encoding (DA3's depth-ray objective), all in the scene's
  normalised frame; the monocular model learns depth up to an affine map (SSI + gradient matching on depth), the
  metric one metres (``output * focal / 300``) with SILog.
- Video Depth Anything (:class:`VDAObjective`): the per-frame SSI loss plus the temporal gradient matching loss
  over each clip (metric checkpoints: SILog per frame plus the temporal term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn

from anydepth.errors import InputError
from anydepth.geometry.depth_alignment import METRIC_FOCAL
from anydepth.geometry.pose_encoding import extrinsics_to_pose_encoding
from anydepth.presets import Preset
from anydepth.train.data import Batch
from anydepth.train.losses import (
    camera_rays,
    confidence_depth_loss,
    normalise_scene,
    ray_loss,
    relative_depth_loss,
    silog_loss,
    temporal_gradient_matching_loss,
)

PREDICTION_KINDS = ("disparity", "depth", "metric")
"""What :meth:`Objective.predict` returns: affine-invariant disparity, depth up to scale, or metres."""


def _disparity(depth: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth))


def _unit_mean(target: Tensor, valid: Tensor, dims: int = 2) -> Tensor:
    """``target`` divided by its mean over the valid pixels of each map (the last ``dims`` dimensions: 2 for
    images, 3 for clips, whose frames must keep their ratios for the temporal loss).

    The affine-invariant losses ignore the prediction's scale, not the target's: without this an outdoor image
    (disparity near 0, depth up to 80) would weigh far less (or more) than a room.
    """
    flat_t, flat_v = target.flatten(-dims), valid.flatten(-dims)
    count = flat_v.sum(-1).clamp(min=1)
    mean = torch.where(flat_v, flat_t, torch.zeros_like(flat_t)).sum(-1) / count
    return target / mean.clamp(min=1e-6).view(*mean.shape, *([1] * dims))


@dataclass
class Objective:
    """The training recipe of one family; subclasses implement :meth:`loss` and :meth:`predict`.

    Attributes:
        encoder_prefix: parameter names of the encoder (the pretrained DINOv2), which a lower learning rate or a
            freeze applies to.
        frames: frames per sample (1: images; views of a scene; clip length).
        clip: samples are consecutive frames (video) rather than a set of views.
        needs_intrinsics: the loss needs the cameras' intrinsics (DA3METRIC's focal-length normalisation).
    """

    encoder_prefix: str = "pretrained."
    frames: int = 1
    clip: bool = False
    needs_intrinsics: bool = False

    def loss(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, Dict[str, float]]:
        """The training loss of a batch, and its named terms (floats, for logs)."""
        raise NotImplementedError

    def prepare_from_scratch(self, net: nn.Module) -> None:
        """Adjust a network with untrained weights before training starts (nothing by default)."""

    def predict(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, str]:
        """(B * V, H, W) maps of a batch's frames and their kind (one of :data:`PREDICTION_KINDS`)."""
        raise NotImplementedError


def _alive_relu_output(net: nn.Module, layer: str) -> None:
    """Set the bias of the convolution before a ReLU output to 1.

    With PyTorch's initialisation that convolution's outputs are small and about as often negative as positive,
    so the ReLU clips most pixels to zero; under an affine-invariant loss (which does nothing to hold the output's
    scale up) such a head dies and stops learning. A bias of 1 starts every pixel alive, with the small variations
    the loss then amplifies. Trained checkpoints do not need it.
    """
    with torch.no_grad():
        net.get_submodule(layer).bias.fill_(1.0)


@dataclass
class V2Objective(Objective):
    """Depth Anything V2: SSI + ``gradient_weight`` x gradient matching on disparity, or SILog on metres.

    Attributes:
        metric: the network has the metric head (sigmoid x max_depth).
        gradient_weight: weight of the gradient matching term (2 in the V2 paper).
        silog_lambda: lambda of SILog (0.5 in V2-metric).
        alignment: how the relative loss removes scale and shift, "lstsq" or "median"
            (:data:`anydepth.train.losses.ALIGNMENTS`; ``--ssi-alignment``).
    """

    metric: bool = False
    gradient_weight: float = 2.0
    silog_lambda: float = 0.5
    alignment: str = "lstsq"

    def prepare_from_scratch(self, net: nn.Module) -> None:
        if not self.metric:  # the metric head ends in a sigmoid, alive everywhere
            _alive_relu_output(net, "depth_head.scratch.output_conv2.2")

    def predict(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, str]:
        out = net(batch.images.flatten(0, 1)).float()  # (B * V, H, W)
        return out, "metric" if self.metric else "disparity"

    def loss(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, Dict[str, float]]:
        pred, _ = self.predict(net, batch)
        depth, valid = batch.depth.flatten(0, 1), batch.valid.flatten(0, 1)
        if self.metric:
            loss = silog_loss(pred, depth, valid, self.silog_lambda)
            return loss, {"silog": float(loss.detach())}
        target = _unit_mean(_disparity(depth, valid), valid)
        loss = relative_depth_loss(pred, target, valid, self.gradient_weight, self.alignment)
        return loss, {"ssi_gm": float(loss.detach())}


@dataclass
class VDAObjective(Objective):
    """Video Depth Anything: per-frame SSI (or SILog for metric checkpoints) + ``temporal_weight`` x TGM.

    Attributes:
        metric: train metres (the metric checkpoints) rather than disparity.
        temporal_weight: weight of the temporal gradient matching loss.
        gradient_weight: weight of the per-frame gradient matching term (0: the paper's spatial SSI loss alone).
    """

    frames: int = 4
    clip: bool = True
    metric: bool = False
    temporal_weight: float = 1.0
    gradient_weight: float = 0.0
    silog_lambda: float = 0.5

    def prepare_from_scratch(self, net: nn.Module) -> None:
        _alive_relu_output(net, "head.scratch.output_conv2.2")  # relative and metric checkpoints: one ReLU head

    def predict(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, str]:
        out = net(batch.images).float()  # (B, T, H, W)
        return out.flatten(0, 1), "metric" if self.metric else "disparity"

    def loss(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, Dict[str, float]]:
        pred = net(batch.images).float()
        valid = batch.valid
        target = batch.depth if self.metric else _unit_mean(_disparity(batch.depth, valid), valid, dims=3)
        if self.metric:
            spatial = silog_loss(pred.flatten(0, 1), target.flatten(0, 1), valid.flatten(0, 1), self.silog_lambda)
        else:
            spatial = relative_depth_loss(pred.flatten(0, 1), target.flatten(0, 1), valid.flatten(0, 1),
                                          self.gradient_weight)  # fmt: skip
        temporal = temporal_gradient_matching_loss(pred, target, valid)
        loss = spatial + self.temporal_weight * temporal
        return loss, {"spatial": float(spatial.detach()), "tgm": float(temporal.detach())}


@dataclass
class DA3Objective(Objective):
    """Depth Anything 3 networks (not the nested model: fine-tune its two halves as their own presets).

    Any-view networks (DualDPT head and cameras), on samples of ``frames`` views of one scene in the frame of
    view 0, all ground truth divided by the scene's scale (:func:`~anydepth.train.losses.normalise_scene`)::

        L = L_D(depth, conf) + ray_weight * L_ray + camera_weight * |pose_encoding - pose_encoding*|_1

    (the ray and camera terms only where the samples have cameras; without them the depth is normalised by its
    mean). The reference view is always the first (``ref_view_strategy="first"``), so the predicted frame is
    view 0's, as the ground truth's. With ``condition_on_cameras`` the known cameras are given to the camera
    encoder too (DA3's pose-conditioned mode).

    Monocular networks (depth + sky head): relative ones with SSI + gradient matching on depth, the metric one
    with SILog on ``output * focal / 300`` metres. The sky head is not trained.
    """

    encoder_prefix: str = "backbone."
    frames: int = 2
    anyview: bool = True
    metric: bool = False
    conf_weight: float = 1.0
    ray_weight: float = 1.0
    camera_weight: float = 1.0
    gradient_weight: float = 2.0
    silog_lambda: float = 0.5
    condition_on_cameras: bool = False

    def _anyview(self, net: nn.Module, batch: Batch, rays: bool):
        images = batch.images
        H, W = images.shape[-2:]
        cam_token = None
        scene = None
        if batch.extrinsics is not None and batch.intrinsics is not None:
            scene = normalise_scene(batch.depth, batch.extrinsics, batch.intrinsics, batch.valid)
            if self.condition_on_cameras:
                cam_token = net.cam_enc(scene[1], batch.intrinsics, (H, W))
        features, _ = net.backbone(images, cam_token=cam_token, ref_view_strategy="first")
        head = net.head(features, H, W, patch_start_idx=0, chunk_size=None, rays=rays and scene is not None)
        return features, head, scene

    def predict(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, str]:
        if self.anyview:
            _, head, _ = self._anyview(net, batch, rays=False)
            return head.depth.float().flatten(0, 1), "depth"
        depth = net.predict(batch.images).depth.float().flatten(0, 1)
        if not self.metric:
            return depth, "depth"
        return self._metres(depth, batch), "metric"

    def _metres(self, depth: Tensor, batch: Batch) -> Tensor:
        if batch.intrinsics is None:
            raise InputError("DA3METRIC learns depth for a focal length of 300 px: its data needs intrinsics")
        K = batch.intrinsics.flatten(0, 1)
        focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
        return depth * (focal / METRIC_FOCAL)[:, None, None]

    def loss(self, net: nn.Module, batch: Batch) -> Tuple[Tensor, Dict[str, float]]:
        if not self.anyview:
            depth, kind = self.predict(net, batch)
            target, valid = batch.depth.flatten(0, 1), batch.valid.flatten(0, 1)
            if kind == "metric":
                loss = silog_loss(depth, target, valid, self.silog_lambda)
                return loss, {"silog": float(loss.detach())}
            loss = relative_depth_loss(depth, _unit_mean(target, valid), valid, self.gradient_weight)
            return loss, {"ssi_gm": float(loss.detach())}

        features, head, scene = self._anyview(net, batch, rays=True)
        depth, conf = head.depth.float(), head.depth_conf.float()
        H, W = batch.images.shape[-2:]
        if scene is None:  # no cameras: depth alone, normalised by each scene's mean depth
            valid = batch.valid
            count = valid.flatten(1).sum(1).clamp(min=1)
            mean = torch.where(valid, batch.depth, torch.zeros_like(batch.depth)).flatten(1).sum(1) / count
            target = batch.depth / mean.clamp(min=1e-6)[:, None, None, None]
            loss = confidence_depth_loss(depth, conf, target, valid, self.conf_weight)
            return loss, {"depth": float(loss.detach())}
        target_depth, target_ext = scene
        depth_term = confidence_depth_loss(depth, conf, target_depth, batch.valid, self.conf_weight)
        ray = head.ray.float()
        target_rays = camera_rays(target_ext, batch.intrinsics.float(), (H, W), tuple(ray.shape[2:4]))
        ray_term = ray_loss(ray, target_rays)
        pose = net.cam_dec(features[-1][1]).float()
        camera_term = (pose - extrinsics_to_pose_encoding(target_ext, batch.intrinsics.float(), (H, W))).abs().mean()
        loss = depth_term + self.ray_weight * ray_term + self.camera_weight * camera_term
        return loss, {
            "depth": float(depth_term.detach()),
            "ray": float(ray_term.detach()),
            "camera": float(camera_term.detach()),
        }


def _v2(preset: Preset, net: nn.Module) -> Objective:
    return V2Objective(metric=preset.depth_kind == "metric")


def _vda(preset: Preset, net: nn.Module) -> Objective:
    return VDAObjective(metric=preset.depth_kind == "metric")


def _da3(preset: Preset, net: nn.Module) -> Objective:
    if not hasattr(net, "backbone") or not hasattr(net, "head"):
        raise InputError(f"{preset.name} is two networks (any-view + metric); fine-tune its halves as their own "
                         "presets (e.g. da3-giant and da3metric-large)")  # fmt: skip
    anyview = bool(getattr(net, "predicts_cameras", False))
    metric = preset.depth_kind == "metric" and not anyview
    return DA3Objective(anyview=anyview, metric=metric, frames=2 if anyview else 1, needs_intrinsics=metric)


OBJECTIVES: Dict[str, Callable[[Preset, nn.Module], Objective]] = {"dav2": _v2, "da3": _da3, "vda": _vda}
"""Family name -> the objective of a preset's network (the families without a row cannot be fine-tuned)."""


def objective_for(preset: Preset, net: nn.Module) -> Objective:
    """The default objective of ``preset``'s network ``net`` (which may be a smaller network of the family)."""
    try:
        make = OBJECTIVES[preset.family]
    except KeyError:
        trainable = ", ".join(sorted(OBJECTIVES))
        raise InputError(f"{preset.name}: its family ({preset.family}) cannot be fine-tuned here; the families that "
                         f"can: {trainable}") from None  # fmt: skip
    return make(preset, net)
