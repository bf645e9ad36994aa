"""Scoring saved predictions against ground truth, separate from inference.

Predictions are the project's own exports: ``results.npz`` of ``mini_npz`` or ``npz`` (``depth`` (N, H, W), and
where the model predicts them ``extrinsics`` (N, 3, 4) world-to-camera and ``intrinsics`` (N, 3, 3)); a folder
holding one (``bench run``'s ``results.npz``, ``exports/npz/results.npz`` or ``exports/mini_npz/results.npz``)
works too.

Ground truth is a folder in the layout :mod:`anydepth.bench.synthetic` writes (and the dataset readers convert
to)::

    images/<name>.png      the input views (not read by scoring)
    depth/<stem>.npy       (H, W) z-depth, 0 / NaN / inf where there is none
    cameras.npz            extrinsics (N, 3, 4) w2c, intrinsics (N, 3, 3), image_names (N,) in view order

Predicted depth maps are resized (bilinear) to the ground truth's size, so they must cover the whole image: the
resize methods of ``--process-res-method`` or ``--export-at-input-res``, not the crops. Modes:

- ``depth``: per view :func:`~anydepth.bench.depth_metrics.image_depth_scores`, and their mean;
- ``pose``: :func:`~anydepth.bench.pose_metrics.pose_scores` over all pairs of views;
- ``video``: the views as one sequence, :func:`~anydepth.bench.video_metrics.evaluate_video_depth` (one scale and
  shift in disparity for the whole sequence, unless the alignment is "none": metric; TAE with the ground truth's
  cameras, None where ``scene.json`` says ``has_poses: false``);
- ``trajectory``: :func:`~anydepth.bench.pose_metrics.trajectory_scores` (ATE after Sim(3), RPE);
- ``recon-posed``, ``recon-unposed``: :func:`~anydepth.bench.reconstruction.reconstruction_scores` (fused point
  clouds: accuracy, completeness, F-score at ``fscore_threshold``), with the ground truth's or the predicted
  cameras; against the ``reference`` geometry, with the fusion settings, and by DTU's protocol where the scene's
  ``scene.json`` says so. Needs SciPy and plyfile (``pip install 'anydepth[bench]'``); Open3D's TSDF fusion where
  Open3D is installed.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from anydepth.bench.datasets import read_scene_meta
from anydepth.bench.depth_metrics import ALIGNMENTS, image_depth_scores, mean_scores
from anydepth.bench.pose_metrics import AUC_THRESHOLDS, pose_scores, trajectory_scores
from anydepth.bench.video_metrics import evaluate_video_depth
from anydepth.errors import InputError

MODES = ("depth", "pose", "video", "trajectory", "recon-posed", "recon-unposed")
CAMERA_MODES = ("pose", "trajectory", "recon-unposed")
GT_LAYOUT = "images/, depth/<stem>.npy (H, W) z-depth, cameras.npz (extrinsics, intrinsics, image_names)"
PRED_LAYOUT = "results.npz of the mini_npz / npz export (depth (N, H, W), extrinsics (N, 3, 4), intrinsics)"


@dataclass
class GroundTruth:
    """One scene's ground truth: depth maps and cameras in view order."""

    folder: Path
    names: List[str]
    depth: List[np.ndarray]
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)
    valid: Optional[List[np.ndarray]] = None
    """Per view (H, W) bool validity masks where ``scene.json`` names a ``masks`` folder (DTU): the pixels scored
    in reconstruction; None: where the depth is."""
    """``scene.json`` (:func:`anydepth.bench.datasets.read_scene_meta`): the dataset's thresholds and units."""

    @property
    def has_poses(self) -> bool:
        return bool(self.meta.get("has_poses", True))

    @property
    def has_depth(self) -> bool:
        """False for a pose-only dataset (DTU-64), whose ``depth/`` maps are all-zero placeholders."""
        return bool(self.meta.get("has_depth", True))


