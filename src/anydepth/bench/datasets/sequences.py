"""What the video-benchmark readers share: one sequence written into the ground-truth layout, frame order as the
extraction scripts sort, crops that carry the intrinsics along, and 16-bit depth PNGs read into metres.

The video papers (DepthCrafter's ``benchmark/``, Video Depth Anything's ``benchmark/``) score each sequence as one
video: one least-squares scale and shift in disparity over all its frames, ground-truth pixels in
(1e-3, max_depth) (both scripts also declare ``min_depth_eval = 0.1`` and never use it), predictions resized to the
ground truth's size. The readers write each sequence as one scene folder whose ``cameras.npz`` lists the frames in
order, and ``scene.json``'s ``min_depth`` / ``max_depth`` hold that range, so ``bench score --modes video``
reproduces the protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.bench.datasets import write_scene_meta
from anydepth.errors import InputError

logger = logging.getLogger(__name__)

VALID_MIN_DEPTH = 1e-3
"""The lower end of the ground-truth depth both papers' scripts actually score (their valid mask: gt > 1e-3)."""


@dataclass
class Frame:
    """One frame of a sequence, ready to write.

    Attributes:
        name: the file stem of the frame (``images/<name>.png``, ``depth/<name>.npy``).
        image: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 z-depth in metres, 0 where there is none.
        intrinsics: (3, 3) pixels, for ``image`` as cropped.
        extrinsics: (3, 4) world-to-camera, OpenCV; identity where the dataset has no cameras.
    """

    name: str
    image: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray


def upstream_order(names: Iterable[str]) -> List[str]:
    """File names in the order the extraction scripts put them: sorted, then (stably) by the integer in the last
    four characters of the stem (``frame_0010.png`` after ``frame_0009.png``).

    Example:
        >>> upstream_order(["frame_0010.png", "frame_0002.png", "frame_0001.png"])
        ['frame_0001.png', 'frame_0002.png', 'frame_0010.png']
    """
    names = sorted(names)
    odd = [n for n in names if not n.split(".")[0][-4:].isdigit()]
    if odd:
        raise InputError(f"{odd[0]}: a frame name that does not end in a 4-digit number (frame_0001.png)")
    return sorted(names, key=lambda n: int(n.split(".")[0][-4:]))


def list_files(folder: Path, suffix: str, expected: str) -> List[str]:
    """The names of the ``suffix`` files in ``folder``; a missing folder or none at all is one :class:`InputError`
    naming ``expected`` (the dataset's layout)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: missing (expected {expected})")
    names = [p.name for p in folder.iterdir() if p.name.endswith(suffix)]
    if not names:
        raise InputError(f"{folder}: no {suffix} file (expected {expected})")
    return names


def pick_scenes(
    requested: Optional[Sequence[str]],
    default: Sequence[str],
    folder_of: Callable[[str], Path],
    dataset: str,
    expected: str,
) -> List[str]:
    """The scenes to convert: ``requested`` or the evaluation's ``default`` list, each checked to exist under the
    root before any work (a scene outside the default list is accepted when its folder is there)."""
    scenes = list(requested) if requested else list(default)
    for scene in scenes:
        if not folder_of(scene).is_dir():
            if scene in default:
                raise InputError(f"{folder_of(scene)}: missing (expected {expected})")
            raise InputError(f"{folder_of(scene)}: missing; unknown {dataset} scene {scene!r} (the evaluation's: "
                             f"{', '.join(default)}); expected {expected}")  # fmt: skip
    return scenes


def crop(frame: Frame, top: int, bottom: int, left: int, right: int) -> Frame:
    """``frame`` cut to rows ``top:bottom`` and columns ``left:right`` (image and depth alike), the principal point
    moved with it.

    Example:
        >>> f = Frame("a", np.zeros((6, 8, 3), np.uint8), np.ones((6, 8), np.float32), np.eye(3), np.eye(3, 4))
        >>> c = crop(f, 1, 5, 2, 8)
        >>> c.image.shape, c.depth.shape, float(c.intrinsics[0, 2]), float(c.intrinsics[1, 2])
        ((4, 6, 3), (4, 6), -2.0, -1.0)
    """
    K = np.array(frame.intrinsics, np.float64)
    K[0, 2] -= left
    K[1, 2] -= top
    return Frame(frame.name, frame.image[top:bottom, left:right], frame.depth[top:bottom, left:right], K,
                 frame.extrinsics)  # fmt: skip


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; unreadable is one :class:`InputError`."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: missing or not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def read_depth_png(path: Path, per_metre: float) -> np.ndarray:
    """(H, W) float32 metres of a 16-bit depth PNG storing ``per_metre`` units per metre; 0 stays 0 (no depth)."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise InputError(f"{path}: missing or not a single-channel 16-bit depth PNG")
    return (raw.astype(np.float64) / per_metre).astype(np.float32)


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """float32 depth with every non-finite or non-positive value set to 0 (the layout's "no depth")."""
    depth = np.asarray(depth, np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def invert_pose(c2w: np.ndarray) -> np.ndarray:
    """(3, 4) world-to-camera of a (4, 4) or (3, 4) camera-to-world pose."""
    c2w = np.asarray(c2w, np.float64)
    R, t = c2w[:3, :3], c2w[:3, 3]
    return np.concatenate([R.T, (-R.T @ t)[:, None]], axis=1)


def write_sequence(
    folder: Path,
    frames: Iterable[Frame],
    dataset: str,
    scene: str,
    max_depth: float,
    has_poses: bool,
    **extra: Any,
) -> Path:
    """Write one sequence, frames in order, into ``folder`` in the ground-truth layout: ``images/<name>.png``,
    ``depth/<name>.npy``, ``scene.json`` and, last, ``cameras.npz`` (whose presence marks the scene complete).

    ``frames`` is consumed one frame at a time (bounded memory); every frame must have the first one's size.
    ``has_poses`` False writes identity extrinsics and tells scoring there are no ground-truth cameras.
    """
    import cv2

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    names: List[str] = []
    extrinsics, intrinsics = [], []
    size: Optional[Tuple[int, int]] = None
    for frame in frames:
        if frame.image.shape[:2] != frame.depth.shape:
            raise InputError(f"{dataset} {scene} {frame.name}: image {frame.image.shape[:2]} and depth "
                             f"{frame.depth.shape} differ in size")  # fmt: skip
        if size is None:
            size = frame.depth.shape
        elif frame.depth.shape != size:
            raise InputError(f"{dataset} {scene} {frame.name}: a {frame.depth.shape} frame in a {size} sequence")
        ok = cv2.imwrite(str(folder / "images" / f"{frame.name}.png"), np.ascontiguousarray(frame.image[..., ::-1]))
        if not ok:
            raise InputError(f"{folder / 'images'}: cannot write {frame.name}.png")
        np.save(folder / "depth" / f"{frame.name}.npy", clean_depth(frame.depth))
        names.append(f"{frame.name}.png")
        intrinsics.append(np.asarray(frame.intrinsics, np.float64))
        extrinsics.append(np.asarray(frame.extrinsics, np.float64) if has_poses else np.eye(3, 4))
    if not names:
        raise InputError(f"{dataset} {scene}: no frame to write")
    write_scene_meta(folder, dataset, scene, "m", None, VALID_MIN_DEPTH, max_depth, has_poses, **extra)
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=np.array(names))  # fmt: skip
    logger.info("%s %s: %d frames written to %s", dataset, scene, len(names), folder)
    return folder


def is_complete(folder: Path) -> bool:
    """Whether a scene folder was written to the end (its ``cameras.npz`` exists): kept as it is."""
    return (folder / "cameras.npz").is_file()
