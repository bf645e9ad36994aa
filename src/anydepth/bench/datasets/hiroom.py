"""HiRoom (synthetic indoor rooms) as upstream DA3 evaluates it (:func:`convert_hiroom`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.errors import InputError

HIROOM_SCENE_LIST = "selected_scene_list_val.txt"  # upstream's HIROOM_SCENE_LIST_PATH, under the root
HIROOM_DEPTH_RANGE = 100.0  # 16-bit depth PNGs span 0..100 m: metres = value / 65535 * 100
HIROOM_FSCORE = 0.05  # HIROOM_EVAL_THRESHOLD (metres)
HIROOM_RECONSTRUCTION = {
    "voxel_length": 4.0 / 512.0,  # HIROOM_VOXEL_LENGTH (TSDF voxel, metres)
    "sdf_trunc": 0.04,  # HIROOM_SDF_TRUNC
    "fusion_max_depth": 10000.0,  # HIROOM_MAX_DEPTH: no truncation
    "sampling_number": 1_000_000,  # HIROOM_SAMPLING_NUMBER: points sampled from the fused TSDF mesh
    "down_sample": 4.0 / 512.0,  # HIROOM_DOWN_SAMPLE (evaluation voxel, metres)
}
_LAYOUT = (f"<root>/{HIROOM_SCENE_LIST}, <root>/data/<scene path>/{{image/, depth/*.png, pose/*.npy, cam_K.npy, "
           "aliasing_mask/*.png}, <root>/fused_pcd/<a-b-c>.ply")  # fmt: skip


def scene_name(path: str) -> str:
    """The name of a scene of the list, as upstream names its point cloud: its last three path parts joined by
    "-" ("x/a/b/c" -> "a-b-c")."""
    return "-".join(path.strip("/").split("/")[-3:])


def read_scene_list(root: Path) -> List[str]:
    """The scene paths (relative to ``<root>/data``) of upstream's validation list, in its order."""
    path = root / HIROOM_SCENE_LIST
    if not path.is_file():
        raise InputError(f"{path}: missing (expected {_LAYOUT})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def convert_hiroom(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """HiRoom under ``root`` (upstream's ``benchmark_dataset/hiroom``: ``selected_scene_list_val.txt``, the
    scenes under ``data/<scene path>/`` with ``image/``, ``depth/``, ``pose/``, ``aliasing_mask/`` and
    ``cam_K.npy``, and their fused point clouds ``fused_pcd/<a-b-c>.ply``) -> ``<out>/hiroom-<a-b-c>``, where
    ``a-b-c`` is the scene path's last three parts (:func:`scene_name`). ``scenes`` takes either form.

    As upstream: the scenes of the list; the files of ``image/`` sorted by name that have a ``pose/<frame>.npy``
    (world-to-camera), sampled by :func:`sample_frames` (100, seed 42); one ``cam_K.npy`` for every view; images
    copied unchanged. Depth is ``depth/<frame>.png``, 16-bit over 0..100 m (value / 65535 * 100 metres), 0 where
    it is 0 or ``aliasing_mask/<frame>.png`` is non-zero (upstream's validity mask). Reconstruction is scored
    against ``fused_pcd/<a-b-c>.ply`` (a point cloud, copied as ``reference.ply``) at 0.05 m, after TSDF fusion
    with a 1/128 m voxel and 0.04 m truncation: ``scene.json`` carries these. Scenes already converted are kept.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected {_LAYOUT})")
    listed = read_scene_list(root)
    by_name = {scene_name(path): path for path in listed}
    wanted = []
    for scene in scenes or listed:
        path = by_name.get(scene, scene if scene in listed else None)
        if path is None:
            raise InputError(f"unknown HiRoom scene {scene!r}; choose from {', '.join(by_name)} "
                             f"(the scenes of {root / HIROOM_SCENE_LIST})")  # fmt: skip
        for needed in ("image", "pose", "cam_K.npy"):
            if not (root / "data" / path / needed).exists():
                raise InputError(f"{root / 'data' / path / needed}: missing (expected {_LAYOUT})")
        wanted.append(path)
    return [_convert_scene(root, path, out / f"hiroom-{scene_name(path)}", max_frames) for path in wanted]


def _convert_scene(root: Path, path: str, folder: Path, max_frames: int) -> Path:
    import cv2

    scene_dir = root / "data" / path
    K = np.asarray(np.load(scene_dir / "cam_K.npy"), np.float64)
    if K.shape != (3, 3):
        raise InputError(f"{scene_dir / 'cam_K.npy'}: shape {K.shape}, expected (3, 3) pixel intrinsics")
    frames = [n for n in sorted(p.name for p in (scene_dir / "image").iterdir())
              if (scene_dir / "pose" / f"{n.split('.')[0]}.npy").is_file()]  # fmt: skip
    if not frames:
        raise InputError(f"{scene_dir / 'image'}: no image with a pose/<frame>.npy")
    frames = [frames[k] for k in sample_frames(len(frames), max_frames)]
    if (folder / "cameras.npz").is_file():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    extrinsics = []
    for name in frames:
        frame = name.split(".")[0]  # upstream's frame name: everything before the first dot
        shutil.copyfile(scene_dir / "image" / name, folder / "images" / name)
        pose_path = scene_dir / "pose" / f"{frame}.npy"
        w2c = np.asarray(np.load(pose_path), np.float64)
        if w2c.shape not in ((4, 4), (3, 4)):
            raise InputError(f"{pose_path}: shape {w2c.shape}, expected a (4, 4) world-to-camera matrix")
        extrinsics.append(w2c[:3])
        depth_path = scene_dir / "depth" / f"{frame}.png"
        raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED) if depth_path.is_file() else None
        if raw is None:  # no ground truth for this view (upstream then masks nothing)
            image = cv2.imread(str(scene_dir / "image" / name), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise InputError(f"{scene_dir / 'image' / name}: unreadable image")
            depth = np.zeros(image.shape[:2], np.float32)
        else:
            depth = (raw.astype(np.float64) / 65535.0 * HIROOM_DEPTH_RANGE).astype(np.float32)
            mask_path = scene_dir / "aliasing_mask" / f"{frame}.png"
            if mask_path.is_file():
                aliasing = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
                if aliasing is None or aliasing.shape[:2] != depth.shape:
                    raise InputError(f"{mask_path}: unreadable or not the size of {depth_path}")
                depth[(aliasing > 0) if aliasing.ndim == 2 else (aliasing > 0).any(axis=2)] = 0.0
        np.save(folder / "depth" / f"{Path(name).stem}.npy", depth)
    reference = None
    cloud = root / "fused_pcd" / f"{scene_name(path)}.ply"
    if cloud.is_file():
        shutil.copyfile(cloud, folder / "reference.ply")
        reference = "reference.ply"
    write_scene_meta(folder, "hiroom", scene_name(path), "m", HIROOM_FSCORE, has_poses=True, reference=reference,
                     source=str(scene_dir), frames=frames, **HIROOM_RECONSTRUCTION)  # fmt: skip
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.repeat(K[None], len(frames), 0),
             image_names=frames)  # fmt: skip
    return folder
