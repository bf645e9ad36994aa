"""Camera trajectories of long sequences: upstream DA3-Streaming's text files, TUM and KITTI formats, NumPy arrays,
and a plot seen from above."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from anydepth.errors import ShapeError
from anydepth.io.atomic import PathLike, atomic_open

logger = logging.getLogger(__name__)

POSES_TXT = "camera_poses.txt"
"""Upstream's file: one camera-to-world 4x4 per line, row-major, 16 numbers."""
INTRINSICS_TXT = "intrinsic.txt"
"""Upstream's file: ``fx fy cx cy`` per line."""
TUM_TXT = "trajectory_tum.txt"
"""TUM RGB-D format: ``timestamp tx ty tz qx qy qz qw`` of camera-to-world per line."""
KITTI_TXT = "trajectory_kitti.txt"
"""KITTI odometry format: the top 3x4 of camera-to-world per line, row-major, 12 numbers."""


def to_4x4(extrinsics: np.ndarray) -> np.ndarray:
    """(N, 3|4, 4) -> (N, 4, 4) float64."""
    extrinsics = np.asarray(extrinsics, np.float64)
    if extrinsics.ndim != 3 or extrinsics.shape[1:] not in ((3, 4), (4, 4)):
        raise ShapeError(f"extrinsics must be (N, 3|4, 4), got {extrinsics.shape}")
    out = np.tile(np.eye(4), (len(extrinsics), 1, 1))
    out[:, :3, :4] = extrinsics[:, :3, :4]
    return out


def rigid_inverse(poses: np.ndarray) -> np.ndarray:
    """Inverse of (N, 4, 4) rigid transforms (w2c <-> c2w) without a general matrix inverse."""
    R, t = poses[:, :3, :3], poses[:, :3, 3]
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :3] = np.transpose(R, (0, 2, 1))
    out[:, :3, 3] = -np.einsum("nji,nj->ni", R, t)
    return out


def write_trajectory(
    folder: PathLike,
    w2c: np.ndarray,
    intrinsics: np.ndarray,
    timestamps: Optional[Sequence[float]] = None,
) -> List[Path]:
    """Write a sequence's cameras in every format: ``camera_poses.txt`` and ``intrinsic.txt`` (upstream's),
    ``trajectory_tum.txt``, ``trajectory_kitti.txt``, ``w2c.npy`` and ``c2w.npy`` (N, 4, 4), ``intrinsics.npy``
    (N, 3, 3) and ``poses.npz`` (all of them with the timestamps).

    Args:
        folder: the output folder.
        w2c: (N, 3|4, 4) world-to-camera, OpenCV.
        intrinsics: (N, 3, 3) pixel intrinsics.
        timestamps: (N,) seconds for TUM (default: the frame numbers).

    Returns:
        the paths written.
    """
    import torch

    from anydepth.geometry.rotations import rotation_matrix_to_quaternion

    folder = Path(folder)
    w2c = to_4x4(w2c)
    c2w = rigid_inverse(w2c)
    intrinsics = np.asarray(intrinsics, np.float64)
    if intrinsics.shape != (len(w2c), 3, 3):
        raise ShapeError(f"intrinsics must be ({len(w2c)}, 3, 3), got {intrinsics.shape}")
    stamps = np.arange(len(w2c), dtype=np.float64) if timestamps is None else np.asarray(timestamps, np.float64)
    quats = rotation_matrix_to_quaternion(torch.from_numpy(c2w[:, :3, :3])).numpy()  # (x, y, z, w)
    written = []

    def text(name: str, lines: List[str]) -> None:
        with atomic_open(folder / name, "w") as handle:
            handle.write("".join(line + "\n" for line in lines))
        written.append(folder / name)

    text(POSES_TXT, [" ".join(repr(float(v)) for v in pose.reshape(-1)) for pose in c2w])
    text(INTRINSICS_TXT, [" ".join(repr(float(v)) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])) for K in intrinsics])
    text(TUM_TXT, [" ".join(repr(float(v)) for v in (s, *c[:3, 3], *q)) for s, c, q in zip(stamps, c2w, quats)])
    text(KITTI_TXT, [" ".join(repr(float(v)) for v in pose[:3, :4].reshape(-1)) for pose in c2w])
    for name, array in (("w2c.npy", w2c), ("c2w.npy", c2w), ("intrinsics.npy", intrinsics)):
        with atomic_open(folder / name, "wb") as handle:
            np.save(handle, array)
        written.append(folder / name)
    with atomic_open(folder / "poses.npz", "wb") as handle:
        np.savez(handle, w2c=w2c, c2w=c2w, intrinsics=intrinsics, timestamps=stamps)
    written.append(folder / "poses.npz")
    return written


def read_tum(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """(timestamps (N,), c2w (N, 4, 4)) of a TUM trajectory file (comments with # skipped)."""
    import torch

    from anydepth.geometry.rotations import quaternion_to_rotation_matrix

    rows = np.loadtxt(path, comments="#", ndmin=2)
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, 3] = rows[:, 1:4]
    c2w[:, :3, :3] = quaternion_to_rotation_matrix(torch.from_numpy(rows[:, 4:8])).numpy()
    return rows[:, 0], c2w


def plot_trajectory(
    path: PathLike,
    c2w: np.ndarray,
    before: Optional[np.ndarray] = None,
    loops: Sequence[Tuple[int, int]] = (),
    title: str = "",
) -> Optional[Path]:
    """Camera centres seen from above (x, z), with the trajectory before loop closure dashed and each loop's two
    frames joined; None (and a log line) without matplotlib (``pip install 'anydepth[bench]'``)."""
    try:
        plt = _pyplot()
    except ImportError:
        logger.info("matplotlib is not installed; no trajectory plot (pip install 'anydepth[bench]')")
        return None
    centres = np.asarray(c2w)[:, :3, 3]
    fig, ax = plt.subplots(figsize=(6, 6))
    if before is not None:
        old = np.asarray(before)[:, :3, 3]
        ax.plot(old[:, 0], old[:, 2], "--", lw=1, color="#999999", label="before loop closure")
    ax.plot(centres[:, 0], centres[:, 2], "-", lw=1.2, color="#c44e52", label="cameras")
    ax.plot(centres[:1, 0], centres[:1, 2], "o", color="#2a7", label="first frame")
    for n, (a, b) in enumerate(loops):
        ax.plot(centres[[a, b], 0], centres[[a, b], 2], "-", color="#4c72b0", lw=0.8, label="loops" if n == 0 else None)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=110, format="png")
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
