"""Depth Anything 3 networks: any-view (backbone + DualDPT + cameras [+ GS]), mono/metric (DPT + sky), nested."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from anydepth.errors import InputError, ShapeError
from anydepth.geometry.depth_alignment import align_to_metric, fill_sky_with_far_depth
from anydepth.geometry.pose_encoding import pose_encoding_to_extrinsics
from anydepth.geometry.ray_pose import camera_from_rays
from anydepth.geometry.sim3 import umeyama
from anydepth.layers.precision import float32_region
from anydepth.models.da3.backbone import DA3Backbone, DA3BackboneConfig
from anydepth.models.da3.camera import (
    CAMERA_DECODERS,
    CAMERA_ENCODERS,
    CameraDecoder,
    CameraDecoderConfig,
    CameraEncoder,
    CameraEncoderConfig,
)
from anydepth.models.da3.gaussian_head import (
    GAUSSIAN_DPT_CONFIG_VITG,
    GaussianAdapter,
    GaussianAdapterConfig,
    GaussianDPTConfig,
    GaussianDPTHead,
    Gaussians,
    scale_gaussians,
)
from anydepth.models.da3.heads import (
    DEFAULT_CHUNK_SIZE,
    DPT_SKY_CONFIG_VITL,
    DUALDPT_CONFIGS,
    DPTSkyConfig,
    DPTSkyHead,
    DualDPTConfig,
    DualDPTHead,
)

RAY_DECOMPOSITIONS = ("ql", "qr")


@dataclass(frozen=True)
class DA3NetConfig:
    """Architecture of one Depth Anything 3 network (upstream ``DepthAnything3Net``).

    Attributes:
        backbone: the DINOv2 backbone with alternating attention (or the plain one of mono/metric models).
        head: DualDPT (depth, confidence, rays) or DPT with the sky head.
        camera_decoder, camera_encoder: present together on the any-view models.
        gaussian_head, gaussian_adapter: present together on DA3-GIANT (3D Gaussian splats).
    """

    backbone: DA3BackboneConfig
    head: Union[DualDPTConfig, DPTSkyConfig]
    camera_decoder: Optional[CameraDecoderConfig] = None
    camera_encoder: Optional[CameraEncoderConfig] = None
    gaussian_head: Optional[GaussianDPTConfig] = None
    gaussian_adapter: Optional[GaussianAdapterConfig] = None


def _anyview(encoder: str, gaussians: bool = False) -> DA3NetConfig:
    return DA3NetConfig(
        backbone=DA3BackboneConfig.from_name(encoder),
        head=DUALDPT_CONFIGS[encoder],
        camera_decoder=CAMERA_DECODERS[encoder],
        camera_encoder=CAMERA_ENCODERS[encoder],
        gaussian_head=GAUSSIAN_DPT_CONFIG_VITG if gaussians else None,
        gaussian_adapter=GaussianAdapterConfig() if gaussians else None,
    )


_MONOCULAR = DA3NetConfig(backbone=DA3BackboneConfig.from_name("vitl", monocular=True), head=DPT_SKY_CONFIG_VITL)

# upstream's configuration names (configs/*.yaml); the nested model is made of two of these
DA3_CONFIGS: Dict[str, DA3NetConfig] = {
    "da3-small": _anyview("vits"),
    "da3-base": _anyview("vitb"),
    "da3-large": _anyview("vitl"),
    "da3-giant": _anyview("vitg", gaussians=True),
    "da3mono-large": _MONOCULAR,
    "da3metric-large": _MONOCULAR,
}


@dataclass
class DA3Output:
    """What a DA3 network predicts for B scenes of S views at the input resolution H x W.

    Attributes:
        depth: (B, S, H, W) z-depth (up to scale for any-view and mono models; metres for metric and nested).
        depth_conf: (B, S, H, W) confidence (>= 1), any-view models.
        extrinsics: (B, S, 3, 4) world-to-camera (OpenCV), any-view models.
        intrinsics: (B, S, 3, 3) pixel intrinsics for H x W, any-view models.
        sky: (B, S, H, W) sky score of models with a sky head (>= 0; sky where >= 0.3).
        aux: ``"feat_layer_{i}"`` -> (B, S, H / 14, W / 14, D) normed features of the requested blocks.
        gaussians: world-space 3D Gaussians, when asked for on a model with a GS head.
        metric_scale: (B,) scale applied by the nested model to reach metres.
        gaussian_pose_scale: (B,) the factor the Gaussian adapter applied for given cameras (see
            :func:`gaussian_pose_scales`), else None.
    """

    depth: Tensor
    depth_conf: Optional[Tensor] = None
    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None
    sky: Optional[Tensor] = None
    aux: Dict[str, Tensor] = field(default_factory=dict)
    gaussians: Optional[Gaussians] = None
    metric_scale: Optional[Tensor] = None
    gaussian_pose_scale: Optional[Tensor] = None


class DepthAnything3Net(nn.Module):
    """One DA3 network; keys ``backbone.*``, ``head.*``, ``cam_dec.*``, ``cam_enc.*``, ``gs_head.*`` as upstream.

    Precision: :meth:`~anydepth.layers.precision.PrecisionPolicy.apply` configures the backbone (mixed regions)
    and the head (its bf16 reassembly); the camera and Gaussian modules run in float32 whatever the policy.
    """

    # run in float32 regions: PrecisionPolicy.apply gives them the policy's float32 form
    float32_submodules = ("cam_dec", "cam_enc", "gs_head", "gs_adapter")

    def __init__(self, cfg: DA3NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = DA3Backbone(cfg.backbone)
        self.head = DualDPTHead(cfg.head) if isinstance(cfg.head, DualDPTConfig) else DPTSkyHead(cfg.head)
        if (cfg.camera_decoder is None) != (cfg.camera_encoder is None):
            raise ValueError("camera_decoder and camera_encoder come together")
        self.cam_dec = CameraDecoder(cfg.camera_decoder) if cfg.camera_decoder else None
        self.cam_enc = CameraEncoder(cfg.camera_encoder) if cfg.camera_encoder else None
        if (cfg.gaussian_head is None) != (cfg.gaussian_adapter is None):
            raise ValueError("gaussian_head and gaussian_adapter come together")
        self.gs_head = GaussianDPTHead(cfg.gaussian_head) if cfg.gaussian_head else None
        self.gs_adapter = GaussianAdapter(cfg.gaussian_adapter) if cfg.gaussian_adapter else None

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_size

    @property
    def predicts_cameras(self) -> bool:
        return isinstance(self.head, DualDPTHead)

    @property
    def predicts_gaussians(self) -> bool:
        return self.gs_head is not None

    def freeze_input_size(self, height: int, width: int, num_views: int = 1) -> None:
        """Fix the input to ``num_views`` views of ``height`` x ``width`` pixels, for static-shape exports.

        What depends only on the size becomes buffers (not in checkpoints): the backbone's resized position
        embedding and RoPE tables (:meth:`DA3Backbone.freeze_input_size`) and the heads' UV embeddings
        (:meth:`DPTTrunk.freeze_input_size`). A traced :meth:`predict` then holds no bicubic resize and no
        position-grid construction. Other sizes raise :class:`~anydepth.errors.ShapeError` until
        :meth:`unfreeze_input_size`. Call it after loading weights.
        """
        self.backbone.freeze_input_size(height, width, num_views)
        self.head.freeze_input_size(height, width)
        if self.gs_head is not None:
            self.gs_head.freeze_input_size(height, width)

    def unfreeze_input_size(self) -> None:
        """Take any input size and number of views again."""
        self.backbone.unfreeze_input_size()
        self.head.unfreeze_input_size()
        if self.gs_head is not None:
            self.gs_head.unfreeze_input_size()

    def forward(
        self,
        images: Tensor,
        extrinsics: Optional[Tensor] = None,
        intrinsics: Optional[Tensor] = None,
        export_feat_layers: Sequence[int] = (),
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        ray_decomposition: str = "qr",
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    ) -> DA3Output:
        """Depth, confidence and cameras of S views of each of B scenes: :meth:`predict`, then the sky filled
        with far depth where the model has a sky head (:func:`fill_sky`).

        Args:
            images: (B, S, 3, H, W) ImageNet-normalised images, H and W multiples of 14.
            extrinsics: (B, S, 3|4, 4) known world-to-camera poses for pose conditioning (with ``intrinsics``).
            intrinsics: (B, S, 3, 3) known pixel intrinsics for H x W.
            export_feat_layers: backbone blocks whose normed features to return in ``aux``.
            infer_gs: also predict 3D Gaussians (models with a GS head only).
            use_ray_pose: cameras from the ray maps (confidence-weighted solve) instead of the camera decoder.
            ref_view_strategy: "first", "middle", "saddle_balanced" or "saddle_sim_range".
            ray_decomposition: how the ray solve splits its homography: "qr" is exact for any principal point;
                "ql" reproduces upstream, which is off where the principal point is not centred.
            chunk_size: views per pass through the heads (bounds memory); None for all at once.
        """
        out = self.predict(
            images, extrinsics, intrinsics, export_feat_layers=export_feat_layers, infer_gs=infer_gs,
            use_ray_pose=use_ray_pose, ref_view_strategy=ref_view_strategy, ray_decomposition=ray_decomposition,
            chunk_size=chunk_size,
        )  # fmt: skip
        return fill_sky(out)

    def predict(
        self,
        images: Tensor,
        extrinsics: Optional[Tensor] = None,
        intrinsics: Optional[Tensor] = None,
        export_feat_layers: Sequence[int] = (),
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        ray_decomposition: str = "qr",
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    ) -> DA3Output:
        """What :meth:`forward` returns before its data-dependent post-processing: ``depth`` is not yet
        sky-filled (:func:`fill_sky` does that). The static-shape exports trace this method (with the defaults
        for everything but ``ref_view_strategy``); arguments as for :meth:`forward`."""
        if images.dim() != 5 or images.shape[2] != 3:
            raise ShapeError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        if (extrinsics is None) != (intrinsics is None):
            raise InputError("pose conditioning needs both extrinsics and intrinsics")
        if ray_decomposition not in RAY_DECOMPOSITIONS:
            raise InputError(f"ray_decomposition must be one of {RAY_DECOMPOSITIONS}, not {ray_decomposition!r}")
        if infer_gs and self.gs_head is None:
            raise InputError("this model has no Gaussian head: infer_gs needs DA3-GIANT or DA3NESTED-GIANT-LARGE")
        if (extrinsics is not None or use_ray_pose) and not self.predicts_cameras:
            raise InputError("this monocular model takes no cameras and predicts none")
        H, W = images.shape[-2:]

        cam_token = None
        if extrinsics is not None:
            with float32_region(images.device):
                cam_token = self.cam_enc(extrinsics.float(), intrinsics.float(), (H, W))
        features, aux_features = self.backbone(
            images, cam_token=cam_token, ref_view_strategy=ref_view_strategy, export_feat_layers=export_feat_layers
        )
        # the head's weights run float32, except the parts the precision policy puts in bf16 (its set_precision)
        with float32_region(images.device):
            head_options: Dict[str, Any] = {"rays": use_ray_pose} if self.predicts_cameras else {}
            head = self.head(features, H, W, patch_start_idx=0, chunk_size=chunk_size, **head_options)
            out = DA3Output(depth=head.depth, depth_conf=head.depth_conf, sky=head.sky)
            if self.predicts_cameras:
                if use_ray_pose:
                    out.extrinsics, out.intrinsics = camera_from_rays(
                        head.ray, head.ray_conf, (H, W), decomposition=ray_decomposition
                    )
                else:
                    pose_encoding = self.cam_dec(features[-1][1])
                    out.extrinsics, out.intrinsics = pose_encoding_to_extrinsics(pose_encoding, (H, W))
            if infer_gs:
                pose_scales = None if extrinsics is None else gaussian_pose_scales(out.extrinsics, extrinsics)
                raw = self.gs_head(features, images, patch_start_idx=0, chunk_size=chunk_size)
                out.gaussians = self.gs_adapter(
                    out.extrinsics, out.intrinsics, out.depth, raw.densities, raw.raw_gaussians, pose_scales
                )
                out.gaussian_pose_scale = pose_scales
        p = self.patch_size
        for layer, feature in zip(export_feat_layers, aux_features):
            out.aux[f"feat_layer_{int(layer)}"] = feature.reshape(*feature.shape[:2], H // p, W // p, -1)
        return out


def fill_sky(out: DA3Output) -> DA3Output:
    """``out`` with its depth set to a far value where the sky head sees sky (a no-op without a sky map).

    The data-dependent post-processing of :meth:`DepthAnything3Net.forward` (see
    :func:`~anydepth.geometry.depth_alignment.fill_sky_with_far_depth`), shared with the runtimes of exported
    graphs, which leave it out. Updates ``out`` and returns it.
    """
    if out.sky is not None:
        out.depth = fill_sky_with_far_depth(out.depth, out.sky)
    return out


def gaussian_pose_scales(predicted: Tensor, given: Tensor) -> Optional[Tensor]:
    """(B,) scales that carry the Gaussians from the predicted cameras' units to the given cameras' units.

    The Umeyama similarity from the predicted to the given camera centres, per scene, its scale clamped to
    [1/3, 3] as upstream does; None when the given cameras are the predicted ones. Where upstream's fit raises
    (two views, collinear centres) it falls back to 1; ours fits those too.
    """
    predicted = predicted.float()[..., :3, :4]
    given = given.float()[..., :3, :4]
    if torch.equal(predicted, given):
        return None

    def centres(w2c: Tensor) -> Tensor:
        return -(w2c[..., :3].transpose(-1, -2) @ w2c[..., 3:])[..., 0]

    scales = torch.stack([umeyama(centres(p), centres(g)).scale for p, g in zip(predicted, given)])
    return scales.clamp(1.0 / 3.0, 3.0)


class NestedDepthAnything3Net(nn.Module):
    """DA3NESTED: an any-view network (``da3.*``) scaled to metres by a metric network (``da3_metric.*``)."""

    def __init__(self, anyview: DA3NetConfig, metric: DA3NetConfig) -> None:
        super().__init__()
        self.da3 = DepthAnything3Net(anyview)
        self.da3_metric = DepthAnything3Net(metric)
        if not self.da3.predicts_cameras or self.da3_metric.predicts_cameras:
            raise ValueError("the nested model pairs an any-view network with a monocular metric one")

    @property
    def patch_size(self) -> int:
        return self.da3.patch_size

    predicts_cameras = True

    def freeze_input_size(self, height: int, width: int, num_views: int = 1) -> None:
        """Fix the input size of both networks (see :meth:`DepthAnything3Net.freeze_input_size`)."""
        self.da3.freeze_input_size(height, width, num_views)
        self.da3_metric.freeze_input_size(height, width, num_views)

    def unfreeze_input_size(self) -> None:
        self.da3.unfreeze_input_size()
        self.da3_metric.unfreeze_input_size()

    @property
    def predicts_gaussians(self) -> bool:
        return self.da3.predicts_gaussians

    def forward(
        self,
        images: Tensor,
        extrinsics: Optional[Tensor] = None,
        intrinsics: Optional[Tensor] = None,
        export_feat_layers: Sequence[int] = (),
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        ray_decomposition: str = "qr",
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    ) -> DA3Output:
        """As :meth:`DepthAnything3Net.forward`; depth, camera translations and Gaussians come out in metres."""
        out = self.da3(
            images, extrinsics, intrinsics, export_feat_layers=export_feat_layers, infer_gs=infer_gs,
            use_ray_pose=use_ray_pose, ref_view_strategy=ref_view_strategy, ray_decomposition=ray_decomposition,
            chunk_size=chunk_size,
        )  # fmt: skip
        metric = self.da3_metric(images, chunk_size=chunk_size)
        with float32_region(images.device):
            aligned = align_to_metric(out.depth, out.depth_conf, out.extrinsics, out.intrinsics, metric.depth,
                                      metric.sky)  # fmt: skip
        out.depth, out.depth_conf = aligned.depth, aligned.depth_conf
        out.extrinsics, out.metric_scale = aligned.extrinsics[..., :3, :], aligned.scale
        if out.gaussians is not None:  # the Gaussians live in the same world: metres too (upstream leaves them)
            out.gaussians = scale_gaussians(out.gaussians, aligned.scale)
        out.sky = metric.sky
        return out


def build_da3_network(name: str) -> nn.Module:
    """The network of an upstream configuration name ("da3-small", ..., "da3nested-giant-large")."""
    if name == "da3nested-giant-large":
        return NestedDepthAnything3Net(DA3_CONFIGS["da3-giant"], DA3_CONFIGS["da3metric-large"])
    return DepthAnything3Net(da3_config(name))


def da3_config(name: str) -> DA3NetConfig:
    """The configuration of the network that a job of ``name`` asks for backbone features and Gaussians (the
    any-view half of the nested model): what it can give is known from it before any weights are built.

    >>> da3_config("da3-small").backbone.encoder.depth, da3_config("da3nested-giant-large").gaussian_head is None
    (12, False)
    """
    if name == "da3nested-giant-large":
        return DA3_CONFIGS["da3-giant"]
    if name not in DA3_CONFIGS:
        known = ", ".join([*DA3_CONFIGS, "da3nested-giant-large"])
        raise InputError(f"unknown DA3 configuration {name!r}; expected one of {known}")
    return DA3_CONFIGS[name]


__all__ = [
    "DA3_CONFIGS",
    "DA3NetConfig",
    "DA3Output",
    "DepthAnything3Net",
    "NestedDepthAnything3Net",
    "build_da3_network",
    "da3_config",
    "fill_sky",
]
