"""DTU MVS (49 views, millimetres, MVSNet's evaluation protocol) as upstream DA3 evaluates it (:func:`convert_dtu`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.errors import InputError

logger = logging.getLogger(__name__)

# upstream's DTU_SCENES: the 22 evaluation scans of MVSNet
DTU_SCENES = ("scan1", "scan4", "scan9", "scan10", "scan11", "scan12", "scan13", "scan15", "scan23", "scan24",
              "scan29", "scan32", "scan33", "scan34", "scan48", "scan49", "scan62", "scan75", "scan77", "scan110",
              "scan114", "scan118")  # fmt: skip
DTU_REFERENCE_VIEW = 33  # upstream puts the 34th view (sorted by name) first
DTU_MASK_THRESHOLD = 10  # depth_visual_*.png above 10 marks the pixels with ground truth (upstream's mask)
DTU_PROTOCOL = {
    "max_dist": 20,  # DTU_MAX_DIST: distances above 20 mm are outliers, left out of accuracy and completeness
    "patch_size": 60,  # DTU_PATCH_SIZE: margin (mm) around the observation mask's bounding box
    "down_dense": 0.2,  # DTU_DOWN_DENSE: the prediction thinned to points 0.2 mm apart
    "dist_thresh": 0.2,  # DTU_DIST_THRESH: a view agrees with a fused point within 0.2 mm
    "num_consist": 4,  # DTU_NUM_CONSIST: a point is kept when at least 4 views agree (posed fusion)
    "max_points": 4_000_000,  # DTU_MAX_POINTS: the fused cloud capped (random, seed 42)
}
_LAYOUT = (
    "<root>/Rectified/<scan>/rect_XXX_*.png, <root>/Cameras/XXXXXXXX_cam.txt, "
    "<root>/depth_raw/Depths/<scan>/depth_visual_XXXX.png (and depth_map_XXXX.pfm), "
    "<root>/Points/stl/stlXXX_total.ply, <root>/SampleSet/mvs_data/ObsMask/{ObsMaskX_10,PlaneX}.mat"
)

T = TypeVar("T")


def reference_first(items: Sequence[T]) -> List[T]:
    """Upstream's view order: the 34th item first, then the others in order (unchanged with 33 or fewer).

    Example:
        >>> reference_first(list(range(36)))[:3], reference_first(list(range(36)))[33:]
        ([33, 0, 1], [32, 34, 35])
    """
    items = list(items)
    if len(items) <= DTU_REFERENCE_VIEW:
        return items
    return [items[DTU_REFERENCE_VIEW], *items[:DTU_REFERENCE_VIEW], *items[DTU_REFERENCE_VIEW + 1 :]]


def read_mvsnet_cam(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """An MVSNet camera file: ``(K (3, 3), w2c (4, 4))``, the ``extrinsic`` block on lines 2-5 and the
    ``intrinsic`` block on lines 8-10 (a last line of depth range is ignored)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    try:
        w2c = np.array(" ".join(lines[1:5]).split(), dtype=np.float64).reshape(4, 4)
        K = np.array(" ".join(lines[7:10]).split(), dtype=np.float64).reshape(3, 3)
    except ValueError:
        raise InputError(f"{path}: missing or not an MVSNet camera file ('extrinsic', 4 lines of a 4x4 "
                         "world-to-camera matrix, a blank line, 'intrinsic', 3 lines of K)") from None  # fmt: skip
    return K, w2c