def ground_truth_folders(root: Union[str, Path]) -> List[Path]:
    """``root`` itself when it holds ``cameras.npz``, else its sub-folders that do, sorted by name: the order and
    the set do not depend on the file system's listing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    if (root / "cameras.npz").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "cameras.npz").is_file())


def read_cameras(folder: Path) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """``<folder>/cameras.npz``: (extrinsics (N, 3, 4), intrinsics (N, 3, 3), image names), checked to agree; a
    missing or malformed file is one :class:`InputError` naming it."""
    cameras = folder / "cameras.npz"
    if not cameras.is_file():
        raise InputError(f"{cameras}: missing (expected {GT_LAYOUT})")
    try:
        with np.load(cameras) as data:
            extrinsics = np.asarray(data["extrinsics"], np.float64)
            intrinsics = np.asarray(data["intrinsics"], np.float64)
            names = [str(n) for n in data["image_names"]]
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{cameras}: unreadable or incomplete ({exc}); expected {GT_LAYOUT}") from None
    if extrinsics.shape != (len(names), 3, 4) or intrinsics.shape != (len(names), 3, 3):
        raise InputError(f"{cameras}: extrinsics {extrinsics.shape} and intrinsics {intrinsics.shape} do not match "
                         f"{len(names)} image names")  # fmt: skip
    return extrinsics, intrinsics, names


def read_ground_truth(folder: Union[str, Path]) -> GroundTruth:
    """Read a ground-truth folder; a missing or malformed part is one :class:`InputError` naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such ground-truth folder (expected {GT_LAYOUT})")
    extrinsics, intrinsics, names = read_cameras(folder)
    depth = []
    for name in names:
        path = folder / "depth" / (Path(name).stem + ".npy")
        if not path.is_file():
            raise InputError(f"{path}: missing (expected {GT_LAYOUT})")
        d = np.load(path)
        if d.ndim != 2:
            raise InputError(f"{path}: depth of shape {d.shape}; expected (H, W)")
        depth.append(d.astype(np.float32))
    meta = read_scene_meta(folder)
    return GroundTruth(folder, names, depth, extrinsics, intrinsics, meta, _read_masks(folder, meta, names, depth))


def _read_masks(folder: Path, meta: Dict[str, Any], names: List[str], depth: List[np.ndarray]) -> Optional[list]:
    """The validity masks ``<folder>/<meta["masks"]>/<stem>.png`` (non-zero = scored), or None without the key."""
    import cv2

    sub = meta.get("masks")
    if not sub:
        return None
    if not isinstance(sub, str) or Path(sub).name != sub:
        raise InputError(f"{folder / 'scene.json'}: masks {sub!r} is not a folder name in the scene folder")
    masks = []
    for name, d in zip(names, depth):
        path = folder / sub / (Path(name).stem + ".png")
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != d.shape:
            raise InputError(f"{path}: missing, unreadable or not {d.shape[1]}x{d.shape[0]} (a validity mask PNG)")
        masks.append(mask > 0)
    return masks


PREDICTION_FILES = ("results.npz", "exports/npz/results.npz", "exports/mini_npz/results.npz")
"""Where a prediction folder holds its arrays: ``bench run``'s own file, else the scene job's exports."""


def prediction_file(folder: Path) -> Optional[Path]:
    """The first of :data:`PREDICTION_FILES` that ``folder`` holds, or None."""
    return next((folder / name for name in PREDICTION_FILES if (folder / name).is_file()), None)


