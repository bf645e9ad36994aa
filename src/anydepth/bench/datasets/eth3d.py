"""ETH3D high-res multi-view as upstream DA3 evaluates it (:func:`convert_eth3d`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.errors import InputError

logger = logging.getLogger(__name__)

# upstream's ETH3D_SCENES; it leaves out terrace and meadow ("known issues")
ETH3D_SCENES = ("courtyard", "electro", "kicker", "pipes", "relief", "delivery_area", "facade", "office",
                "playground", "relief_2", "terrains")  # fmt: skip
ETH3D_EXCLUDED = ("terrace", "meadow")
# upstream's ETH3D_FILTER_KEYS: views with unusual camera rotations, dropped by the end of their file name
ETH3D_FILTER_KEYS: Dict[str, Tuple[str, ...]] = {
    "delivery_area": tuple(f"{i}.JPG" for i in range(711, 715)),
    "electro": ("9289.JPG", "9290.JPG", "9291.JPG", "9292.JPG", "9293.JPG", "9298.JPG"),
    "playground": tuple(f"{i}.JPG" for i in range(587, 593)),
    "relief": tuple(f"{i}.JPG" for i in range(427, 439)),
    "relief_2": tuple(f"{i}.JPG" for i in range(458, 469)),
}
ETH3D_FSCORE = 0.25  # ETH3D_EVAL_THRESHOLD = 0.05 * 5 (metres): outdoor scenes, five times the indoor distance
ETH3D_RECONSTRUCTION = {
    "voxel_length": 4.0 / 512.0 * 5,  # ETH3D_VOXEL_LENGTH (TSDF voxel, metres)
    "sdf_trunc": 0.04 * 5,  # ETH3D_SDF_TRUNC
    "fusion_max_depth": 100000.0,  # ETH3D_MAX_DEPTH: no truncation
    "sampling_number": 1_000_000,  # ETH3D_SAMPLING_NUMBER: points sampled from the mesh
    "down_sample": 4.0 / 512.0 * 5,  # ETH3D_DOWN_SAMPLE (evaluation voxel, metres)
}
_LAYOUT = ("<root>/<scene>/dslr_calibration_jpg/{cameras,images}.txt, <scene>/images/dslr_images/*.JPG, "
           "<scene>/ground_truth_depth/dslr_images/*.JPG, <scene>/combined_mesh.ply")  # fmt: skip
# COLMAP camera models whose first parameters are (fx, fy, cx, cy), and those with one focal length (f, cx, cy)
_FX_FY_MODELS = ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV", "FOV", "THIN_PRISM_FISHEYE")
_F_MODELS = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


def read_cameras_txt(path: Path) -> Dict[str, Tuple[int, int, np.ndarray]]:
    """COLMAP ``cameras.txt``: camera id -> (width, height, (3, 3) K), K's principal point as COLMAP stores it
    (pixel centres at +0.5, the convention of the ground-truth layout). Distortion is dropped, as upstream does."""
    cameras = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        model = parts[1] if len(parts) > 1 else ""
        try:
            width, height, params = int(parts[2]), int(parts[3]), [float(p) for p in parts[4:]]
            if model in _FX_FY_MODELS:
                fx, fy, cx, cy = params[:4]
            elif model in _F_MODELS:
                fx, cx, cy = params[:3]
                fy = fx
            else:
                raise InputError(f"{path}: camera model {model!r} is not one of {', '.join(_FX_FY_MODELS + _F_MODELS)}")
        except (IndexError, ValueError):
            raise InputError(
                f"{path}: malformed camera line {line.strip()!r} (ID MODEL WIDTH HEIGHT PARAMS...)"
            ) from None
        cameras[parts[0]] = (width, height, np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))
    return cameras


def quaternion_to_rotation(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion in COLMAP's (w, x, y, z) order.

    Example:
        >>> quaternion_to_rotation(np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)).round(6).tolist()
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    import torch

    from anydepth.geometry.rotations import quaternion_to_rotation_matrix

    # the project's conversion stores the scalar last
    return quaternion_to_rotation_matrix(torch.tensor([qx, qy, qz, qw], dtype=torch.float64)).numpy()


def read_images_txt(path: Path) -> List[Tuple[str, np.ndarray, str]]:
    """COLMAP ``images.txt`` in file order (upstream keeps it, and frame sampling depends on it): (name,
    (3, 4) world-to-camera, camera id) per image. Each image has two lines, its pose and its 2D points (which may
    be empty); comment lines are skipped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    images = []
    for line in lines[0::2]:
        parts = line.split()
        if not parts:
            continue
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(p) for p in parts[1:8])
            camera_id, name = parts[8], parts[9]
        except (IndexError, ValueError):
            expected = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a line of 2D points"
            raise InputError(f"{path}: malformed image line {line.strip()!r} ({expected})") from None
        w2c = np.concatenate([quaternion_to_rotation(qw, qx, qy, qz), [[tx], [ty], [tz]]], axis=1)
        images.append((name, w2c, camera_id))
    return images


