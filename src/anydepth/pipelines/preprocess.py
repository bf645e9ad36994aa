"""Image preprocessing of the Depth Anything family: aspect-keeping resize to a multiple of the patch, normalisation."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from anydepth.errors import ShapeError


def _snap(x: float, multiple: int, min_val: int) -> int:
    # np.round rounds half to even; the reference resize does the same, and exact sizes depend on it
    y = int(np.round(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def lower_bound_size(height: int, width: int, input_size: int, multiple: int = 14) -> Tuple[int, int]:
    """Processing size (h, w) that keeps the aspect ratio with both sides >= ``input_size``, snapped to ``multiple``.

    This is Depth Anything V2's ``infer_image`` resize ("lower_bound", ensure_multiple_of=14).

    >>> lower_bound_size(480, 640, 518)
    (518, 686)
    """
    if height <= 0 or width <= 0:
        raise ShapeError(f"image size {height}x{width} is empty")
    scale = max(input_size / height, input_size / width)
    return _snap(scale * height, multiple, input_size), _snap(scale * width, multiple, input_size)


def normalize_resize(
    image: np.ndarray,
    size: Tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """(H, W, 3) RGB uint8 or float in [0, 1] -> (3, h, w) float32, bicubically resized and normalised.

    The resize runs on floats in [0, 1], as the reference does, so no rounding to 8 bits happens in between.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ShapeError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    img = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32, copy=False)
    h, w = size
    if (h, w) != img.shape[:2]:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    img = (img - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1))