def read_pfm(path: Path) -> np.ndarray:
    """A greyscale PFM image as (H, W) float32, top row first (PFM stores the bottom row first)."""
    with open(path, "rb") as handle:
        header = handle.readline().strip()
        dims = handle.readline().split()
        scale = handle.readline().strip()
        try:
            width, height, scale = int(dims[0]), int(dims[1]), float(scale)
        except (IndexError, ValueError):
            raise InputError(f"{path}: not a PFM file (expected 'Pf', 'W H', scale)") from None
        if header != b"Pf":
            raise InputError(f"{path}: a {header!r} PFM; expected a greyscale ('Pf') depth map")
        data = np.frombuffer(handle.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != width * height:
        raise InputError(f"{path}: {data.size} values for {width}x{height}")
    return np.flipud(data.reshape(height, width)).astype(np.float32)


def view_index(name: str) -> int:
    """The camera index of a rectified image: ``rect_034_3_r5000.png`` -> 33 (the file counts from 1)."""
    try:
        return int(name.split("_")[1]) - 1
    except (IndexError, ValueError):
        raise InputError(f"{name}: not a DTU rectified image name (rect_XXX_L_r5000.png)") from None


def convert_dtu(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """DTU under ``root`` (upstream's ``benchmark_dataset/dtu``, MVSNet's evaluation data: ``Rectified/<scan>/``,
    ``Cameras/``, ``depth_raw/Depths/<scan>/``, ``Points/stl/``, ``SampleSet/mvs_data/ObsMask/``) ->
    ``<out>/dtu-<scan>``, in millimetres.

    As upstream: the 22 scans of ``DTU_SCENES``; the PNGs of ``Rectified/<scan>/`` sorted by name with the 34th
    moved first (:func:`reference_first`; upstream's reference view), each with ``Cameras/<view:08d>_cam.txt``
    (MVSNet format: world-to-camera and K at the image's size, millimetres); :func:`sample_frames` keeps all 49
    (fewer than 100). Images are copied unchanged. Depth is ``depth_raw/Depths/<scan>/depth_map_<view:04d>.pfm``
    in millimetres where ``depth_visual_<view:04d>.png`` is above 10 (upstream's mask for the predicted depth),
    0 elsewhere; the masks themselves go to ``masks/<stem>.png`` (255 = ground truth). Without the PFM files
    (upstream reads only the masks) depth is all 0 and ``has_depth`` false. Reconstruction is scored as MVSNet
    does, against ``Points/stl/stl<id:03>_total.ply`` (``reference.ply``) within ``ObsMask<id>_10.mat``
    (``obs_mask.mat``) and above ``Plane<id>.mat`` (``ground_plane.mat``); ``scene.json``'s ``dtu`` block carries
    these and upstream's constants (max_dist 20 mm, patch 60, down_dense 0.2, fusion dist_thresh 0.2 mm and
    num_consist 4, max_points 4,000,000). Upstream reports no F-score for DTU, so ``fscore_threshold`` is None.
    Scenes already converted are kept.
    """
    root, out = Path(root), Path(out)
    for needed in ("Rectified", "Cameras"):
        if not (root / needed).is_dir():
            raise InputError(f"{root / needed}: missing (expected {_LAYOUT})")
    wanted = list(scenes or DTU_SCENES)
    for scene in wanted:
        if scene not in DTU_SCENES:
            raise InputError(f"unknown DTU scene {scene!r}; choose from {', '.join(DTU_SCENES)}")
        if not (root / "Rectified" / scene).is_dir():
            raise InputError(f"{root / 'Rectified' / scene}: missing (expected {_LAYOUT})")
        if not (root / "depth_raw" / "Depths" / scene).is_dir():
            raise InputError(f"{root / 'depth_raw' / 'Depths' / scene}: missing (upstream's depth masks; "
                             f"expected {_LAYOUT})")  # fmt: skip
    return [_convert_scene(root, scene, out / f"dtu-{scene}", max_frames) for scene in wanted]


def _convert_scene(root: Path, scene: str, folder: Path, max_frames: int) -> Path:
    import cv2

    files = reference_first(sorted(p.name for p in (root / "Rectified" / scene).glob("*.png")))
    if not files:
        raise InputError(f"{root / 'Rectified' / scene}: no .png image (expected {_LAYOUT})")
    files = [files[k] for k in sample_frames(len(files), max_frames)]
    if (folder / "cameras.npz").is_file():
        return folder
    for sub in ("images", "depth", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    depth_dir = root / "depth_raw" / "Depths" / scene
    extrinsics, intrinsics, with_depth = [], [], 0
    for name in files:
        view = view_index(name)
        K, w2c = read_mvsnet_cam(root / "Cameras" / f"{view:08d}_cam.txt")
        shutil.copyfile(root / "Rectified" / scene / name, folder / "images" / name)
        mask_path = depth_dir / f"depth_visual_{view:04d}.png"
        visual = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if visual is None:
            raise InputError(f"{mask_path}: missing or unreadable (upstream's depth mask; expected {_LAYOUT})")
        mask = visual > DTU_MASK_THRESHOLD
        stem = Path(name).stem
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask.astype(np.uint8) * 255)
        depth = np.zeros(mask.shape, np.float32)
        pfm = depth_dir / f"depth_map_{view:04d}.pfm"
        if pfm.is_file():
            values = read_pfm(pfm)
            if values.shape != mask.shape:
                raise InputError(f"{pfm}: {values.shape[1]}x{values.shape[0]}, its mask {mask_path} is "
                                 f"{mask.shape[1]}x{mask.shape[0]}")  # fmt: skip
            keep = mask & np.isfinite(values) & (values > 0)
            depth[keep] = values[keep]
            with_depth += 1
        np.save(folder / "depth" / f"{stem}.npy", depth)
        extrinsics.append(w2c[:3])
        intrinsics.append(K)
    if 0 < with_depth < len(files):
        logger.warning("%s: %d of %d views have no depth_map_*.pfm", depth_dir, len(files) - with_depth, len(files))
    scan_id = int(scene[len("scan") :])
    copies = {
        "reference.ply": root / "Points" / "stl" / f"stl{scan_id:03d}_total.ply",
        "obs_mask.mat": root / "SampleSet" / "mvs_data" / "ObsMask" / f"ObsMask{scan_id}_10.mat",
        "ground_plane.mat": root / "SampleSet" / "mvs_data" / "ObsMask" / f"Plane{scan_id}.mat",
    }
    present = {}
    for target, source in copies.items():
        if source.is_file():
            shutil.copyfile(source, folder / target)
            present[target] = target
        else:
            logger.warning("%s: missing; DTU reconstruction of %s cannot be scored as MVSNet does", source, scene)
    protocol = {"obs_mask": present.get("obs_mask.mat"), "ground_plane": present.get("ground_plane.mat"),
                "masks": "masks", **DTU_PROTOCOL}  # fmt: skip
    write_scene_meta(folder, "dtu", scene, "mm", None, has_poses=True, reference=present.get("reference.ply"),
                     has_depth=with_depth > 0, masks="masks", source=str(root), frames=files, dtu=protocol)  # fmt: skip
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=files)  # fmt: skip
    return folder
