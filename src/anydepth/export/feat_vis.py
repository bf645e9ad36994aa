"""The `feat_vis` export: backbone features reduced to RGB by PCA, beside each processed image, plus a video."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List

import numpy as np

from anydepth.errors import InputError, ShapeError
from anydepth.export.depth_maps import save_image
from anydepth.io.atomic import PathLike
from anydepth.io.video import VideoWriter
from anydepth.prediction import Prediction

logger = logging.getLogger(__name__)

FEAT_VIS_DIR = Path("feat_vis")
FEATURE_PREFIX = "feat_layer_"
"""``prediction.aux`` keys holding (N, h, w, D) features; the key is also the layer's folder and video name."""
DEFAULT_CLIP_PERCENT = 10.0
DEFAULT_FPS = 15.0
_DENOM_EPS = 1e-4  # upstream's floor on the percentile range, so a flat component does not blow up


def feature_layers(prediction: Prediction) -> Dict[str, np.ndarray]:
    """The exported feature layers of a prediction, in ``aux`` order: ``{"feat_layer_3": (N, h, w, D), ...}``."""
    return {name: value for name, value in prediction.aux.items() if name.startswith(FEATURE_PREFIX)}


def pca_rgb(features: np.ndarray, clip_percent: float = DEFAULT_CLIP_PERCENT) -> np.ndarray:
    """Project features on their first three principal components and scale each to 0..1, as upstream DA3.

    One PCA (mean and basis) is fitted jointly over every pixel of every view, so a colour means the same
    feature in all views, and each component is clipped to its ``clip_percent`` .. ``100 - clip_percent``
    percentiles over all views before scaling (upstream's ``PCARGBVisualizer(basis_mode="fixed",
    percentile_mode="global")``). Upstream uses a randomised SVD whose signs are arbitrary; here the basis is
    exact and each component's sign is fixed so that its largest loading is positive. Non-finite features are
    replaced as upstream does (NaN by 0, +-inf by +-1e6).

    Args:
        features: (N, h, w, D) float features.
        clip_percent: percentage clipped at each end of every component, 0 <= clip_percent < 50.

    Returns:
        rgb: (N, h, w, 3) float32 in [0, 1]; ``features`` is not modified.
    """
    features = np.asarray(features)
    if features.ndim != 4 or features.size == 0:
        raise ShapeError(f"feature visualisation needs (N, h, w, D) features, got shape {features.shape}")
    if not 0.0 <= clip_percent < 50.0:
        raise InputError(f"feat_vis clip_percent must be in [0, 50), got {clip_percent}")
    N, h, w, D = features.shape
    X = np.nan_to_num(features.reshape(-1, D).astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6)  # a copy
    X -= X.mean(axis=0)
    # the principal axes are the top eigenvectors of the scatter matrix (D x D: small next to the pixel count)
    _, eigenvectors = np.linalg.eigh(X.T @ X)
    basis = eigenvectors[:, ::-1][:, :3]  # (D, k), k = min(D, 3), largest variance first
    largest = basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])]
    basis = basis * np.where(largest < 0, -1.0, 1.0)
    components = X @ basis  # (N*h*w, k)
    if components.shape[1] < 3:  # fewer than three feature channels: the missing colours stay 0
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    low, high = np.percentile(components, [clip_percent, 100.0 - clip_percent], axis=0)
    scaled = (np.clip(components, low, high) - low) / np.maximum(high - low, _DENOM_EPS)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32).reshape(N, h, w, 3)


def _upsample_nearest(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w, C) -> (N, height, width, C) by nearest neighbour, picking source pixels as cv2.INTER_NEAREST."""
    rows = np.minimum((np.arange(height) * (rgb.shape[1] / height)).astype(np.intp), rgb.shape[1] - 1)
    cols = np.minimum((np.arange(width) * (rgb.shape[2] / width)).astype(np.intp), rgb.shape[2] - 1)
    return rgb[:, rows[:, None], cols[None, :]]


def check_feat_vis_input(prediction: Prediction) -> None:
    """Raise an InputError unless the prediction holds processed images and (N, h, w, D) features for every view."""
    layers = feature_layers(prediction)
    if not layers:
        raise InputError(
            "feat_vis export needs features in prediction.aux; run the model with export_feat_layers=[...]"
        )
    images = prediction.processed_images
    if images is None:
        raise InputError("feat_vis export needs prediction.processed_images")
    if images.ndim != 4 or images.shape[0] != len(prediction) or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ShapeError(f"feat_vis needs processed_images (N, h, w, 3) uint8, got {images.shape} {images.dtype}")
    for name, value in layers.items():
        shape = np.shape(value)
        if len(shape) != 4 or shape[0] != len(prediction):
            raise ShapeError(f"feat_vis: aux[{name!r}] must be ({len(prediction)}, h, w, D), got shape {shape}")


def export_feat_vis(
    prediction: Prediction,
    export_dir: PathLike,
    fps: float = DEFAULT_FPS,
    clip_percent: float = DEFAULT_CLIP_PERCENT,
    jpeg_quality: int = 95,
) -> List[Path]:
    """Write, for every ``aux["feat_layer_<i>"]``, ``<export_dir>/feat_vis/feat_layer_<i>/000000.jpg``... and the
    video ``<export_dir>/feat_vis/feat_layer_<i>.mp4``, as upstream DA3.

    Each frame is the processed image with, right of it (no gap), the layer's :func:`pca_rgb` colours truncated
    to uint8 and upsampled by nearest neighbour to the image size. The video holds the same frames at ``fps``
    (upstream's ``feat_vis_fps``), H.264 where FFmpeg has it; it is encoded from the frames, not the JPEGs.

    Args:
        prediction: processed_images (N, H, W, 3) uint8 and at least one ``aux["feat_layer_<i>"]`` (N, h, w, D);
            never modified.
        export_dir: the export folder; created if missing.
        fps: frame rate of the videos.
        clip_percent: see :func:`pca_rgb`.
        jpeg_quality: 0-100.

    Returns:
        The paths written: per layer the N frames, then its video.

    Raises:
        InputError: no features (run with ``export_feat_layers``) or no processed images.
    """
    check_feat_vis_input(prediction)
    images = np.asarray(prediction.processed_images)
    height, width = images.shape[1:3]
    folder = Path(export_dir) / FEAT_VIS_DIR
    paths: List[Path] = []
    for name, features in feature_layers(prediction).items():
        colors = (pca_rgb(features, clip_percent) * 255.0).astype(np.uint8)  # truncation, as upstream
        frames = np.concatenate([images, _upsample_nearest(colors, height, width)], axis=2)  # (N, H, 2W, 3)
        paths.extend(
            save_image(folder / name / f"{index:06d}.jpg", frame, jpeg_quality) for index, frame in enumerate(frames)
        )
        with VideoWriter(folder / f"{name}.mp4", fps=fps) as writer:
            for frame in frames:
                writer.write(frame)
        paths.append(writer.path)
        logger.info("wrote feature visualisation of %s to %s", name, folder)
    return paths
