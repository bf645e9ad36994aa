"""Read a COLMAP dataset (images + sparse model) as views with known cameras, for pose-conditioned inference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

import numpy as np

from anydepth.errors import InputError, require


@dataclass(frozen=True)
class ColmapViews:
    """The registered images of a COLMAP model, in image-name order.

    Attributes:
        image_paths: image files.
        extrinsics: (N, 4, 4) float32 world-to-camera (OpenCV, as COLMAP stores ``cam_from_world``).
        intrinsics: (N, 3, 3) float32 pixel intrinsics at each image's size, OpenCV convention (pixel centres
            at integers: COLMAP's principal point, which counts pixel centres at +0.5, minus 0.5).
    """

    image_paths: List[Path]
    extrinsics: np.ndarray
    intrinsics: np.ndarray


def is_colmap_dataset(path: Union[str, Path], sparse_subdir: str = "sparse/0") -> bool:
    """Whether ``path`` holds a COLMAP model at ``sparse_subdir`` (or ``sparse``, or directly)."""
    path = Path(path)
    folders = (path / sparse_subdir, path / "sparse", path)
    return path.is_dir() and any((d / "cameras.bin").exists() or (d / "cameras.txt").exists() for d in folders)


def read_colmap_views(
    dataset: Union[str, Path], sparse_subdir: str = "sparse/0", images_subdir: str = "images"
) -> ColmapViews:
    """Registered images of ``dataset/sparse_subdir`` with their cameras, images from ``dataset/images_subdir``.

    Raises:
        InputError: no model, no registered image, or an image file missing.
    """
    pycolmap = require("pycolmap", "export")
    dataset = Path(dataset)
    candidates = [dataset / sparse_subdir, dataset / "sparse", dataset]
    model_dir = next((d for d in candidates if (d / "cameras.bin").exists() or (d / "cameras.txt").exists()), None)
    if model_dir is None:
        raise InputError(f"{dataset}: no COLMAP model in {sparse_subdir}/ (cameras.bin); pass --sparse-subdir")
    try:
        reconstruction = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # corrupt or partial model files
        raise InputError(f"{model_dir}: cannot read the COLMAP model ({exc})") from None
    images = sorted(reconstruction.images.values(), key=lambda im: im.name)
    if not images:
        raise InputError(f"{model_dir}: the COLMAP model has no registered images")
    image_root = dataset / images_subdir if (dataset / images_subdir).is_dir() else dataset
    paths, extrinsics, intrinsics = [], [], []
    for image in images:
        path = image_root / image.name
        if not path.is_file():
            raise InputError(f"{path}: image of the COLMAP model not found; pass --images-subdir")
        pose = image.cam_from_world
        pose = pose() if callable(pose) else pose  # a method in pycolmap >= 3.12, a property before
        w2c = np.eye(4)
        w2c[:3] = np.asarray(pose.matrix(), dtype=np.float64)
        camera = reconstruction.cameras[image.camera_id]
        paths.append(path)
        extrinsics.append(w2c)
        K = np.asarray(camera.calibration_matrix(), dtype=np.float64).copy()
        K[:2, 2] -= 0.5  # COLMAP puts pixel centres at +0.5; our intrinsics put them at integers
        intrinsics.append(K)
    return ColmapViews(paths, np.stack(extrinsics).astype(np.float32), np.stack(intrinsics).astype(np.float32))
