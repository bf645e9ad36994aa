"""ScanNet (v2 test scans, exported frames) as the video-depth papers evaluate it (:func:`convert_scannet`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets.sequences import (
    Frame,
    crop,
    invert_pose,
    is_complete,
    list_files,
    pick_scenes,
    read_depth_png,
    read_rgb,
    write_sequence,
)
from anydepth.errors import InputError

logger = logging.getLogger(__name__)

SCANNET_SCENE_COUNT = 100  # the first 100 scans, sorted (scans_test: scene0707_00 ... scene0806_00)
SCANNET_MAX_DEPTH = 10.0
SCANNET_MAX_FRAMES = 90  # "90 frames like DepthCrafter"
SCANNET_STRIDE = 3
SCANNET_FIRST_FRAMES = 510  # Video Depth Anything extracts the first 510 frames of a scan, then picks from those
SCANNET_CROP = (8, 8, 11, 11)  # rows off the top and bottom, columns off the left and right
SCANNET_MM = 1000.0
LAYOUT = ("<scene>/color/<i>.jpg, <scene>/depth/<i>.png (16-bit mm), <scene>/pose/<i>.txt (4x4 camera-to-world) "
          "and <scene>/intrinsic/intrinsic_depth.txt, as ScanNet's SensReader exports a scans_test scan")  # fmt: skip


def _scene_folders(root: Path) -> List[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())[:SCANNET_SCENE_COUNT]


def _matrix(path: Path) -> np.ndarray:
    try:
        return np.loadtxt(path, ndmin=2)
    except (OSError, ValueError):
        raise InputError(f"{path}: missing or not a 4x4 matrix of numbers (expected {LAYOUT})") from None


def _frames(source: Path, indices: List[str], K: np.ndarray, poses: List[np.ndarray]) -> Iterator[Frame]:
    import cv2

    top, bottom, left, right = SCANNET_CROP
    for index, w2c in zip(indices, poses):
        image = read_rgb(source / "color" / f"{index}.jpg")
        depth = read_depth_png(source / "depth" / f"{index}.png", SCANNET_MM)
        H, W = depth.shape
        if image.shape[:2] != (H, W):  # colour is exported at 1296 x 968: brought onto the depth's 640 x 480 grid
            image = cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA)
        yield crop(Frame(f"{int(index):06d}", image, depth, K, w2c), top, H - bottom, left, W - right)


def convert_scannet(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = SCANNET_MAX_FRAMES,
    *,
    start: int = 0,
    stride: int = SCANNET_STRIDE,
) -> List[Path]:
    """ScanNet scans exported under ``root`` (``scans_test/<scene>/...``) -> ``<out>/scannet-<scene>``.

    Protocol (Video Depth Anything's ``dataset_extract_scannet.py`` and ``eval/eval.py``, its "90 frames like
    DepthCrafter" table):

    - scenes: the first 100 scan folders under ``root``, sorted (for ``scans_test``: scene0707_00 to
      scene0806_00, DepthCrafter's ``meta_scannet_test.csv``);
    - frames: of the first 510 frames (by number), ``max_frames`` (90) from ``start`` (0) at ``stride`` (3):
      frames 0, 3, ..., 267;
    - crop: 8 rows off the top and bottom, 11 columns off the left and right of colour and depth (624 x 464 from
      640 x 480), the principal point moved with it. The colour frames, exported at 1296 x 968, are first resized
      (area) to the depth's 640 x 480 grid, whose intrinsics (``intrinsic_depth.txt``) the scene carries;
      upstream crops the colour and the depth each at its own size and resizes the prediction to the depth's;
    - depth: 16-bit PNG millimetres / 1000, 0 = none; scored where 1e-3 < depth < 10 m;
    - cameras: ``pose/<i>.txt`` camera-to-world, inverted to world-to-camera; a scan with a non-finite pose among
      the chosen frames (ScanNet marks lost tracking with -inf) is written without poses (``has_poses`` false:
      TAE is then not reported).

    Video Depth Anything's TAE on ScanNet uses other frames: ``start=10, stride=1, max_frames=170`` (frames 10 to
    179) of the first 20 scenes, and the uncropped depth intrinsics for the cropped maps (we move the principal
    point with the crop). Scenes already converted are kept; errors come before any work.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such ScanNet folder (expected {LAYOUT})")
    if stride < 1 or start < 0:
        raise InputError(f"ScanNet frames: start {start} and stride {stride} must be >= 0 and >= 1")
    chosen = pick_scenes(scenes, _scene_folders(root), lambda s: root / s, "ScanNet", LAYOUT)
    plans = []
    for scene in chosen:
        source = root / scene
        intrinsic = source / "intrinsic" / "intrinsic_depth.txt"
        if not intrinsic.is_file():
            raise InputError(f"{intrinsic}: missing (expected {LAYOUT})")
        numbers = sorted((name[:-4] for name in list_files(source / "color", ".jpg", LAYOUT) if name[:-4].isdigit()),
                         key=int)[:SCANNET_FIRST_FRAMES]  # fmt: skip
        indices = numbers[start::stride]
        indices = indices[:max_frames] if max_frames > 0 else indices
        if not indices:
            raise InputError(f"{source / 'color'}: no frame from {start} at stride {stride} (expected {LAYOUT})")
        if is_complete(out / f"scannet-{scene}"):
            plans.append((scene, source, indices, None, []))
            continue
        K = _matrix(intrinsic)[:3, :3]
        plans.append((scene, source, indices, K, [_matrix(source / "pose" / f"{i}.txt") for i in indices]))
    folders = []
    for scene, source, indices, K, c2w in plans:
        folder = out / f"scannet-{scene}"
        folders.append(folder)
        if K is None:  # converted before: kept
            continue
        bad = [i for i, pose in zip(indices, c2w) if pose.shape != (4, 4) or not np.isfinite(pose).all()]
        if bad:
            logger.warning("ScanNet %s: no valid pose for frame(s) %s; written without poses", scene, bad[:5])
        poses = [np.eye(3, 4) if bad else invert_pose(pose) for pose in c2w]
        write_sequence(folder, _frames(source, indices, K, poses), "scannet", scene, SCANNET_MAX_DEPTH, not bad,
                       source=str(source), source_frames=[int(i) for i in indices], crop=list(SCANNET_CROP),
                       invalid_pose_frames=[int(i) for i in bad])  # fmt: skip
    return folders
