"""DTU-64 (64 views per scan, camera poses only) as upstream DA3 evaluates it (:func:`convert_dtu64`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.bench.datasets.dtu import read_mvsnet_cam, reference_first
from anydepth.errors import InputError

logger = logging.getLogger(__name__)

# upstream's DTU64_SCENES
DTU64_SCENES = ("scan105", "scan114", "scan118", "scan122", "scan24", "scan37", "scan40", "scan55", "scan63",
                "scan65", "scan69", "scan83", "scan97")  # fmt: skip
_LAYOUT = "<root>/<scan>/image/XXXXXXXX.png, <root>/Cameras/XXXXXXXX_cam.txt"


def convert_dtu64(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """DTU-64 under ``root`` (upstream's ``benchmark_dataset/dtu64``: ``<scan>/image/<view:08d>.png`` and
    ``Cameras/<view:08d>_cam.txt``) -> ``<out>/dtu64-<scan>``, for the pose mode only.

    As upstream: the 13 scans of ``DTU64_SCENES``; the PNGs of ``image/`` sorted by name with the 34th moved first
    (upstream's reference view), those without a camera file skipped; :func:`sample_frames` keeps all 64 (fewer
    than 100). Poses are the MVSNet files' world-to-camera (millimetres), intrinsics theirs. Images are copied
    unchanged. The dataset has no ground-truth depth: ``depth/`` holds all-zero maps at each image's size (the
    layout needs a file per view) and ``scene.json`` says ``has_depth: false``, so the depth, video and
    reconstruction modes are refused. Scenes already converted are kept.
    """
    root, out = Path(root), Path(out)
    if not (root / "Cameras").is_dir():
        raise InputError(f"{root / 'Cameras'}: missing (expected {_LAYOUT})")
    wanted = list(scenes or DTU64_SCENES)
    for scene in wanted:
        if scene not in DTU64_SCENES:
            raise InputError(f"unknown DTU-64 scene {scene!r}; choose from {', '.join(DTU64_SCENES)}")
        if not (root / scene / "image").is_dir():
            raise InputError(f"{root / scene / 'image'}: missing (expected {_LAYOUT})")
    return [_convert_scene(root, scene, out / f"dtu64-{scene}", max_frames) for scene in wanted]


def _view_index(path: Path) -> int:
    try:
        return int(path.name.split(".")[0])
    except ValueError:
        raise InputError(f"{path}: not a DTU-64 image name (<view:08d>.png)") from None


def _convert_scene(root: Path, scene: str, folder: Path, max_frames: int) -> Path:
    import cv2

    files = reference_first(sorted((root / scene / "image").glob("*.png")))
    views = []
    for path in files:
        camera = root / "Cameras" / f"{_view_index(path):08d}_cam.txt"
        if camera.is_file():
            views.append((path, camera))
        else:  # upstream skips the view, with a warning
            logger.warning("%s: no camera file %s; view skipped", path, camera)
    if not views:
        raise InputError(f"{root / scene / 'image'}: no .png image with a camera file (expected {_LAYOUT})")
    views = [views[k] for k in sample_frames(len(views), max_frames)]
    if (folder / "cameras.npz").is_file():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    extrinsics, intrinsics = [], []
    for path, camera in views:
        K, w2c = read_mvsnet_cam(camera)
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"{path}: unreadable image")
        shutil.copyfile(path, folder / "images" / path.name)
        np.save(folder / "depth" / f"{path.stem}.npy", np.zeros(image.shape[:2], np.float32))
        extrinsics.append(w2c[:3])
        intrinsics.append(K)
    names = [path.name for path, _ in views]
    write_scene_meta(folder, "dtu64", scene, "mm", None, has_poses=True, reference=None, has_depth=False,
                     source=str(root / scene), frames=names)  # fmt: skip
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=names)  # fmt: skip
    return folder
