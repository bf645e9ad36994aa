"""The `mini_npz` and `npz` exports: the prediction's arrays in one compressed .npz, as upstream DA3 lays them out."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from anydepth.errors import InputError
from anydepth.io.atomic import PathLike, atomic_open
from anydepth.prediction import Prediction

MINI_NPZ_PATH = Path("exports", "mini_npz", "results.npz")
NPZ_PATH = Path("exports", "npz", "results.npz")


def _cameras(prediction: Prediction) -> Dict[str, np.ndarray]:
    arrays = {}
    if prediction.conf is not None:
        arrays["conf"] = np.round(prediction.conf, 2)
    if prediction.extrinsics is not None:
        arrays["extrinsics"] = np.array(prediction.extrinsics)
    if prediction.intrinsics is not None:
        arrays["intrinsics"] = np.array(prediction.intrinsics)
    return arrays


def _write(path: Path, arrays: Dict[str, np.ndarray]) -> Path:
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def mini_npz_arrays(prediction: Prediction) -> Dict[str, np.ndarray]:
    """The arrays of ``mini_npz``: ``depth`` (N, H, W) rounded to 8 decimals, and where present ``conf`` (N, H, W)
    rounded to 2 decimals, ``extrinsics`` (N, 3, 4) and ``intrinsics`` (N, 3, 3) as given. New arrays, never views.
    """
    return {"depth": np.round(prediction.depth, 8), **_cameras(prediction)}


def npz_arrays(prediction: Prediction) -> Dict[str, np.ndarray]:
    """The arrays of ``npz``: ``image`` (N, H, W, 3) uint8 processed images, ``depth`` rounded to 6 decimals, and
    where present ``conf`` (2 decimals), ``extrinsics`` and ``intrinsics``.

    Raises:
        InputError: the prediction has no processed images (upstream requires them too).
    """
    if prediction.processed_images is None:
        raise InputError("npz export needs prediction.processed_images; use mini_npz for depth and cameras only")
    return {
        "image": np.array(prediction.processed_images),
        "depth": np.round(prediction.depth, 6),
        **_cameras(prediction),
    }


def export_mini_npz(prediction: Prediction, export_dir: PathLike) -> Path:
    """Write ``<export_dir>/exports/mini_npz/results.npz`` (see :func:`mini_npz_arrays`) atomically.

    Args:
        prediction: the prediction to save.
        export_dir: the export folder; created if missing.

    Returns:
        The path written.
    """
    return _write(Path(export_dir) / MINI_NPZ_PATH, mini_npz_arrays(prediction))


def export_npz(prediction: Prediction, export_dir: PathLike) -> Path:
    """Write ``<export_dir>/exports/npz/results.npz`` (see :func:`npz_arrays`) atomically.

    Args:
        prediction: the prediction to save; needs ``processed_images``.
        export_dir: the export folder; created if missing.

    Returns:
        The path written.
    """
    return _write(Path(export_dir) / NPZ_PATH, npz_arrays(prediction))