def _ground_truth_depth(scene_dir: Path, name: str, width: int, height: int) -> Optional[np.ndarray]:
    """The laser-scan depth of one view in metres, 0 where there is none (inf in the file, or masked out by
    ``masks_for_images``: value 1, as upstream), or None where the scene has no depth file for it."""
    import cv2

    base = Path(name).name
    path = scene_dir / "ground_truth_depth" / "dslr_images" / base
    if not path.is_file():
        return None
    raw = np.fromfile(path, dtype="<f4")
    if raw.size != width * height:
        raise InputError(f"{path}: {raw.size} float32 values, expected {width}x{height} (raw little-endian float32)")
    depth = raw.reshape(height, width).astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    mask_path = scene_dir / "masks_for_images" / "dslr_images" / (Path(base).stem + ".png")
    if mask_path.is_file():
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != depth.shape:
            raise InputError(f"{mask_path}: unreadable or not {width}x{height} (8-bit PNG, 1 = masked out)")
        depth[mask == 1] = 0.0
    return depth


def _is_filtered(scene: str, name: str) -> bool:
    return any(name.endswith(key) for key in ETH3D_FILTER_KEYS.get(scene, ()))


def convert_eth3d(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """ETH3D under ``root`` (upstream's ``benchmark_dataset/eth3d``: ``<root>/<scene>/`` as the high-res
    multi-view JPG training data unpacks, with ``dslr_calibration_jpg/cameras.txt`` and ``images.txt``,
    ``images/dslr_images/*.JPG``, ``ground_truth_depth/dslr_images/*.JPG`` (raw float32 depth),
    ``masks_for_images/dslr_images/*.png`` and the scene's ``combined_mesh.ply``) -> ``<out>/eth3d-<scene>``.

    As upstream: the 11 scenes of ``ETH3D_SCENES`` (terrace and meadow left out), views in ``images.txt``'s order
    whose image file exists, less those of ``ETH3D_FILTER_KEYS``, sampled by :func:`sample_frames` (100 of them,
    seed 42). Poses are COLMAP's world-to-camera; intrinsics are the pinhole part of the distorted JPG
    calibration at the full DSLR size (upstream drops the distortion, and so does this reader), and images are
    copied unchanged. Depth is the laser scan's in metres, 0 where it is inf or ``masks_for_images`` says 1
    (occluded), and all 0 for a view without a depth file (then ``has_depth`` is false only if no view has one).
    Reconstruction is scored against ``combined_mesh.ply`` (copied as ``reference.ply``, 1,000,000 points sampled)
    at 0.25 m, after TSDF fusion with a 5/128 m voxel and 0.2 m truncation: ``scene.json`` carries these.
    Scenes already converted are kept.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected {_LAYOUT})")
    wanted = list(scenes or ETH3D_SCENES)
    for scene in wanted:
        if scene in ETH3D_EXCLUDED:
            raise InputError(f"ETH3D scene {scene!r} is left out of upstream DA3's evaluation (known issues); "
                             f"choose from {', '.join(ETH3D_SCENES)}")  # fmt: skip
        if scene not in ETH3D_SCENES:
            raise InputError(f"unknown ETH3D scene {scene!r}; choose from {', '.join(ETH3D_SCENES)}")
        for name in ("cameras.txt", "images.txt"):
            path = root / scene / "dslr_calibration_jpg" / name
            if not path.is_file():
                raise InputError(f"{path}: missing (expected {_LAYOUT})")
    return [_convert_scene(root / scene, out / f"eth3d-{scene}", scene, max_frames) for scene in wanted]


def _convert_scene(scene_dir: Path, folder: Path, scene: str, max_frames: int) -> Path:
    calibration = scene_dir / "dslr_calibration_jpg"
    cameras = read_cameras_txt(calibration / "cameras.txt")
    views = []
    for name, w2c, camera_id in read_images_txt(calibration / "images.txt"):
        if _is_filtered(scene, name) or camera_id not in cameras:
            continue
        if (scene_dir / "images" / name).is_file():
            views.append((name, w2c, camera_id))
    if not views:
        raise InputError(f"{calibration / 'images.txt'}: no view with an image under {scene_dir / 'images'}")
    views = [views[k] for k in sample_frames(len(views), max_frames)]
    if (folder / "cameras.npz").is_file():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    names, extrinsics, intrinsics, with_depth = [], [], [], 0
    for name, w2c, camera_id in views:
        width, height, K = cameras[camera_id]
        base = Path(name).name
        shutil.copyfile(scene_dir / "images" / name, folder / "images" / base)
        depth = _ground_truth_depth(scene_dir, name, width, height)
        with_depth += depth is not None
        if depth is None:
            depth = np.zeros((height, width), np.float32)
        np.save(folder / "depth" / f"{Path(base).stem}.npy", depth)
        names.append(base)
        extrinsics.append(w2c)
        intrinsics.append(K)
    if with_depth < len(names):
        logger.warning("%s: %d of %d views have no ground-truth depth", scene_dir, len(names) - with_depth, len(names))
    reference = None
    mesh = scene_dir / "combined_mesh.ply"
    if mesh.is_file():
        shutil.copyfile(mesh, folder / "reference.ply")
        reference = "reference.ply"
    write_scene_meta(folder, "eth3d", scene, "m", ETH3D_FSCORE, has_poses=True, reference=reference,
                     has_depth=with_depth > 0, source=str(scene_dir), frames=names, **ETH3D_RECONSTRUCTION)  # fmt: skip
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=names)  # fmt: skip
    return folder
