"""Microsoft 7-Scenes as upstream DA3 evaluates it (:func:`convert_7scenes`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.errors import InputError

SEVEN_SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")
SEVEN_SCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])
SEVEN_SCENES_INVALID = 65535
SEVEN_SCENES_FSCORE = 0.05  # upstream's precision / recall distance (metres)
# upstream's TSDF fusion and evaluation sampling for 7-Scenes (metres; no depth truncation)
SEVEN_SCENES_FUSION = {"voxel_length": 4.0 / 512.0, "sdf_trunc": 0.04, "fusion_max_depth": 1e6,
                       "sampling_number": 1_000_000, "down_sample": 4.0 / 512.0}  # fmt: skip


def _has_image_and_pose(sequence: Path, index: int) -> bool:
    stem = f"frame-{index:06d}"
    return (sequence / f"{stem}.color.png").is_file() and (sequence / f"{stem}.pose.txt").is_file()


def convert_7scenes(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """7-Scenes under ``root`` (``<root>/7Scenes/<scene>/seq-01/frame-XXXXXX.{color.png,depth.png,pose.txt}``;
    ``stairs`` uses ``seq-02``, as upstream) -> ``<out>/7scenes-<scene>`` in the ground-truth layout.

    As upstream: frames 0..999 (stairs 0..499) that have a colour image and a pose, sampled by
    :func:`sample_frames`; poses are camera-to-world (inverted to world-to-camera); intrinsics fixed at fx = fy =
    585, cx = 320, cy = 240. Depth is the sensor's 16-bit PNG in millimetres, 65535 (and 0) meaning none, written
    in metres. The sensor's depth is not registered to the colour camera: upstream uses it as a validity mask and
    scores reconstruction against the scene meshes (``7Scenes/meshes/<scene>.ply``), so depth scores on it are
    approximate. Scenes already converted are kept.
    """
    import cv2

    root, out = Path(root), Path(out)
    base = root / "7Scenes"
    if not base.is_dir():
        raise InputError(f"{root}: no 7Scenes/ folder (expected 7Scenes/<scene>/seq-01/frame-000000.color.png ...)")
    folders = []
    for scene in scenes or SEVEN_SCENES:
        if scene not in SEVEN_SCENES:
            raise InputError(f"unknown 7-Scenes scene {scene!r}; choose from {', '.join(SEVEN_SCENES)}")
        seq, count = ("seq-02", 500) if scene == "stairs" else ("seq-01", 1000)
        source = base / scene / seq
        if not source.is_dir():
            raise InputError(f"{source}: missing (expected frame-XXXXXX.color.png, .depth.png and .pose.txt)")

        frames = [i for i in range(count) if _has_image_and_pose(source, i)]
        if not frames:
            raise InputError(f"{source}: no frame with both a colour image and a pose")
        chosen = [frames[k] for k in sample_frames(len(frames), max_frames)]
        folder = out / f"7scenes-{scene}"
        folders.append(folder)
        if (folder / "cameras.npz").is_file():
            continue
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "depth").mkdir(exist_ok=True)
        extrinsics, names = [], []
        for index in chosen:
            stem = f"frame-{index:06d}"
            shutil.copyfile(source / f"{stem}.color.png", folder / "images" / f"{stem}.png")
            c2w = np.loadtxt(source / f"{stem}.pose.txt")
            if c2w.shape != (4, 4):
                raise InputError(f"{source / (stem + '.pose.txt')}: not a 4x4 camera-to-world matrix")
            extrinsics.append(np.linalg.inv(c2w)[:3])
            raw = cv2.imread(str(source / f"{stem}.depth.png"), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise InputError(f"{source / (stem + '.depth.png')}: missing or unreadable (16-bit PNG, millimetres)")
            depth = np.where((raw == SEVEN_SCENES_INVALID) | (raw == 0), 0.0, raw / 1000.0).astype(np.float32)
            np.save(folder / "depth" / f"{stem}.npy", depth)
            names.append(f"{stem}.png")
        intrinsics = np.repeat(SEVEN_SCENES_K[None], len(names), axis=0)
        reference = None
        mesh = base / "meshes" / f"{scene}.ply"
        if mesh.is_file():  # upstream scores reconstruction against the scene's mesh
            shutil.copyfile(mesh, folder / "reference.ply")
            reference = "reference.ply"
        write_scene_meta(folder, "7scenes", scene, "m", SEVEN_SCENES_FSCORE, has_poses=True, reference=reference,
                         source=str(source), frames=[int(i) for i in chosen], **SEVEN_SCENES_FUSION)  # fmt: skip
        np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=intrinsics, image_names=names)
    return folders
