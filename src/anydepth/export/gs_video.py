"""The `gs_video` export: DA3's 3D Gaussians rendered along a camera path into ``gs_video/<name>.mp4``.

Rendering goes through gsplat where it is installed and the Gaussians are on a CUDA device (upstream's only way);
elsewhere through our PyTorch rasteriser (:mod:`anydepth.geometry.gaussians`), which follows gsplat's formulas
and thresholds, so the video can be made on a CPU. ``renderer`` forces one or the other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from anydepth.errors import InputError, MissingDependencyError, ShapeError
from anydepth.export.depth_maps import colormap_lut
from anydepth.export.gs_ply import check_gs_input
from anydepth.geometry.camera_paths import TRAJECTORIES, camera_path
from anydepth.geometry.cameras import affine_inverse, as_homogeneous
from anydepth.geometry.gaussians import render_gaussians
from anydepth.io.atomic import PathLike
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

GS_VIDEO_DIR = Path("gs_video")
VIDEO_QUALITY = {"low": (28, "veryfast"), "medium": (23, "medium"), "high": (18, "slow")}
"""Upstream's presets: x264 CRF and encoder preset."""
SHOW = ("rgb", "depth", "both")
LAYOUTS = ("hcat", "vcat")
COLOR_MODES = ("RGB+ED", "RGB+D")
RENDERERS = ("auto", "gsplat", "torch")


@dataclass
class RenderCameras:
    """Cameras a user gives for the video instead of the predicted ones (upstream's ``render_exts``,
    ``render_ixts``, ``render_hw``); each may be None.

    Attributes:
        extrinsics: (V, 4, 4) float32 world-to-camera, OpenCV, in the prediction's world and units.
        intrinsics: (V, 3, 3) float32 pixel intrinsics for ``hw`` (or for the prediction's size).
        hw: (height, width) of the video frames.
    """

    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None
    hw: Optional[Tuple[int, int]] = None


def check_render_cameras(extrinsics: Any = None, intrinsics: Any = None, hw: Any = None) -> RenderCameras:
    """Check user render cameras once, before inference: shapes, finiteness and a usable size.

    Args:
        extrinsics: (V, 3, 4) or (V, 4, 4) world-to-camera (a (1, V, ...) batch of one is accepted, as upstream's
            "b v 4 4").
        intrinsics: (V, 3, 3) pixel intrinsics, or (1, V, 3, 3).
        hw: (height, width).

    Raises:
        ShapeError / InputError: one line naming the argument and the shape it needs.
    """
    cams = RenderCameras()
    if extrinsics is not None:
        ext = _as_tensor(extrinsics, "render_exts")
        if ext.dim() == 4 and ext.shape[0] == 1:
            ext = ext[0]
        if ext.dim() != 3 or ext.shape[1:] not in ((3, 4), (4, 4)) or ext.shape[0] < 1:
            raise ShapeError(f"render_exts must be (N, 3, 4) or (N, 4, 4) world-to-camera, got {tuple(ext.shape)}")
        cams.extrinsics = as_homogeneous(ext)
    if intrinsics is not None:
        ixt = _as_tensor(intrinsics, "render_ixts")
        if ixt.dim() == 4 and ixt.shape[0] == 1:
            ixt = ixt[0]
        if ixt.dim() != 3 or ixt.shape[1:] != (3, 3) or ixt.shape[0] < 1:
            raise ShapeError(f"render_ixts must be (N, 3, 3) pixel intrinsics, got {tuple(ixt.shape)}")
        if not bool((ixt[:, 0, 0] > 0).all() and (ixt[:, 1, 1] > 0).all()):
            raise InputError("render_ixts need positive focal lengths (fx, fy)")
        cams.intrinsics = ixt
    if (
        cams.extrinsics is not None
        and cams.intrinsics is not None
        and len(cams.intrinsics) not in (1, len(cams.extrinsics))
    ):
        raise ShapeError(
            f"render_ixts has {len(cams.intrinsics)} cameras, render_exts {len(cams.extrinsics)}; give one or the "
            "same number"
        )
    if hw is not None:
        try:
            height, width = (int(v) for v in hw)
        except (TypeError, ValueError):
            raise InputError(f"render_hw must be (height, width), got {hw!r}") from None
        if not (0 < height <= 8192 and 0 < width <= 8192):
            raise InputError(f"render_hw must be two sizes from 1 to 8192, got {hw!r}")
        cams.hw = (height, width)
    return cams


