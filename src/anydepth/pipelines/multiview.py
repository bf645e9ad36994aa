"""Depth Anything 3 pipeline: views of one scene in, depth, confidence and cameras out (and pose conditioning)."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anydepth.errors import InputError, ShapeError
from anydepth.geometry.depth_alignment import apply_metric_scaling
from anydepth.geometry.sim3 import Sim3, align_to_input_extrinsics, normalize_extrinsics
from anydepth.models.da3.gaussian_head import Gaussians, scale_gaussians, transform_gaussians
from anydepth.pipelines.da3_preprocess import DA3Inputs, preprocess_da3
from anydepth.pipelines.runtime import precision_policy
from anydepth.prediction import Prediction
from anydepth.presets import Preset

logger = logging.getLogger(__name__)


def _to_numpy(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else t.detach().float().cpu().numpy()


class MultiViewModel:
    """A loaded DA3 network with its preprocessing, pose conditioning, alignment, device and precision.

    Made by :func:`anydepth.load_model` for the ``da3*`` presets. One call of :meth:`infer` treats its images as
    views of ONE scene; run unrelated images through separate calls (or :class:`MonoDepthModel`-style loops).
    """

    def __init__(self, net: nn.Module, preset: Preset, device: torch.device, precision: str) -> None:
        self.net = net.eval()
        self.preset = preset
        self.device = device
        self.precision = precision
        self.precision_policy = precision_policy(precision)
        self.precision_policy.apply(self.net)

    @property
    def predicts_cameras(self) -> bool:
        return bool(getattr(self.net, "predicts_cameras", False))

    @property
    def predicts_gaussians(self) -> bool:
        """Whether the network has a Gaussian head (``infer_gs=True`` works)."""
        return bool(getattr(self.net, "predicts_gaussians", False))

    def __repr__(self) -> str:
        return f"MultiViewModel({self.preset.name!r}, device={self.device}, precision={self.precision!r})"

    def infer(
        self,
        images: Sequence[Any],
        extrinsics: Optional[np.ndarray] = None,
        intrinsics: Optional[np.ndarray] = None,
        align_to_input_ext_scale: bool = True,
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        process_res: int = 504,
        process_res_method: str = "upper_bound_resize",
        export_feat_layers: Optional[Sequence[int]] = None,
        output: str = "processed",
        ray_decomposition: str = "qr",
        reduce_on_decode: bool = False,
    ) -> Prediction:
        """Depth, confidence and cameras of the views of one scene.

        Views are read and brought to the processing size one at a time, so a scene of large files holds one of
        them at full size at once, never all (arrays the caller passes are the caller's).

        Args:
            images: paths, PIL images or RGB arrays; mixed sizes are centre-cropped to a common size.
            extrinsics: (S, 3|4, 4) known world-to-camera poses for pose conditioning (needs ``intrinsics``).
            intrinsics: (S, 3, 3) pixel intrinsics of the input images (also turns DA3METRIC output into metres).
            align_to_input_ext_scale: with known poses, report them and scale depth to their units (True), or
                report them moved into the prediction's frame and scale (False).
            infer_gs: also predict 3D Gaussians (DA3-GIANT / NESTED), returned in ``aux["gaussians"]``.
            use_ray_pose: cameras from the ray maps instead of the camera head.
            ref_view_strategy: "first", "middle", "saddle_balanced" or "saddle_sim_range".
            process_res, process_res_method: processing resolution and resize rule (see
                :func:`anydepth.pipelines.da3_preprocess.preprocess_da3`).
            export_feat_layers: backbone blocks whose features go to ``aux["feat_layer_{i}"]``.
            output: "processed" (the network's resolution, as upstream) or "input" (each view's own size; only
                where no crop was needed).
            ray_decomposition: "qr" (exact) or "ql" (upstream's) for ``use_ray_pose``.
            reduce_on_decode: decode JPEG files at a reduced scale, just above the processing size (less memory
                and time on large photos; pixels differ slightly from upstream's full decode, see
                :func:`~anydepth.pipelines.da3_preprocess.preprocess_da3`). Off by default; the servers turn it on.

        Returns:
            Prediction with depth (S, h, w), conf, extrinsics (S, 3, 4), intrinsics (S, 3, 3), sky, the
            processed images and aux.
        """
        if output not in ("processed", "input"):
            raise InputError(f"output must be 'processed' or 'input', not {output!r}")
        if extrinsics is not None and intrinsics is None:
            raise InputError("pose conditioning needs the intrinsics of the views as well as their extrinsics")
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if not images:
            raise InputError("no images to process")
        inputs = preprocess_da3(images, intrinsics, process_res, process_res_method, reduce_on_decode)
        S = inputs.images.shape[0]
        x = inputs.images[None].to(self.device)
        input_ext = cond_ext = cond_ixt = None
        if extrinsics is not None:
            input_ext = torch.as_tensor(np.asarray(extrinsics, dtype=np.float32))
            if input_ext.shape[0] != S:
                raise ShapeError(f"extrinsics has {input_ext.shape[0]} views, the images {S}")
            cond_ext = normalize_extrinsics(input_ext)[0][None].to(self.device)
            cond_ixt = torch.as_tensor(inputs.intrinsics)[None].to(self.device)
        policy = self.precision_policy
        policy.apply(self.net)  # a no-op unless another pipeline sharing the network applied its own since
        with torch.inference_mode(), policy.autocast(self.device):
            out = self.net(
                x,
                cond_ext,
                cond_ixt,
                export_feat_layers=list(export_feat_layers or ()),
                infer_gs=infer_gs,
                use_ray_pose=use_ray_pose,
                ref_view_strategy=ref_view_strategy,
                ray_decomposition=ray_decomposition,
            )
        depth = out.depth[0].float()
        pred_ext = None if out.extrinsics is None else out.extrinsics[0].float().cpu()
        pred_ixt = None if out.intrinsics is None else out.intrinsics[0].float().cpu()
        depth_kind = self.preset.depth_kind
        gaussians = out.gaussians
        if input_ext is not None and pred_ext is not None:
            aligned = align_to_input_extrinsics(pred_ext, input_ext, depth.cpu(), align_to_input_ext_scale)
            pred_ext, depth = aligned.extrinsics.float(), aligned.depth.float()
            pred_ixt = torch.as_tensor(inputs.intrinsics)  # the given cameras, at the processed size
            if gaussians is not None:
                gaussians = gaussians_in_reported_frame(
                    gaussians, out.gaussian_pose_scale, aligned.sim3, align_to_input_ext_scale
                )
        if self.preset.arch == "da3metric-large":
            if inputs.intrinsics is not None:
                depth = apply_metric_scaling(depth.cpu(), torch.as_tensor(inputs.intrinsics))
                pred_ixt = torch.as_tensor(inputs.intrinsics)
            else:
                logger.warning(
                    "%s: pass the intrinsics to get metres (metres = focal x output / 300)", self.preset.name
                )
                depth_kind = "depth"
        aux = {name: _to_numpy(feat[0]) for name, feat in out.aux.items()}
        if gaussians is not None:
            aux["gaussians"] = gaussians
            aux["gaussians_hw"] = tuple(out.depth.shape[-2:])
        pred = Prediction(
            depth=_to_numpy(depth),
            depth_kind=depth_kind,
            conf=None if out.depth_conf is None else _to_numpy(out.depth_conf[0]),
            extrinsics=_to_numpy(pred_ext),
            intrinsics=_to_numpy(pred_ixt),
            sky_score=None if out.sky is None else _to_numpy(out.sky[0]),
            processed_images=inputs.processed_images,
            aux=aux,
            scale_factor=None if out.metric_scale is None else float(out.metric_scale.reshape(-1)[0]),
        )
        return pred if output == "processed" else _to_input_resolution(pred, inputs)


def gaussians_in_reported_frame(
    gaussians: Gaussians, pose_scale: Optional[torch.Tensor], sim3: Sim3, to_input_frame: bool
) -> Gaussians:
    """Pose-conditioned Gaussians moved into the frame and units the prediction reports its cameras in.

    The network makes them in its predicted cameras' frame, scaled by the adapter's pose scale (upstream's
    Umeyama scale towards the given cameras, clamped to [1/3, 3]); the reported cameras are the given ones
    (``align_to_input_ext_scale=True``: depth divided by the fitted scale) or the given ones moved into the
    predicted frame (``False``). Upstream returns the Gaussians as made, so its multi-view splats sit off the
    cameras it reports; here the pose scale is undone, and for the given frame the inverse of the fitted
    similarity (``predicted = s R given + t``) is applied, as to the depth.
    """
    if pose_scale is not None:
        gaussians = scale_gaussians(gaussians, 1.0 / pose_scale.float())
    if to_input_frame:
        rotation = sim3.rotation.double().T
        scale = 1.0 / sim3.scale.double()
        translation = -(rotation @ sim3.translation.double()) * scale
        gaussians = transform_gaussians(
            gaussians, scale.reshape(1).float(), rotation[None].float(), translation[None].float()
        )
    return gaussians


def _to_input_resolution(pred: Prediction, inputs: DA3Inputs) -> Prediction:
    """Maps resized (not cropped) outputs back to the input size; intrinsics follow."""
    sizes = {tuple(int(v) for v in s) for s in inputs.original_sizes}
    if len(sizes) != 1 or np.any(inputs.crop_offsets) or np.any(inputs.resized_sizes != np.asarray(inputs.size)):
        raise InputError(
            "output='input' needs views of one size that were resized, not cropped; use output='processed' or "
            "process_res_method='upper_bound_resize' / 'lower_bound_resize' with same-size images"
        )
    H, W = sizes.pop()

    def up(a: Optional[np.ndarray], mode: str = "bilinear") -> Optional[np.ndarray]:
        if a is None:
            return None
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return F.interpolate(t, size=(H, W), mode=mode, **kwargs)[:, 0].numpy()

    images = None
    if pred.processed_images is not None:  # colours for the exporters, at the size of the maps
        images = np.stack([cv2.resize(im, (W, H), interpolation=cv2.INTER_LINEAR) for im in pred.processed_images])
    intrinsics = None
    if pred.intrinsics is not None:
        intrinsics = pred.intrinsics.copy()
        scale = np.stack([inputs.scales[:, 0], inputs.scales[:, 1]], axis=1)[:, :, None]  # (S, 2, 1)
        intrinsics[:, :2, :] = intrinsics[:, :2, :] / scale
    return Prediction(
        depth=up(pred.depth),
        depth_kind=pred.depth_kind,
        conf=up(pred.conf),
        extrinsics=pred.extrinsics,
        intrinsics=intrinsics,
        sky_score=up(pred.sky_score),
        scale_factor=pred.scale_factor,
        processed_images=images,
        aux=pred.aux,
    )
