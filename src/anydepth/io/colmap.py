"""Read a COLMAP dataset (images + sparse model) as views with known cameras, for pose-conditioned inference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

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


def _holds_model(folder: Path) -> bool:
    return (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file()


def _subdir(sparse_subdir: str) -> str:
    """``--sparse-subdir`` as a relative folder name: "/0/" and " 0" are "0"; "" stays ""."""
    return str(sparse_subdir).strip().strip("/")


def colmap_model_dir(dataset: Union[str, Path], sparse_subdir: str = "") -> Optional[Path]:
    """The folder of ``dataset``'s COLMAP model (binary or text), or None where there is none.

    ``sparse_subdir`` means what it means to upstream's ``da3 colmap --sparse-subdir``: a folder under
    ``dataset/sparse`` ("0" is ``sparse/0/``), and "" is ``sparse/`` itself. Unlike upstream, "" also finds
    ``sparse/0/`` (COLMAP's first model) or a model in the dataset folder where ``sparse/`` holds none, and a path
    relative to the dataset ("sparse/0") is accepted where it does not also name a folder under ``sparse/``.

    Raises:
        InputError: ``sparse_subdir`` names two different folders that both hold a model.
    """
    dataset = Path(dataset)
    if not dataset.is_dir():
        return None
    value = _subdir(sparse_subdir)
    if not value:
        return next((d for d in (dataset / "sparse", dataset / "sparse" / "0", dataset) if _holds_model(d)), None)
    upstream, relative = dataset / "sparse" / value, dataset / value
    found = [d for d in (upstream, relative) if _holds_model(d)]
    if len(found) == 2 and found[0].resolve() != found[1].resolve():
        raise InputError(
            f"{dataset}: --sparse-subdir {value} names two COLMAP models, {upstream} (upstream's meaning) and "
            f"{relative}; pass sparse/{value} or a path that names only one"
        )
    return found[0] if found else None


def is_colmap_dataset(path: Union[str, Path], sparse_subdir: str = "") -> bool:
    """Whether ``path`` holds a COLMAP model where :func:`colmap_model_dir` looks for one."""
    return colmap_model_dir(path, sparse_subdir) is not None


def read_colmap_views(dataset: Union[str, Path], sparse_subdir: str = "", images_subdir: str = "images") -> ColmapViews:
    """Registered images of ``dataset``'s model (see :func:`colmap_model_dir` for ``sparse_subdir``) with their
    cameras, images from ``dataset/images_subdir``.

    Raises:
        InputError: no model, no registered image, or an image file missing.
    """
    pycolmap = require("pycolmap", "export")
    dataset = Path(dataset)
    model_dir = colmap_model_dir(dataset, sparse_subdir)
    if model_dir is None:
        raise InputError(missing_model_message(dataset, sparse_subdir))
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


def missing_model_message(dataset: Union[str, Path], sparse_subdir: str = "") -> str:
    """One line for a dataset without a COLMAP model where ``sparse_subdir`` says, naming the folders tried."""
    value = _subdir(sparse_subdir)
    tried = f"sparse/{value}/ or {value}/" if value else "sparse/, sparse/0/ or the folder itself"
    return (
        f"{dataset}: no COLMAP model (cameras.bin or cameras.txt) in {tried}; --sparse-subdir names the model's "
        "folder under sparse/ (0 for sparse/0/)"
    )
