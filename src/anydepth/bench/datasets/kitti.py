"""KITTI depth (the annotated validation sequences with their raw images) as the video-depth papers evaluate it
(:func:`convert_kitti`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets.sequences import (
    Frame,
    crop,
    is_complete,
    list_files,
    pick_scenes,
    read_depth_png,
    read_rgb,
    upstream_order,
    write_sequence,
)
from anydepth.errors import InputError

KITTI_SCENES = (
    "2011_09_26_drive_0002_sync", "2011_09_26_drive_0005_sync", "2011_09_26_drive_0013_sync",
    "2011_09_26_drive_0020_sync", "2011_09_26_drive_0023_sync", "2011_09_26_drive_0036_sync",
    "2011_09_26_drive_0079_sync", "2011_09_26_drive_0095_sync", "2011_09_26_drive_0113_sync",
    "2011_09_28_drive_0037_sync", "2011_09_29_drive_0026_sync", "2011_09_30_drive_0016_sync",
    "2011_10_03_drive_0047_sync",
)  # fmt: skip
"""The 13 sequences of KITTI depth's ``val`` split (DepthCrafter's ``meta_kitti_val.csv``; Video Depth Anything
lists the whole ``val`` folder, the same 13)."""
KITTI_MAX_DEPTH = 80.0
KITTI_MAX_FRAMES = 110  # "110 frames like DepthCrafter"
KITTI_WINDOW = (374, 1242)  # Video Depth Anything's eval window on the depth: rows 0:374, columns 0:1242
KITTI_PER_METRE = 256.0
LAYOUT = ("data_depth_annotated/val/<sequence>/proj_depth/groundtruth/image_02/<frame>.png (16-bit, metres x 256) "
          "and raw_data/<date>/<sequence>/image_02/data/<frame>.png, raw_data/<date>/calib_cam_to_cam.txt")  # fmt: skip


def read_rectified_intrinsics(calib: Path, camera: str = "02") -> np.ndarray:
    """(3, 3) intrinsics of rectified camera ``camera`` from a raw date's ``calib_cam_to_cam.txt`` (the left 3x3 of
    its ``P_rect_<camera>`` projection)."""
    key = f"P_rect_{camera}:"
    if calib.is_file():
        for line in calib.read_text().splitlines():
            if line.startswith(key):
                values = np.array(line[len(key) :].split(), np.float64)
                if values.size == 12:
                    return values.reshape(3, 4)[:, :3]
    raise InputError(f"{calib}: missing, or no 12-number {key} line (expected {LAYOUT})")


def _frames(depth_dir: Path, image_dir: Path, names: List[str], K: np.ndarray) -> Iterator[Frame]:
    for name in names:
        image = read_rgb(image_dir / name)
        depth = read_depth_png(depth_dir / name, KITTI_PER_METRE)
        if image.shape[:2] != depth.shape:
            raise InputError(f"{image_dir / name}: {image.shape[:2]} image for a {depth.shape} depth map")
        H, W = depth.shape
        height = min(H - H % 2, KITTI_WINDOW[0])
        width = min(W - W % 2, KITTI_WINDOW[1])
        yield crop(Frame(name[:-4], image, depth, K, np.eye(3, 4)), 0, height, 0, width)


def convert_kitti(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = KITTI_MAX_FRAMES,
) -> List[Path]:
    """KITTI depth's annotated validation sequences under ``root`` -> ``<out>/kitti-<sequence>``.

    Protocol (Video Depth Anything's ``dataset_extract_kitti.py`` and ``eval/eval.py``, its "110 frames like
    DepthCrafter" table):

    - scenes: the 13 ``val`` sequences (:data:`KITTI_SCENES`), camera ``image_02``;
    - frames: the annotated frames of a sequence in file order, the first ``max_frames`` (110);
    - crop, from the top left: the image to an even height and width (both papers), and the depth to rows
      0:374, columns 0:1242 (Video Depth Anything's eval window). We cut image and depth alike to both, so they
      stay pixel-aligned (374 x 1242 for the usual 375 x 1242 frames, as upstream; 374 x 1240 for a 376 x 1241
      frame, where upstream scores a 374 x 1241 depth against a prediction made on a 376 x 1240 image).
      DepthCrafter crops the depth to the even size only;
    - depth: 16-bit PNG / 256 (metres), 0 = none; scored where 1e-3 < depth < 80 m;
    - cameras: the rectified ``P_rect_02`` intrinsics; no poses (the depth benchmark has no odometry), so the
      scenes say ``has_poses: false``, extrinsics are identity and the video mode reports no TAE.

    Scenes already converted are kept; errors come before any work.
    """
    root, out = Path(root), Path(out)
    val = root / "data_depth_annotated" / "val"
    raw = root / "raw_data"
    if not val.is_dir() or not raw.is_dir():
        raise InputError(f"{root}: no data_depth_annotated/val or raw_data folder (expected {LAYOUT})")
    chosen = pick_scenes(scenes, KITTI_SCENES, lambda s: val / s, "KITTI", LAYOUT)
    plans = []
    for scene in chosen:
        depth_dir = val / scene / "proj_depth" / "groundtruth" / "image_02"
        image_dir = raw / scene[:10] / scene / "image_02" / "data"
        names = upstream_order(list_files(depth_dir, ".png", LAYOUT))
        names = names[:max_frames] if max_frames > 0 else names
        missing = [n for n in names if not (image_dir / n).is_file()]
        if missing:
            raise InputError(f"{image_dir / missing[0]}: missing raw image (expected {LAYOUT})")
        K = read_rectified_intrinsics(raw / scene[:10] / "calib_cam_to_cam.txt")
        plans.append((scene, depth_dir, image_dir, names, K))
    folders = []
    for scene, depth_dir, image_dir, names, K in plans:
        folder = out / f"kitti-{scene}"
        folders.append(folder)
        if is_complete(folder):
            continue
        frames = _frames(depth_dir, image_dir, names, K)
        write_sequence(folder, frames, "kitti", scene, KITTI_MAX_DEPTH, False, source=str(depth_dir),
                       source_frames=names, crop="even size, then rows 0:374, columns 0:1242")  # fmt: skip
    return folders
