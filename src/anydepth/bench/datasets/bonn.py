"""Bonn RGB-D Dynamic as the video-depth papers evaluate it (:func:`convert_bonn`), with its TUM-format ground-truth
trajectory associated to the frames so that TAE can be computed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

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

BONN_SCENES = ("balloon2", "crowd2", "crowd3", "person_tracking", "synchronous")
"""DepthCrafter's five sequences (``meta_bonn.csv``), folders ``rgbd_bonn_<scene>``."""
BONN_MAX_DEPTH = 10.0
BONN_START, BONN_MAX_FRAMES = 30, 110  # "110 frames like DepthCrafter": frames [30, 140)
BONN_PER_METRE = 5000.0
BONN_K = np.array([[542.822841, 0.0, 315.593520], [0.0, 542.576870, 237.756098], [0.0, 0.0, 1.0]])
"""The RGB-D camera's intrinsics as the dataset's page gives them (fx, fy, cx, cy; 640 x 480)."""
BONN_MAX_POSE_GAP = 0.02  # seconds: TUM's associate.py default for matching a frame to a trajectory sample
LAYOUT = ("rgbd_bonn_<scene>/rgb/<timestamp>.png, rgbd_bonn_<scene>/depth/<timestamp>.png (16-bit, metres x 5000) "
          "and rgbd_bonn_<scene>/groundtruth.txt (TUM: timestamp tx ty tz qx qy qz qw)")  # fmt: skip


def read_tum_trajectory(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(timestamps (M,), camera-to-world (M, 4, 4)) of a TUM trajectory file (``#`` lines are comments)."""
    try:
        rows = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError):
        raise InputError(f"{path}: missing or unreadable (expected {LAYOUT})") from None
    if rows.shape[1] != 8 or len(rows) == 0:
        raise InputError(f"{path}: {rows.shape[1]} columns; expected timestamp tx ty tz qx qy qz qw")
    import torch

    from anydepth.geometry.rotations import quaternion_to_rotation_matrix

    poses = np.repeat(np.eye(4)[None], len(rows), axis=0)
    poses[:, :3, :3] = quaternion_to_rotation_matrix(torch.from_numpy(rows[:, 4:8].copy())).numpy()
    poses[:, :3, 3] = rows[:, 1:4]
    return rows[:, 0], poses


def _by_time(names: List[str]) -> List[str]:
    """Bonn's files are named by their timestamp; upstream sorts them by name, then by the last four digits of the
    whole seconds, which is time order within a sequence."""
    return sorted(names, key=lambda n: float(n[:-4]))


def _frames(source: Path, pairs: List[Tuple[str, str]], poses: List[np.ndarray]) -> Iterator[Frame]:
    for (rgb, depth_name), w2c in zip(pairs, poses):
        image = read_rgb(source / "rgb" / rgb)
        depth = read_depth_png(source / "depth" / depth_name, BONN_PER_METRE)
        H, W = depth.shape
        yield crop(Frame(rgb[:-4], image, depth, BONN_K, w2c), 0, H - H % 2, 0, W - W % 2)


def convert_bonn(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = BONN_MAX_FRAMES,
    *,
    start: int = BONN_START,
) -> List[Path]:
    """Bonn RGB-D Dynamic sequences under ``root`` -> ``<out>/bonn-<scene>``.

    Protocol (Video Depth Anything's ``dataset_extract_bonn.py`` and ``eval/eval.py``, its "110 frames like
    DepthCrafter" table; DepthCrafter's ``dataset_extract_bonn.py`` takes the same frames):

    - scenes: balloon2, crowd2, crowd3, person_tracking, synchronous (:data:`BONN_SCENES`);
    - frames: the colour and the depth files each sorted by timestamp and paired by position, as upstream does
      (it never reads ``rgb.txt`` / ``depth.txt``; the largest colour-depth time gap is kept in scene.json as
      ``max_rgb_depth_gap_s``); frames ``start`` (30) to ``start + max_frames`` (140);
    - crop: to an even height and width from the top left (nothing for the 640 x 480 frames);
    - depth: 16-bit PNG / 5000 (metres), 0 = none; scored where 1e-3 < depth < 10 m;
    - intrinsics: fixed, :data:`BONN_K`;
    - cameras: ``groundtruth.txt`` (TUM format, camera-to-world) at the trajectory sample nearest each colour
      frame's timestamp, inverted to world-to-camera, so the video mode reports TAE (neither paper reports TAE on
      Bonn). A frame with no sample within 0.02 s writes the scene without poses (``has_poses`` false). The poses
      are taken as the dataset gives them, without any marker-to-camera correction.

    Scenes already converted are kept; errors come before any work.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such Bonn folder (expected {LAYOUT})")
    if start < 0:
        raise InputError(f"Bonn frames: start {start} must be >= 0")
    chosen = pick_scenes(scenes, BONN_SCENES, lambda s: root / f"rgbd_bonn_{s}", "Bonn", LAYOUT)
    plans = []
    for scene in chosen:
        source = root / f"rgbd_bonn_{scene}"
        rgb = _by_time(list_files(source / "rgb", ".png", LAYOUT))
        depth = _by_time(list_files(source / "depth", ".png", LAYOUT))
        stop = start + max_frames if max_frames > 0 else None
        pairs = list(zip(rgb, depth))[start:stop]
        if not pairs:
            raise InputError(f"{source}: {len(rgb)} colour frames, none from frame {start} (expected {LAYOUT})")
        times, c2w = read_tum_trajectory(source / "groundtruth.txt")
        plans.append((scene, source, pairs, times, c2w))
    folders = []
    for scene, source, pairs, times, c2w in plans:
        folder = out / f"bonn-{scene}"
        folders.append(folder)
        if is_complete(folder):
            continue
        stamps = np.array([float(r[:-4]) for r, _ in pairs])
        nearest = np.abs(stamps[:, None] - times[None, :]).argmin(axis=1)
        gaps = np.abs(times[nearest] - stamps)
        has_poses = bool((gaps <= BONN_MAX_POSE_GAP).all())
        if not has_poses:
            logger.warning("Bonn %s: %d frame(s) without a ground-truth pose within %.2f s; written without poses",
                           scene, int((gaps > BONN_MAX_POSE_GAP).sum()), BONN_MAX_POSE_GAP)  # fmt: skip
        poses = [invert_pose(c2w[k]) for k in nearest]
        depth_gap = max(abs(float(r[:-4]) - float(d[:-4])) for r, d in pairs)
        write_sequence(folder, _frames(source, pairs, poses), "bonn", scene, BONN_MAX_DEPTH, has_poses,
                       source=str(source), source_frames=[r for r, _ in pairs], max_rgb_depth_gap_s=depth_gap,
                       max_pose_gap_s=float(gaps.max()))  # fmt: skip
    return folders
