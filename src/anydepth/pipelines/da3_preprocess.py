"""Depth Anything 3 preprocessing: bound resize, snap to the patch size, common centre crop, intrinsics, normalise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

from anydepth.errors import InputError, ShapeError
from anydepth.io.images import ImageSource, read_header, read_image

logger = logging.getLogger(__name__)

PATCH_SIZE = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROCESS_RES_METHODS = ("upper_bound_resize", "lower_bound_resize", "upper_bound_crop", "lower_bound_crop")
"""``upper_bound``: the long side becomes ``process_res``; ``lower_bound``: the short side does. ``_resize``
then resizes each side to the nearest multiple of 14; ``_crop`` centre-crops each side down to a multiple of 14."""


@dataclass(frozen=True)
class DA3Inputs:
    """Images ready for the DA3 network, and what maps its outputs back to the input images.

    A pixel ``(u, v)`` of the processed images sits at ``((u + crop_offsets[i, 1]) / scales[i, 0],
    (v + crop_offsets[i, 0]) / scales[i, 1])`` of input image ``i`` in the convention of the intrinsics
    (``K' = diag(sx, sy, 1) K`` with ``cx' = sx cx - left``, ``cy' = sy cy - top``), as upstream scales them.

    Attributes:
        images: (S, 3, h, w) float32, ImageNet-normalised RGB; h and w are multiples of 14 for the usual sizes.
        processed_images: (S, h, w, 3) uint8, the resized and cropped RGB pixels that ``images`` normalises.
        intrinsics: (S, 3, 3) float32 intrinsics of the processed images, or None when none were given.
        original_sizes: (S, 2) int64, ``(H, W)`` of each input image.
        resized_sizes: (S, 2) int64, ``(h, w)`` of each image after resizing, before any crop.
        scales: (S, 2) float64, ``(sx, sy)``: resized width / input width, resized height / input height.
        crop_offsets: (S, 2) int64, ``(top, left)`` of the processed image inside the resized one.
    """

    images: Tensor
    processed_images: np.ndarray
    intrinsics: Optional[Tensor]
    original_sizes: np.ndarray
    resized_sizes: np.ndarray
    scales: np.ndarray
    crop_offsets: np.ndarray

    @property
    def size(self) -> Tuple[int, int]:
        """``(h, w)`` of the processed images."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def bound_resize_size(height: int, width: int, process_res: int, method: str) -> Tuple[int, int]:
    """Size ``(h, w)`` after the first, aspect-keeping resize of the long (upper) or short (lower) side.

    The bound side becomes ``process_res``; the other is rounded with Python's ``round`` (half to even), as
    upstream does. An image whose bound side already equals ``process_res`` keeps its size.

    >>> bound_resize_size(480, 640, 504, "upper_bound_resize")
    (378, 504)
    """
    _check_method(method)
    side = max(height, width) if method.startswith("upper") else min(height, width)
    if side == process_res:
        return height, width
    scale = process_res / float(side)
    return max(1, round(height * scale)), max(1, round(width * scale))


def snap_size(height: int, width: int, method: str, patch: int = PATCH_SIZE) -> Tuple[int, int]:
    """Size after making both sides multiples of ``patch``: nearest multiple for ``*_resize`` (ties go up),
    the multiple below for ``*_crop``.

    A ``*_resize`` side below ``patch / 2`` becomes 1 (upstream's rounding gives 0 and clamps it to 1).

    >>> snap_size(378, 504, "upper_bound_resize"), snap_size(377, 504, "upper_bound_crop")
    ((378, 504), (364, 504))
    """
    _check_method(method)
    if method.endswith("crop"):
        return (height // patch) * patch, (width // patch) * patch

    def nearest(x: int) -> int:
        down = (x // patch) * patch
        up = down + patch
        return max(1, up if up - x <= x - down else down)

    return nearest(height), nearest(width)


def preprocess_da3(
    images: Sequence[ImageSource],
    intrinsics: Optional[object] = None,
    process_res: int = 504,
    process_res_method: str = "upper_bound_resize",
    reduce_on_decode: bool = False,
) -> DA3Inputs:
    """Prepare the views of one scene for DA3 exactly as upstream's ``InputProcessor`` does.

    Per image: resize so that the long (``upper_bound``) or short (``lower_bound``) side is ``process_res``
    (cv2 INTER_CUBIC when it enlarges, INTER_AREA otherwise), then make both sides multiples of 14 by a second
    small resize (``*_resize``; INTER_CUBIC if either side grows) or by a centre crop (``*_crop``). If the views
    end up with different sizes, all are centre-cropped to the smallest height and the smallest width (a
    portrait view among landscape ones is cropped to a square-ish window, as upstream does). Intrinsics follow:
    row 0 scaled by the width ratio and row 1 by the height ratio of each resize, the principal point shifted by
    each crop.

    uint8 images go through both resizes in 8 bits, bit-exact with upstream. Float images (from 16-bit sources)
    are resized in float32 and clipped to [0, 1] after each resize, so they keep their precision; their
    ``processed_images`` are rounded to 8 bits.

    Views are read and resized one at a time: at most one of them is held at its full size (the caller's arrays
    aside), however many there are.

    Args:
        images: S images: paths, PIL images, (H, W, 3) RGB arrays or tensors (anything
            :func:`anydepth.io.images.read_image` reads). They are never modified.
        intrinsics: optional (S, 3, 3) pixel intrinsics of the input images (numpy or torch).
        process_res: target of the bound side, in pixels.
        process_res_method: one of :data:`PROCESS_RES_METHODS`.
        reduce_on_decode: decode JPEG files at a reduced scale (1/2, 1/4 or 1/8, at least the size of the first
            resize; see :func:`anydepth.io.images.read_image`'s ``min_size``) instead of in full. Sizes,
            scales and intrinsics stay those of the full image, but the pixels differ slightly from upstream's
            (a full decode then INTER_AREA): below one grey level on average, more at sharp edges; so off by
            default, and the servers turn it on for the memory and time it saves on large photos (an 8000x8000
            JPEG at process_res 504 is decoded to 1000x1000: 2.9 MiB instead of 183).

    Returns:
        a :class:`DA3Inputs`.

    Raises:
        InputError: no images, a bad ``process_res`` or method, or an image too small for the crop variants.
        ShapeError: intrinsics that are not (S, 3, 3).

    Example:
        >>> out = preprocess_da3([np.zeros((480, 640, 3), np.uint8)], process_res=504)
        >>> tuple(out.images.shape), out.processed_images.dtype.name
        ((1, 3, 378, 504), 'uint8')
    """
    _check_method(process_res_method)
    if isinstance(process_res, bool) or not isinstance(process_res, (int, np.integer)) or process_res <= 0:
        raise InputError(f"process_res must be a positive int, got {process_res!r}")
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) or len(images) == 0:
        raise InputError("images must be a non-empty list of images (paths, PIL images, arrays or tensors)")
    num_views = len(images)
    intrinsics_in = None if intrinsics is None else _as_intrinsics(intrinsics, num_views)

    pixels: List[np.ndarray] = []
    original_sizes, resized_sizes, scales, offsets, out_intrinsics = [], [], [], [], []
    for i, source in enumerate(images):
        # each view is brought to its processed size before the next is read
        image, (height, width) = _read_view(source, int(process_res), process_res_method, reduce_on_decode)
        original_sizes.append((height, width))
        h1, w1 = bound_resize_size(height, width, int(process_res), process_res_method)
        bound_side = max(height, width) if process_res_method.startswith("upper") else min(height, width)
        image = _resize(image, h1, w1, enlarge=bound_side < process_res)
        h2, w2 = snap_size(h1, w1, process_res_method)
        top = left = 0
        if process_res_method.endswith("resize"):
            image = _resize(image, h2, w2, enlarge=h2 > h1 or w2 > w1)
            resized = (h2, w2)
        else:
            if h2 == 0 or w2 == 0:
                raise InputError(
                    f"image {i} ({height}x{width}) is smaller than 14 pixels after resizing to {h1}x{w1}; "
                    "use a larger process_res or a *_resize method"
                )
            top, left = (h1 - h2) // 2, (w1 - w2) // 2
            image = image[top : top + h2, left : left + w2]
            resized = (h1, w1)
        pixels.append(image)
        resized_sizes.append(resized)
        offsets.append([top, left])
        scales.append([resized[1] / width, resized[0] / height])
        if intrinsics_in is not None:
            K = intrinsics_in[i].copy()
            # two steps, as upstream, so that float rounding follows it
            K[0] *= w1 / float(width)
            K[1] *= h1 / float(height)
            if process_res_method.endswith("resize"):
                K[0] *= w2 / float(w1)
                K[1] *= h2 / float(h1)
            else:
                K[0, 2] -= left
                K[1, 2] -= top
            out_intrinsics.append(K)

    pixels, offsets = _crop_to_common_size(pixels, offsets, out_intrinsics)
    stack = np.stack(pixels)  # (S, h, w, 3) uint8 or float32 in [0, 1]
    # channels first while still 8-bit (a quarter of the bytes to move), then one float pass, normalised in place
    if stack.dtype == np.uint8:
        processed_images = stack
        unit = torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous().float().div_(255)
    else:
        processed_images = np.round(stack * 255.0).astype(np.uint8)
        unit = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    return DA3Inputs(
        images=_normalise_(unit),
        processed_images=processed_images,
        intrinsics=None if intrinsics_in is None else torch.from_numpy(np.stack(out_intrinsics)).float(),
        original_sizes=np.array(original_sizes, dtype=np.int64),
        resized_sizes=np.array(resized_sizes, dtype=np.int64),
        scales=np.array(scales, dtype=np.float64),
        crop_offsets=np.array(offsets, dtype=np.int64),
    )


def upstream_processed_images(images: Tensor) -> np.ndarray:
    """Upstream's ``Prediction.processed_images`` from normalised images: denormalise, clip, x255, truncate.

    Truncation makes 20-33% of the values one grey level darker than the pixels that were normalised
    (:attr:`DA3Inputs.processed_images`); the compat facade returns this (:func:`upstream_processed_images_of`).

    Args:
        images: (S, 3, h, w) ImageNet-normalised float images.

    Returns:
        (S, h, w, 3) uint8.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ShapeError(f"images must be an (S, 3, h, w) tensor, got {getattr(images, 'shape', type(images))}")
    array = images.detach().permute(0, 2, 3, 1).cpu().numpy()
    array = np.clip(array * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN), 0, 1)
    return (array * 255).astype(np.uint8)


def upstream_processed_images_of(processed_images: np.ndarray) -> np.ndarray:
    """Upstream's ``Prediction.processed_images`` for the (S, h, w, 3) uint8 pixels :func:`preprocess_da3` fed the
    network: normalised as it normalises them, then :func:`upstream_processed_images` (the compat facade's)."""
    if not isinstance(processed_images, np.ndarray) or processed_images.dtype != np.uint8:
        raise ShapeError("processed_images must be a uint8 (S, h, w, 3) array")
    unit = torch.from_numpy(processed_images).permute(0, 3, 1, 2).contiguous().float().div_(255)
    return upstream_processed_images(_normalise_(unit))


# --- helpers ---------------------------------------------------------------------------------------------------


def _normalise_(unit: Tensor) -> Tensor:
    """(S, 3, h, w) float images in [0, 1] -> ImageNet-normalised, in place."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return unit.sub_(mean).div_(std)


def _check_method(method: str) -> None:
    if method not in PROCESS_RES_METHODS:
        raise InputError(f"process_res_method must be one of {', '.join(PROCESS_RES_METHODS)}; got {method!r}")


def _as_intrinsics(intrinsics: object, num_views: int) -> np.ndarray:
    if isinstance(intrinsics, Tensor):
        intrinsics = intrinsics.detach().cpu().numpy()
    array = np.array(intrinsics, dtype=np.float64)  # a copy: the caller's array is never touched
    if array.shape != (num_views, 3, 3):
        raise ShapeError(f"intrinsics must have shape ({num_views}, 3, 3) for {num_views} images, got {array.shape}")
    return array


def _read_view(
    source: ImageSource, process_res: int, method: str, reduce_on_decode: bool
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """One view's pixels, maybe decoded reduced (at least the size of the first resize), and its full size."""
    header = read_header(source) if reduce_on_decode else None
    if header is not None:
        size = (header.height, header.width)
        return read_image(source, min_size=bound_resize_size(*size, process_res, method)), size
    image = read_image(source)
    return image, (int(image.shape[0]), int(image.shape[1]))


def _resize(image: np.ndarray, height: int, width: int, enlarge: bool) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    interpolation = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    if out.dtype != np.uint8:
        np.clip(out, 0.0, 1.0, out=out)  # uint8 saturates; keep floats in the same range
    return out


def _crop_to_common_size(
    pixels: List[np.ndarray], offsets: List[List[int]], intrinsics: List[np.ndarray]
) -> Tuple[List[np.ndarray], List[List[int]]]:
    sizes = [p.shape[:2] for p in pixels]
    if len(set(sizes)) <= 1:
        return pixels, offsets
    min_h = min(h for h, _ in sizes)
    min_w = min(w for _, w in sizes)
    logger.warning("views have different sizes %s; centre-cropping all to (%d, %d)", sizes, min_h, min_w)
    cropped, new_offsets = [], []
    for i, (image, (height, width)) in enumerate(zip(pixels, sizes)):
        # torchvision's CenterCrop rounds (H - h) / 2, upstream's intrinsics floor it; equal for multiples of 14
        top, left = round((height - min_h) / 2.0), round((width - min_w) / 2.0)
        cropped.append(image[top : top + min_h, left : left + min_w])
        new_offsets.append([offsets[i][0] + top, offsets[i][1] + left])
        if intrinsics:
            intrinsics[i][0, 2] -= (width - min_w) // 2
            intrinsics[i][1, 2] -= (height - min_h) // 2
    return cropped, new_offsets