def check_gs_video_options(
    trj_mode: str = "extend",
    show: str = "both",
    vis_depth: Optional[str] = "hcat",
    video_quality: str = "high",
    fps: float = 24,
    renderer: str = "auto",
    color_mode: str = "RGB+ED",
) -> None:
    """Refuse option values no video can be made with, before inference (one line each)."""
    if trj_mode not in TRAJECTORIES:
        raise InputError(f"unknown gs_video trajectory {trj_mode!r}; choose one of {', '.join(TRAJECTORIES)}")
    if show not in SHOW:
        raise InputError(f"gs_video show must be one of {', '.join(SHOW)}, not {show!r}")
    if vis_depth is not None and vis_depth not in LAYOUTS:
        raise InputError(f"gs_video vis_depth must be 'hcat', 'vcat' or None, not {vis_depth!r}")
    if video_quality not in VIDEO_QUALITY:
        raise InputError(f"gs_video video_quality must be one of {', '.join(VIDEO_QUALITY)}, not {video_quality!r}")
    if not float(fps) > 0:
        raise InputError(f"gs_video fps must be positive, not {fps!r}")
    if renderer not in RENDERERS:
        raise InputError(f"gs_video renderer must be one of {', '.join(RENDERERS)}, not {renderer!r}")
    if color_mode not in COLOR_MODES:
        raise InputError(f"gs_video color_mode must be one of {', '.join(COLOR_MODES)}, not {color_mode!r}")


def export_gs_video(
    prediction: Prediction,
    export_dir: PathLike,
    trj_mode: str = "extend",
    extrinsics: Any = None,
    intrinsics: Any = None,
    out_image_hw: Optional[Sequence[int]] = None,
    show: str = "both",
    vis_depth: Optional[str] = "hcat",
    video_quality: str = "high",
    fps: float = 24,
    output_name: Optional[str] = None,
    renderer: str = "auto",
    color_mode: str = "RGB+ED",
    chunk_size: Optional[int] = 4,
    enable_tqdm: bool = False,
) -> Path:
    """Render ``prediction.gaussians`` along a camera path and write ``gs_video/<name>.mp4`` (upstream's export).

    The path goes through the predicted cameras, or through ``extrinsics`` / ``intrinsics`` where given (upstream's
    ``render_exts`` / ``render_ixts``, in the prediction's world and units: metres for the nested model, whose
    Gaussians are metric too). A single camera always gets the "wander" path, as upstream.

    Differences from upstream, on purpose: the principal point of the intrinsics is used (upstream centres it);
    with ``out_image_hw`` but no ``intrinsics``, the predicted intrinsics are rescaled to that size (upstream reads
    them as if they were for it); the depth colours use the whole video's range in one pass.

    Args:
        prediction: a DA3 prediction with Gaussians (``infer_gs=True``).
        export_dir: the export folder.
        trj_mode: one of "original", "smooth", "interpolate", "interpolate_smooth", "wander", "dolly_zoom",
            "extend" (see :func:`anydepth.geometry.camera_paths.camera_path`).
        extrinsics: (N, 3|4, 4) world-to-camera to render from instead of the predicted cameras.
        intrinsics: (N, 3, 3) (or one) pixel intrinsics for the frame size.
        out_image_hw: (height, width) of the frames; default: the prediction's size.
        show: "rgb", "depth" (colourised expected depth) or "both".
        vis_depth: how "both" is laid out: "hcat" (side by side) or "vcat" (stacked); None means RGB only, as
            upstream's ``vis_depth=None``.
        video_quality: "low", "medium" or "high" (x264 CRF 28 / 23 / 18, presets veryfast / medium / slow).
        fps: frame rate (upstream: 24).
        output_name: file name without ".mp4"; default ``0000_<trj_mode>``.
        renderer: "auto" (gsplat on CUDA where installed, else ours), "gsplat" or "torch".
        color_mode: "RGB+ED" (depth normalised by the accumulated alpha) or "RGB+D" (not normalised).
        chunk_size: frames rendered per renderer call.
        enable_tqdm: show a progress bar.

    Returns:
        The path written.
    """
    check_gs_input(prediction, "gs_video")
    check_gs_video_options(trj_mode, show, vis_depth, video_quality, fps, renderer, color_mode)
    cams = check_render_cameras(extrinsics, intrinsics, out_image_hw)
    gaussians = prediction.gaussians
    if gaussians.means.shape[0] != 1:
        raise InputError("gs_video renders one scene at a time (batch size 1)")
    device = gaussians.means.device
    pred_h, pred_w = prediction.depth.shape[1:]
    height, width = cams.hw if cams.hw is not None else (pred_h, pred_w)
    if cams.extrinsics is not None:
        w2c = cams.extrinsics
    elif prediction.extrinsics is not None:
        w2c = as_homogeneous(torch.from_numpy(np.asarray(prediction.extrinsics, np.float32)))
    else:
        raise InputError("gs_video needs cameras: the prediction has none; pass render_exts")
    if cams.intrinsics is not None:
        ks = cams.intrinsics.expand(len(w2c), 3, 3) if len(cams.intrinsics) == 1 else cams.intrinsics
    elif prediction.intrinsics is not None:
        ks = torch.from_numpy(np.asarray(prediction.intrinsics, np.float32)).clone()
        ks[:, 0] *= width / pred_w
        ks[:, 1] *= height / pred_h
        if len(ks) != len(w2c):
            ks = ks[:1].expand(len(w2c), 3, 3)
    else:
        raise InputError("gs_video needs intrinsics: the prediction has none; pass render_ixts")
    if len(ks) != len(w2c):
        raise ShapeError(f"render_ixts has {len(ks)} cameras for {len(w2c)} views; give one or one per view")
    path_c2w, path_ks = camera_path(trj_mode, affine_inverse(w2c.float()), ks.float())
    frames_w2c = affine_inverse(path_c2w)
    render = _pick_renderer(renderer, device)
    logger.info("gs_video: %d frames of %dx%d along %r with %s", len(frames_w2c), width, height, trj_mode, render)

    colors, depths = [], []
    step = max(1, int(chunk_size or len(frames_w2c)))
    progress = _progress(range(0, len(frames_w2c), step), enable_tqdm)
    for start in progress:
        c, d = _render_frames(render, gaussians, frames_w2c[start : start + step], path_ks[start : start + step],
                              width, height, color_mode)  # fmt: skip
        colors.append((c.clamp(0, 1) * 255).to(torch.uint8))  # 1 byte per value until the video is written
        depths.append(d)
    rgb = torch.cat(colors).numpy()  # (F, H, W, 3) uint8
    depth = torch.cat(depths)  # (F, H, W); its colours need the whole video's range

    from anydepth.io.video import VideoWriter

    if vis_depth is None and show == "both":
        show = "rgb"
    name = output_name if output_name is not None else f"0000_{trj_mode}"
    path = Path(export_dir) / GS_VIDEO_DIR / f"{name}.mp4"
    crf, speed = VIDEO_QUALITY[video_quality]
    depth_colors = _depth_colors(depth) if show != "rgb" else None
    with VideoWriter(path, fps=float(fps), quality=crf, speed=speed) as writer:
        for i in range(len(rgb)):
            if show == "rgb":
                frame = rgb[i]
            elif show == "depth":
                frame = depth_colors[i]
            else:
                frame = np.concatenate([rgb[i], depth_colors[i]], axis=1 if vis_depth == "hcat" else 0)
            writer.write(frame)
    logger.info("wrote %s: %d frames", path, len(rgb))
    return path


