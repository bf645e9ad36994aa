"""``DepthAnything3`` with upstream's constructor, ``from_pretrained`` and ``inference`` signature."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from anydepth.checkpoints import convert_da3_state_dict, load_strict, read_state_dict
from anydepth.errors import InputError, WeightsError
from anydepth.geometry.cameras import as_homogeneous
from anydepth.models.da3.network import DA3Output, build_da3_network
from anydepth.pipelines.da3_preprocess import upstream_processed_images_of
from anydepth.pipelines.runtime import PRECISIONS, precision_policy, resolve_precision, tune_allocator
from anydepth.prediction import Prediction
from anydepth.presets import PRESETS, Preset, preset_for_arch

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
_ARCHS = sorted({p.arch for p in PRESETS.values() if p.arch is not None})


def _preset_for(model_name: str) -> Preset:
    preset = preset_for_arch(model_name)
    if preset is not None:
        return preset
    raise InputError(f"unknown DA3 model_name {model_name!r}; expected one of {', '.join(_ARCHS)}")


class DepthAnything3(nn.Module):
    """Drop-in for ``depth_anything_3.api.DepthAnything3``.

    Args:
        model_name: upstream configuration name: "da3-small", "da3-base", "da3-large", "da3-giant",
            "da3mono-large", "da3metric-large" or "da3nested-giant-large". The network starts untrained, as
            upstream's constructor does; :meth:`from_pretrained` loads a checkpoint.
        precision: "auto" (default: bf16 where the hardware runs it natively), "fp32" (reproduces upstream's
            float32 network), "bf16" or "fp16".

    Example:
        >>> model = DepthAnything3.from_pretrained("depth-anything/DA3-SMALL")  # doctest: +SKIP
        >>> pred = model.inference(["a.jpg", "b.jpg"], export_dir="out", export_format="mini_npz-glb")  # doctest: +SKIP
    """

    def __init__(self, model_name: str = "da3-large", precision: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.model_name = model_name
        self.preset = _preset_for(model_name)
        self.precision = precision
        self.model = build_da3_network(model_name).eval()
        tune_allocator("keep")  # an entry point for repeated inference at one size

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, Path],
        precision: str = "auto",
        revision: Optional[str] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> DepthAnything3:
        """A model from a hub repo id ("depth-anything/DA3-SMALL") or a local folder with config.json and
        model.safetensors (the layout upstream saves)."""
        folder = Path(pretrained_model_name_or_path).expanduser()
        if folder.is_dir():
            config_path, weights_path = folder / CONFIG_NAME, folder / SAFETENSORS_NAME
            if not weights_path.is_file():
                raise WeightsError(f"{folder}: no {SAFETENSORS_NAME} in the folder")
        else:
            from anydepth.hub import download
            from anydepth.presets import WeightsSpec

            repo = str(pretrained_model_name_or_path)
            options = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
            config_path = download(WeightsSpec(repo, CONFIG_NAME, "see the model card"), **options)
            weights_path = download(WeightsSpec(repo, SAFETENSORS_NAME, "see the model card"), **options)
        model_name = kwargs.pop("model_name", None) or _read_model_name(config_path)
        model = cls(model_name=model_name, precision=precision)
        load_strict(model.model, convert_da3_state_dict(read_state_dict(weights_path)), source=str(weights_path))
        return model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pipeline(self):
        from anydepth.pipelines.multiview import MultiViewModel

        return MultiViewModel(self.model, self.preset, self.device, resolve_precision(self.precision, self.device))

    @torch.inference_mode()
    def forward(
        self,
        image: torch.Tensor,
        extrinsics: Optional[torch.Tensor] = None,
        intrinsics: Optional[torch.Tensor] = None,
        export_feat_layers: Optional[Sequence[int]] = None,
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
    ) -> DA3Output:
        """The network on (B, N, 3, H, W) normalised images, under the chosen precision (upstream ray-pose split)."""
        policy = precision_policy(resolve_precision(self.precision, image.device))
        policy.apply(self.model)
        with policy.autocast(image.device):
            return self.model(
                image,
                extrinsics,
                intrinsics,
                export_feat_layers=list(export_feat_layers or ()),
                infer_gs=infer_gs,
                use_ray_pose=use_ray_pose,
                ref_view_strategy=ref_view_strategy,
                ray_decomposition="ql",
            )

    def inference(
        self,
        image: Sequence[Any],
        extrinsics: Optional[np.ndarray] = None,
        intrinsics: Optional[np.ndarray] = None,
        align_to_input_ext_scale: bool = True,
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        render_exts: Optional[np.ndarray] = None,
        render_ixts: Optional[np.ndarray] = None,
        render_hw: Optional[Tuple[int, int]] = None,
        process_res: int = 504,
        process_res_method: str = "upper_bound_resize",
        export_dir: Optional[Union[str, Path]] = None,
        export_format: str = "mini_npz",
        export_feat_layers: Optional[Sequence[int]] = None,
        conf_thresh_percentile: float = 40.0,
        num_max_points: int = 1_000_000,
        show_cameras: bool = True,
        feat_vis_fps: int = 15,
        export_kwargs: Optional[Dict[str, Dict[str, Any]]] = None,
    ) -> Prediction:
        """Run the model on the views of one scene and optionally export, as upstream's ``inference``.

        Unlike upstream, export formats and their options (gs_video's trajectory and render cameras included) are
        checked before inference starts, the caller's arrays are never modified, COLMAP cameras come out at the
        original image sizes, and ``gs_ply`` writes the PLY only (upstream also renders a gs_video, which needs
        gsplat). ``render_exts`` ((N, 3|4, 4) world-to-camera), ``render_ixts`` ((N, 3, 3) pixel intrinsics) and
        ``render_hw`` ((height, width)) are the cameras of the ``gs_video`` export; it renders with gsplat on CUDA
        where installed and with our PyTorch rasteriser elsewhere. As upstream, the extrinsics are (N, 4, 4) when known
        poses are given with ``align_to_input_ext_scale=False`` (the exports keep (N, 3, 4)).
        """
        from anydepth.export.formats import check_export_options, export, parse_export_format

        images = list(image) if isinstance(image, (list, tuple)) else [image]
        formats: Tuple[str, ...] = ()
        options: Dict[str, Dict[str, Any]] = {}
        if export_dir is not None:
            formats = parse_export_format(
                export_format,
                depth_kind=self.preset.depth_kind,
                has_cameras=self.model.predicts_cameras or extrinsics is not None,
                num_views=len(images),
                has_features=bool(export_feat_layers),
                has_gaussians=infer_gs and self.model.predicts_gaussians,
            )
            options = {name: dict((export_kwargs or {}).get(name, {})) for name in formats}
            if "gs_video" in options:  # as upstream, the explicit arguments win over export_kwargs
                given = {"extrinsics": render_exts, "intrinsics": render_ixts, "out_image_hw": render_hw}
                options["gs_video"].update({k: v for k, v in given.items() if v is not None})
            check_export_options(formats, {k: v for k, v in options.items() if v})  # before inference
        if "gs_video" not in formats and any(v is not None for v in (render_exts, render_ixts, render_hw)):
            raise InputError("render_exts, render_ixts and render_hw are the gs_video export's cameras; add gs_video "
                             "to export_format (with infer_gs=True)")  # fmt: skip
        prediction = self._pipeline().infer(
            images,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            align_to_input_ext_scale=align_to_input_ext_scale,
            infer_gs=infer_gs,
            use_ray_pose=use_ray_pose,
            ref_view_strategy=ref_view_strategy,
            process_res=process_res,
            process_res_method=process_res_method,
            export_feat_layers=export_feat_layers,
            ray_decomposition="ql",
        )
        if prediction.processed_images is not None and prediction.processed_images.dtype == np.uint8:
            # upstream rebuilds them from the normalised tensor and truncates: 20-33% of the values one grey
            # level darker; its exports (npz image, GLB colours, depth_vis) show those
            prediction.processed_images = upstream_processed_images_of(prediction.processed_images)
        if export_dir is not None:
            if "glb" in options:
                options["glb"].update(
                    conf_thresh_percentile=conf_thresh_percentile, num_max_points=num_max_points,
                    show_cameras=show_cameras,
                )  # fmt: skip
            # as upstream, the explicit arguments win over the same options in export_kwargs
            if "feat_vis" in options:
                options["feat_vis"]["fps"] = feat_vis_fps
            if "colmap" in options:
                options["colmap"]["conf_thresh_percentile"] = conf_thresh_percentile
                if all(isinstance(i, (str, Path)) for i in images):
                    options["colmap"]["image_paths"] = [str(i) for i in images]
            export(prediction, export_dir, "-".join(formats), **{k: v for k, v in options.items() if v})
        if extrinsics is not None and not align_to_input_ext_scale:
            # upstream hands the aligned poses back as (N, 4, 4) in this one case ((N, 3, 4) everywhere else)
            prediction.extrinsics = as_homogeneous(torch.from_numpy(prediction.extrinsics)).numpy()
        return prediction


def _read_model_name(config_path: Path) -> str:
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{config_path}: cannot read the model config ({exc})") from None
    name = config.get("model_name") if isinstance(config, dict) else None
    if not isinstance(name, str):
        raise WeightsError(f"{config_path}: no model_name in the config; pass model_name=... to from_pretrained")
    return name
