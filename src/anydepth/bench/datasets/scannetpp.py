"""ScanNet++ (iPhone views, upstream's re-calibrated poses) as upstream DA3 evaluates it (:func:`convert_scannetpp`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from anydepth.bench.datasets import sample_frames, write_scene_meta
from anydepth.errors import InputError, require

# upstream's SCANNETPP_SCENES: 20 validation scenes
SCANNETPP_SCENES = ("09c1414f1b", "1ada7a0617", "40aec5fffa", "3e8bba0176", "acd95847c5", "578511c8a9",
                    "5f99900f09", "c4c04e6d6c", "f3d64c30f8", "7bc286c1b6", "c5439f4607", "286b55a2bf",
                    "fb5a96b1a2", "7831862f02", "38d58a7a31", "bde1e479ad", "9071e139d9", "21d970d8de",
                    "bcd2436daf", "cc5237fd77")  # fmt: skip
SCANNETPP_SIZE = (768, 1024)  # SCANNETPP_INPUT_H, SCANNETPP_INPUT_W: every view after undistortion and resize
SCANNETPP_FSCORE = 0.05  # SCANNETPP_EVAL_THRESHOLD (metres)
SCANNETPP_RECONSTRUCTION = {
    "voxel_length": 0.02,  # SCANNETPP_VOXEL_LENGTH (TSDF voxel, metres)
    "sdf_trunc": 0.15,  # SCANNETPP_SDF_TRUNC
    "fusion_max_depth": 5.0,  # SCANNETPP_MAX_DEPTH: depth beyond 5 m is not fused
    "sampling_number": 1_000_000,  # SCANNETPP_SAMPLING_NUMBER
    "down_sample": 0.02,  # SCANNETPP_DOWN_SAMPLE (evaluation voxel, metres)
    # upstream's eval3d keeps the predicted points inside the reference's bounding box grown by 0.1 m
    "crop_to_reference": 0.1,
}
_MODEL = Path("merge_dslr_iphone") / "colmap" / "sparse_render_rgb"
_LAYOUT = ("<root>/<scene>/merge_dslr_iphone/{colmap/sparse_render_rgb/ (COLMAP model), images/iphone/*.jpg, "
           "render_depth/*.png}, <root>/<scene>/scans/mesh_aligned_0.05.ply")  # fmt: skip


def frame_geometry(model: str, params: Sequence[float], width: int, height: int) -> Tuple[np.ndarray, Optional[tuple]]:
    """The camera of a converted view, and how to get there from the raw image.

    Returns ``(K, undistort)``: ``K`` (3, 3) of the ``SCANNETPP_SIZE`` view, principal point with pixel centres at
    +0.5 (COLMAP's, and the ground-truth layout's, convention), and ``undistort`` None for an undistorted camera,
    else ``(K_raw, distortion, K_new, roi)`` for OpenCV (pixel centres at integers): as upstream, an ``OPENCV``
    camera is undistorted onto ``cv2.getOptimalNewCameraMatrix(alpha=1)`` and cropped to its valid ``roi``
    (x, y, w, h) before the resize. Other models' distortion is ignored, as upstream does.
    """
    import cv2

    fx, fy, cx, cy = (float(p) for p in params[:4])
    target_h, target_w = SCANNETPP_SIZE
    undistort = None
    if model == "OPENCV":
        K_raw = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
        distortion = np.zeros(5)
        distortion[:4] = [float(p) for p in params[4:8]]
        K_new, roi = cv2.getOptimalNewCameraMatrix(K_raw, distortion, (width, height), 1, (width, height))
        x, y, w, h = (int(v) for v in roi)
        if w <= 0 or h <= 0:
            raise InputError(f"an OPENCV camera {list(params)} leaves no valid region after undistortion")
        fx, fy = K_new[0, 0], K_new[1, 1]
        cx, cy = K_new[0, 2] + 0.5 - x, K_new[1, 2] + 0.5 - y  # back to centres at +0.5, in the cropped frame
        undistort = (K_raw, distortion, K_new, (x, y, w, h))
        width, height = w, h
    sx, sy = target_w / width, target_h / height  # with centres at +0.5 a resize scales cx and cy like fx and fy
    K = np.array([[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]])
    return K, undistort


def _to_frame(array: np.ndarray, undistort: Optional[tuple], nearest: bool) -> np.ndarray:
    """One raw image or depth map as the converted view: undistorted and cropped where ``undistort`` says, then
    resized to ``SCANNETPP_SIZE`` (area for images, as upstream; nearest for depth, which must not blend)."""
    import cv2

    if undistort is not None:
        K_raw, distortion, K_new, (x, y, w, h) = undistort
        size = (array.shape[1], array.shape[0])
        map_x, map_y = cv2.initUndistortRectifyMap(K_raw, distortion, None, K_new, size, cv2.CV_32FC1)
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        array = cv2.remap(array, map_x, map_y, interpolation)[y : y + h, x : x + w]
    target_h, target_w = SCANNETPP_SIZE
    return cv2.resize(array, (target_w, target_h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def convert_scannetpp(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = 100,
) -> List[Path]:
    """ScanNet++ under ``root`` (upstream's ``benchmark_dataset/scannetpp``: ``<root>/<scene>/merge_dslr_iphone/``
    with the COLMAP model ``colmap/sparse_render_rgb/`` (binary or text), ``images/`` and ``render_depth/``, and
    ``<root>/<scene>/scans/mesh_aligned_0.05.ply``) -> ``<out>/scannetpp-<scene>``. Needs pycolmap
    (``pip install 'anydepth[export]'``).

    As upstream: the 20 scenes of ``SCANNETPP_SCENES``; the model's images whose name contains "iphone" (not the
    DSLR ones), sorted by name, that exist, sampled by :func:`sample_frames` (100, seed 42). Poses are COLMAP's
    world-to-camera. Every view is brought to 768x1024 (H x W): an ``OPENCV`` camera undistorted onto the
    optimal new camera matrix (alpha 1) and cropped to its valid region first, then resized (area); the
    intrinsics follow (see :func:`frame_geometry`). Images are written as PNG. Depth is ``render_depth/<frame>.png``
    (16-bit millimetres, 0 = none) in metres, brought to 768x1024 the same way with nearest sampling (upstream
    resizes it bilinearly, as a mask only). Reconstruction is scored against ``mesh_aligned_0.05.ply`` (copied as
    ``reference.ply``, 1,000,000 points sampled; the prediction cropped to its bounding box + 0.1 m) at 0.05 m,
    after TSDF fusion with a 0.02 m voxel, 0.15 m truncation and depth up to 5 m: ``scene.json`` carries these.
    Scenes already converted are kept.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected {_LAYOUT})")
    wanted = list(scenes or SCANNETPP_SCENES)
    for scene in wanted:
        if scene not in SCANNETPP_SCENES:
            raise InputError(f"unknown ScanNet++ scene {scene!r}; choose from {', '.join(SCANNETPP_SCENES)}")
        model = root / scene / _MODEL
        if not any((model / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            raise InputError(f"{model}: no COLMAP model (cameras.bin or cameras.txt; expected {_LAYOUT})")
    return [_convert_scene(root / scene, out / f"scannetpp-{scene}", scene, max_frames) for scene in wanted]


def _convert_scene(scene_dir: Path, folder: Path, scene: str, max_frames: int) -> Path:
    import cv2

    pycolmap = require("pycolmap", "export")
    model_dir = scene_dir / _MODEL
    try:
        reconstruction = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises its own error types for corrupt or partial models
        raise InputError(f"{model_dir}: cannot read the COLMAP model ({exc})") from None
    image_dir = scene_dir / "merge_dslr_iphone" / "images"
    by_name = {image.name: image for image in reconstruction.images.values()}
    names = [n for n in sorted(by_name) if "iphone" in n and (image_dir / n).is_file()]
    if not names:
        raise InputError(f"{model_dir}: no iPhone image of the model found under {image_dir}")
    names = [names[k] for k in sample_frames(len(names), max_frames)]
    if (folder / "cameras.npz").is_file():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    out_names, extrinsics, intrinsics = [], [], []
    for name in names:
        image = by_name[name]
        camera = reconstruction.cameras[image.camera_id]
        model = getattr(camera.model, "name", str(camera.model))
        K, undistort = frame_geometry(model, list(camera.params), int(camera.width), int(camera.height))
        pose = image.cam_from_world
        pose = pose() if callable(pose) else pose  # a method in pycolmap >= 3.12, a property before
        raw = cv2.imread(str(image_dir / name), cv2.IMREAD_COLOR)
        if raw is None:
            raise InputError(f"{image_dir / name}: unreadable image")
        if raw.shape[:2] != (camera.height, camera.width):
            raise InputError(f"{image_dir / name}: {raw.shape[1]}x{raw.shape[0]}, but its camera is "
                             f"{camera.width}x{camera.height}")  # fmt: skip
        stem = Path(name).stem
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), _to_frame(raw, undistort, nearest=False))
        depth = np.zeros((int(camera.height), int(camera.width)), np.float32)
        depth_path = scene_dir / "merge_dslr_iphone" / "render_depth" / f"{stem}.png"
        if depth_path.is_file():
            millimetres = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if millimetres is None or millimetres.ndim != 2:
                raise InputError(f"{depth_path}: unreadable (expected a 16-bit PNG in millimetres)")
            if millimetres.shape != depth.shape:  # rendered at another size than the image: same frame, resampled
                millimetres = cv2.resize(millimetres, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
            depth = (millimetres / 1000.0).astype(np.float32)
        np.save(folder / "depth" / f"{stem}.npy", _to_frame(depth, undistort, nearest=True))
        w2c = np.asarray(pose.matrix(), np.float64)[:3]
        out_names.append(f"{stem}.png")
        extrinsics.append(w2c)
        intrinsics.append(K)
    reference = None
    mesh = scene_dir / "scans" / "mesh_aligned_0.05.ply"
    if mesh.is_file():
        shutil.copyfile(mesh, folder / "reference.ply")
        reference = "reference.ply"
    write_scene_meta(folder, "scannetpp", scene, "m", SCANNETPP_FSCORE, has_poses=True, reference=reference,
                     source=str(scene_dir), frames=names, input_size=list(SCANNETPP_SIZE),
                     **SCANNETPP_RECONSTRUCTION)  # fmt: skip
    np.savez(folder / "cameras.npz", extrinsics=np.stack(extrinsics), intrinsics=np.stack(intrinsics),
             image_names=out_names)  # fmt: skip
    return folder