def _as_tensor(value: Any, name: str) -> Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float32)) if not isinstance(value, Tensor) else value
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of numbers") from None
    tensor = tensor.detach().float().cpu()
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} holds non-finite values")
    return tensor


def gsplat_available(device: torch.device) -> bool:
    """Whether gsplat can render here: installed, and the Gaussians on a CUDA device."""
    if device.type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def _pick_renderer(renderer: str, device: torch.device) -> str:
    if renderer == "torch":
        return "torch"
    if renderer == "gsplat":
        if not gsplat_available(device):
            raise MissingDependencyError(
                "renderer='gsplat' needs gsplat installed and the Gaussians on a CUDA device; use renderer='torch'"
            )
        return "gsplat"
    return "gsplat" if gsplat_available(device) else "torch"


def _render_frames(
    renderer: str, gaussians: Any, w2c: Tensor, ks: Tensor, width: int, height: int, color_mode: str
) -> Tuple[Tensor, Tensor]:
    """(F, H, W, 3) colours and (F, H, W) depth of one chunk of frames, black background."""
    device = gaussians.means.device
    means, quats = gaussians.means[0].float(), gaussians.rotations[0].float()
    scales, opacities = gaussians.scales[0].float(), gaussians.opacities[0].float()
    harmonics = gaussians.harmonics[0].float()  # (N, 3, d_sh)
    w2c, ks = w2c.float().to(device), ks.float().to(device)
    if renderer == "gsplat":
        from gsplat import rasterization

        degree = math.isqrt(harmonics.shape[-1]) - 1
        out, _, _ = rasterization(
            means=means, quats=quats, scales=scales, opacities=opacities,
            colors=harmonics.transpose(1, 2).contiguous(), viewmats=w2c, Ks=ks, width=width, height=height,
            sh_degree=degree, render_mode=color_mode, packed=False,
        )  # fmt: skip
        return out[..., :3].float().cpu(), out[..., 3].float().cpu()
    out = render_gaussians(means, quats, scales, opacities, harmonics, w2c, ks, width, height)
    depth = out.depth if color_mode == "RGB+ED" else out.depth * out.alpha
    return out.colors.cpu(), depth.cpu()


def _depth_colors(depth: Tensor) -> np.ndarray:
    """(F, H, W, 3) uint8: log depth between the 1st percentile of the positive values and the 99th of all, over
    the whole video, in matplotlib's Spectral (near red, far blue), as upstream's ``vis_depth_map_tensor``."""
    flat = depth.reshape(-1).float()
    sample = flat[:: max(1, flat.numel() // 4_000_000)]  # quantile of a strided sample: bounded memory and time
    positive = sample[sample > 0]
    far = torch.log(torch.quantile(sample, 0.99).clamp_min(1e-12))
    near = torch.log(torch.quantile(positive, 0.01)) if positive.numel() else torch.zeros(())
    span = (far - near) if float(far - near) != 0 else torch.ones(())
    t = ((torch.log(depth.clamp_min(1e-12)) - near) / span).clamp(0, 1)
    index = torch.clamp((t * 256).long(), max=255).numpy()
    spectral = colormap_lut("spectral_r")[::-1]  # Spectral: red at 0, blue at 1
    return spectral[index]


def _progress(iterable: Any, enable: bool) -> Any:
    if not enable:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc="Rendering novel views", leave=False)