def read_prediction(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """The arrays of a ``results.npz`` (or of a folder's, :func:`prediction_file`), checked for ``depth``."""
    path = Path(path)
    if path.is_dir():
        found = prediction_file(path)
        if found is None:
            raise InputError(f"{path}: no {', '.join(PREDICTION_FILES)} (expected {PRED_LAYOUT})")
        path = found
    if not path.is_file():
        raise InputError(f"{path}: no such prediction file (expected {PRED_LAYOUT})")
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npz ({exc}); expected {PRED_LAYOUT}") from None
    if "depth" not in arrays or arrays["depth"].ndim != 3:
        raise InputError(f"{path}: no (N, H, W) depth array; expected {PRED_LAYOUT}")
    arrays["_path"] = np.array(str(path))
    return arrays


def _resize(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if depth.shape == (height, width):
        return depth.astype(np.float64)
    ph, pw = depth.shape
    if abs(ph / pw - height / width) > 0.02:
        raise InputError(f"a {pw}x{ph} prediction does not cover a {width}x{height} image (another aspect ratio: "
                         "predict with a resize method, not a crop, or at the input resolution)")  # fmt: skip
    return cv2.resize(depth.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def check_modes(modes: Sequence[str], prediction: Dict[str, np.ndarray]) -> None:
    """Refuse unknown modes, and modes whose fields the prediction lacks, before any work."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise InputError(f"unknown mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    for mode in CAMERA_MODES:
        if mode in modes and "extrinsics" not in prediction:
            raise InputError(
                f"{prediction['_path']}: no extrinsics for the {mode} mode (the model predicts no cameras)"
            )


def score_scene(
    prediction: Dict[str, np.ndarray],
    gt: GroundTruth,
    modes: Sequence[str] = MODES,
    alignment: str = "median",
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    thresholds: Sequence[int] = AUC_THRESHOLDS,
    pred_is_disparity: bool = False,
    fscore_threshold: float = 0.05,
) -> Dict[str, Any]:
    """Every requested mode's scores of one scene, with the seconds and the process's peak RSS (MiB) they took.

    Example:
        >>> from anydepth.bench.synthetic import indoor_scene, orbit, render_views
        >>> scene = indoor_scene(0)
        >>> frames = list(render_views(scene, orbit(scene, 3), 32, 24))
        >>> gt = GroundTruth(Path("."), ["a", "b", "c"], [f.depth for f in frames],
        ...                  np.stack([f.extrinsics for f in frames]), np.stack([f.intrinsics for f in frames]))
        >>> pred = {"depth": np.stack(gt.depth) * 2.0, "extrinsics": gt.extrinsics, "_path": np.array("p")}
        >>> out = score_scene(pred, gt)
        >>> round(out["depth"]["mean"]["abs_rel"], 9), out["pose"]["auc30"]
        (0.0, 1.0)
    """
    check_modes(modes, prediction)
    if not gt.has_poses:
        posed = [m for m in modes if m in ("pose", "trajectory", "recon-posed", "recon-unposed")]
        if posed:
            raise InputError(f"{gt.folder / 'scene.json'}: the dataset has no ground-truth cameras; the "
                             f"{', '.join(posed)} mode(s) need them")  # fmt: skip
    if not gt.has_depth:
        # reconstruction against a reference needs only where to score: masks stand in for depth there
        recon = () if gt.valid is not None and gt.meta.get("reference") else ("recon-posed", "recon-unposed")
        needs_depth = [m for m in modes if m in ("depth", "video", *recon)]
        if needs_depth:
            raise InputError(f"{gt.folder / 'scene.json'}: the dataset has no ground-truth depth; the "
                             f"{', '.join(needs_depth)} mode(s) need it")  # fmt: skip
    if alignment not in ALIGNMENTS:
        raise InputError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    depth = prediction["depth"]
    if len(depth) != len(gt.names):
        raise InputError(f"{prediction['_path']}: {len(depth)} predicted views against {len(gt.names)} in "
                         f"{gt.folder / 'cameras.npz'}")  # fmt: skip
    out: Dict[str, Any] = {"views": len(gt.names)}
    # the predicted maps at the ground truth's size, once for every mode that reads them (not for pose alone)
    uses_depth = {"depth", "video", "recon-posed", "recon-unposed"} & set(modes)
    resized = [_resize(p, *t.shape) for p, t in zip(depth, gt.depth)] if uses_depth else []
    if "depth" in modes:
        start = time.perf_counter()
        per_view = []
        for name, pred, truth in zip(gt.names, resized, gt.depth):
            scores = image_depth_scores(pred, truth, alignment, None, min_depth, max_depth, pred_is_disparity)
            per_view.append((name, scores))
        out["depth"] = {
            "alignment": alignment,
            "mean": mean_scores([s for _, s in per_view]).as_dict(),
            "per_view": {name: s.as_dict() for name, s in per_view},
            "seconds": time.perf_counter() - start,
            "peak_rss_mib": _peak_rss_mib(),
        }
    if "video" in modes:
        start = time.perf_counter()
        truth = np.stack(gt.depth).astype(np.float64)
        pred = np.stack(resized)
        metric = alignment == "none"
        if not metric and not pred_is_disparity:
            pred = 1.0 / np.maximum(pred, 1e-12)  # depth up to scale -> disparity up to scale
        # without ground-truth cameras (KITTI, NYUv2) there is no TAE: None, not a number from identity poses
        extrinsics, intrinsics = (gt.extrinsics, gt.intrinsics) if gt.has_poses else (None, None)
        video = evaluate_video_depth(pred, truth, extrinsics, intrinsics, max_depth,
                                     pred_kind="metric" if metric else "disparity")  # fmt: skip
        out["video"] = {"abs_rel": video.abs_rel, "delta1": video.delta1, "tae": video.tae,
                        "seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib()}  # fmt: skip
    recon = None
    if {"recon-posed", "recon-unposed"} & set(modes):
        from anydepth.bench.reconstruction import scene_inputs

        recon = scene_inputs(gt.folder, gt.meta)  # the reference read once for both settings
    if "recon-posed" in modes:
        start = time.perf_counter()
        scores = _reconstruction(prediction, resized, gt, "posed", alignment, fscore_threshold, recon)
        scores.update(seconds=time.perf_counter() - start, peak_rss_mib=_peak_rss_mib())
        out["recon-posed"] = scores
    for mode in CAMERA_MODES:
        if mode not in modes:
            continue
        start = time.perf_counter()
        extrinsics = np.asarray(prediction["extrinsics"], np.float64)
        if extrinsics.shape[0] != len(gt.names):
            raise InputError(f"{prediction['_path']}: {extrinsics.shape[0]} predicted cameras against "
                             f"{len(gt.names)} views")  # fmt: skip
        if mode == "pose":
            scores = pose_scores(extrinsics, gt.extrinsics, thresholds).as_dict()
        elif mode == "trajectory":
            scores = trajectory_scores(extrinsics, gt.extrinsics).as_dict()
        else:
            scores = _reconstruction(prediction, resized, gt, "unposed", alignment, fscore_threshold, recon)
        scores.update(seconds=time.perf_counter() - start, peak_rss_mib=_peak_rss_mib())
        out[mode] = scores
    return out


def _reconstruction(
    prediction: Dict[str, np.ndarray],
    depth: List[np.ndarray],
    gt: GroundTruth,
    setting: str,
    alignment: str,
    threshold: float,
    inputs: Any,
) -> Dict[str, Any]:
    """``depth``: the predicted maps already at the ground truth's size; ``inputs``: the fusion settings, the
    reference geometry and DTU's protocol of the scene's ``scene.json``
    (:func:`~anydepth.bench.reconstruction.scene_inputs`)."""
    from anydepth.bench.reconstruction import reconstruction_scores

    settings, reference, dtu = inputs

    pred_w2c = prediction.get("extrinsics")
    pred_K = prediction.get("intrinsics")
    if pred_K is not None:  # the predicted intrinsics are at the prediction's size: bring them to the ground truth's
        pred_K = np.asarray(pred_K, np.float64).copy()
        ph, pw = prediction["depth"].shape[1:]
        for k, truth in zip(pred_K, gt.depth):
            k[0] *= truth.shape[1] / pw
            k[1] *= truth.shape[0] / ph
    scores = reconstruction_scores(
        depth, gt.depth, gt.extrinsics, gt.intrinsics, setting, pred_w2c, pred_K, threshold,
        metric=alignment == "none", settings=settings, reference=reference, dtu=dtu, gt_valid=gt.valid,
    )  # fmt: skip
    return scores.as_dict()


def _setting(given: Optional[float], dataset: Optional[float], default: float) -> float:
    """The caller's value, else the dataset's, else the default."""
    if given is not None:
        return float(given)
    return float(dataset) if dataset is not None else default


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def summary_rows(result: Dict[str, Any]) -> List[List[str]]:
    """The summary table of one scene's result: mode, metric, value."""
    rows = []
    if "depth" in result:
        mean = result["depth"]["mean"]
        rows += [["depth", "abs_rel", f"{mean['abs_rel']:.4f}"], ["depth", "delta1", f"{mean['delta1']:.4f}"],
                 ["depth", "inlier_1.03", f"{mean['inlier_103']:.4f}"]]  # fmt: skip
    if "pose" in result:
        rows += [["pose", key, f"{value:.4f}"] for key, value in result["pose"].items() if key.startswith("auc")]
    if "video" in result:
        rows += [["video", key, f"{result['video'][key]:.4f}"] for key in ("abs_rel", "delta1", "tae")
                 if result["video"][key] is not None]  # fmt: skip
    for mode in ("recon-posed", "recon-unposed"):
        if mode in result:
            dtu = result[mode].get("protocol") == "dtu"  # no F-score; upstream reports DTU's overall
            keys = ("accuracy", "completeness", "overall" if dtu else "fscore")
            rows += [[mode, key, f"{result[mode][key]:.4f}"] for key in keys]
    if "trajectory" in result:
        rows += [["traj", key, f"{result['trajectory'][key]:.4f}"]
                 for key in ("ate_rmse", "rpe_translation_rmse", "rpe_rotation_deg")]  # fmt: skip
    return rows


def score(
    pred: Union[str, Path],
    gt: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    min_depth: Optional[float] = None,
    max_depth: Optional[float] = None,
    pred_is_disparity: bool = False,
    fscore_threshold: Optional[float] = None,
) -> Dict[str, Any]:
    """Read a prediction and a ground-truth folder, check them, and score the requested modes (default: depth,
    and pose where the prediction has cameras and the ground truth has poses).

    The depth range and the F-score threshold left at None come from the scene's ``scene.json`` (the values of
    the dataset's evaluation), else 1e-3, no cap and 0.05.
    """
    prediction = read_prediction(pred)
    truth = read_ground_truth(gt)
    if modes is None:
        modes = ["depth", "pose"] if "extrinsics" in prediction and truth.has_poses else ["depth"]
        modes = modes if truth.has_depth else ["pose"]
    min_depth = _setting(min_depth, truth.meta.get("min_depth"), 1e-3)
    max_depth = _setting(max_depth, truth.meta.get("max_depth"), np.inf)
    fscore_threshold = _setting(fscore_threshold, truth.meta.get("fscore_threshold"), 0.05)
    result = score_scene(
        prediction, truth, modes, alignment, min_depth, max_depth, AUC_THRESHOLDS, pred_is_disparity, fscore_threshold
    )
    result.update(prediction=str(prediction["_path"]), ground_truth=str(truth.folder))
    return result
