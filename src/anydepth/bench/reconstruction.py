"""Reconstruction metrics: fuse depth maps into a point cloud and compare it with the ground truth's geometry, as
upstream DA3's evaluator does (``bench/utils.py``, ``bench/datasets/*.py``).

Placing the predicted depth (two settings):

- ``"posed"``: the predicted depth with the ground-truth cameras, after one scale for the whole scene: as upstream,
  the scale of the RANSAC similarity of the predicted camera centres onto the true ones where the prediction has
  cameras, else the median of ``gt / pred`` over the valid pixels; none for metric predictions;
- ``"unposed"``: the predicted depth times that similarity's scale, with the predicted cameras carried into the
  ground truth's frame by it (RANSAC Umeyama, seeded as upstream: :func:`anydepth.geometry.sim3.ransac_umeyama`).

Either way only the pixels the ground truth has are fused (upstream masks the prediction with the ground-truth
depth's validity before scaling).

Fusion (``fusion`` in the result says which ran):

- ``"open3d-tsdf"`` when Open3D is installed (``pip install open3d``), as upstream: a ``ScalableTSDFVolume`` of
  ``voxel_length`` and ``sdf_trunc``, every view integrated with ``depth_trunc = fusion_max_depth``, the triangle
  mesh extracted and ``sampling_number`` points drawn from it uniformly by area (seeded:
  :func:`anydepth.bench.point_clouds.sample_mesh`). Colour plays no part in the geometry and is not integrated;
- ``"numpy-points"`` otherwise: every valid pixel unprojected (pixel centres at +0.5) and one point kept per
  voxel of ``voxel_length`` (the mean of its points).

Ground truth: the scene's ``reference`` geometry where ``scene.json`` names one (a mesh sampled to
``sampling_number`` points, seeded; a point cloud as it is), else the ground-truth depth maps fused the same way
as the prediction. ``crop_to_reference`` (ScanNet++: 0.1 m) keeps the predicted points within the ground truth's
bounding box grown by that margin. Both clouds are then downsampled in voxels of ``down_sample``.

With ``d_pred`` the distance of each predicted point to the nearest ground-truth point and ``d_gt`` the reverse
(a k-d tree, SciPy):

- accuracy ``= mean(d_pred)``, completeness ``= mean(d_gt)``, overall ``= (accuracy + completeness) / 2``;
- precision ``= mean(d_pred < threshold)``, recall ``= mean(d_gt < threshold)``, F-score their harmonic mean.

Settings per dataset come from ``scene.json`` (:meth:`FusionSettings.from_meta`), upstream's values
(``utils/constants.py``): 7-Scenes and HiRoom voxel 4/512 m, sdf_trunc 0.04 m, threshold 0.05 m, down_sample 4/512 m;
ETH3D five times those (threshold 0.25 m); ScanNet++ voxel 0.02 m, sdf_trunc 0.15 m, max depth 5 m, threshold
0.05 m, down_sample 0.02 m; 1,000,000 points sampled from meshes. Absent settings: voxel ``threshold / 2``,
sdf_trunc ``5 * voxel_length``, no depth cap, 1,000,000 points, no further downsampling.

DTU is scored in millimetres by its own protocol (:mod:`anydepth.bench.dtu_protocol`): upstream's DTU fusion,
then accuracy and completeness within the observation mask and above the ground plane, outliers beyond
``max_dist`` left out; no F-score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from anydepth.bench.dtu_protocol import DtuProtocol
from anydepth.bench.point_clouds import Geometry, crop_to_box, geometry_points, read_ply, voxel_downsample
from anydepth.errors import InputError, MissingDependencyError, require

SETTINGS = ("posed", "unposed")
FUSIONS = ("auto", "open3d-tsdf", "numpy-points")
SAMPLING_NUMBER = 1_000_000
"""Points drawn from a mesh (upstream's ``*_SAMPLING_NUMBER`` for every dataset)."""
SDF_TRUNC_VOXELS = 5.0
"""Default TSDF truncation in voxels (upstream's 0.04 m at 4/512 m is 5.12 voxels; 0.15 m at 0.02 m is 7.5)."""


@dataclass(frozen=True)
class ReconstructionScores:
    """Scores of one fused reconstruction; precision, recall and F-score are None under DTU's protocol.

    ``fusion``: "open3d-tsdf", "numpy-points", or DTU's "dtu-consistency" (posed) / "dtu-backprojection"
    (unposed); ``ground_truth``: "reference-mesh", "reference-points" or "fused-depth"; ``protocol``: "fscore"
    or "dtu".
    """

    accuracy: float
    completeness: float
    overall: float
    precision: Optional[float]
    recall: Optional[float]
    fscore: Optional[float]
    threshold: Optional[float]
    predicted_points: int
    ground_truth_points: int
    fusion: str = "numpy-points"
    ground_truth: str = "fused-depth"
    protocol: str = "fscore"

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FusionSettings:
    """How depth maps become a point cloud and how the clouds are thinned (module docstring), in scene units.

    Attributes:
        voxel_length: TSDF voxel / point-fusion voxel; None: ``threshold / 2``.
        sdf_trunc: TSDF truncation; None: ``SDF_TRUNC_VOXELS * voxel_length``.
        max_depth: depth beyond which the TSDF ignores pixels; None: no cap.
        sampling_number: points drawn from a mesh (the TSDF's and a reference mesh).
        down_sample: voxel of the evaluation downsampling of both clouds; None or 0: none.
        crop_to_reference: margin of the box around the ground truth the prediction is cropped to; None: no crop.
        fusion: "auto" (Open3D's TSDF when installed, else the NumPy points), "open3d-tsdf" or "numpy-points".
    """

    voxel_length: Optional[float] = None
    sdf_trunc: Optional[float] = None
    max_depth: Optional[float] = None
    sampling_number: int = SAMPLING_NUMBER
    down_sample: Optional[float] = None
    crop_to_reference: Optional[float] = None
    fusion: str = "auto"

    @classmethod
    def from_meta(cls, meta: Dict[str, Any]) -> FusionSettings:
        """The settings a scene's ``scene.json`` gives (``voxel_length``, ``sdf_trunc``, ``fusion_max_depth``,
        ``sampling_number``, ``down_sample``, ``crop_to_reference``); absent keys keep the defaults."""
        values = {"voxel_length": meta.get("voxel_length"), "sdf_trunc": meta.get("sdf_trunc"),
                  "max_depth": meta.get("fusion_max_depth"), "down_sample": meta.get("down_sample"),
                  "crop_to_reference": meta.get("crop_to_reference")}  # fmt: skip
        settings = {k: float(v) for k, v in values.items() if v is not None}
        if meta.get("sampling_number") is not None:
            settings["sampling_number"] = int(meta["sampling_number"])
        return cls(**settings)

    def resolved_fusion(self) -> str:
        """The fusion that runs: "auto" becomes "open3d-tsdf" where Open3D imports, else "numpy-points"."""
        if self.fusion not in FUSIONS:
            raise InputError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if self.fusion != "auto":
            return self.fusion
        try:
            import open3d  # noqa: F401
        except ImportError:
            return "numpy-points"
        return "open3d-tsdf"


def scene_inputs(
    folder: Path, meta: Dict[str, Any]
) -> Tuple[FusionSettings, Optional[Geometry], Optional[DtuProtocol]]:
    """The fusion settings, reference geometry and DTU protocol (or None) a scene folder's ``scene.json`` names."""
    settings = FusionSettings.from_meta(meta)
    reference = None
    if meta.get("reference"):
        name = meta["reference"]
        if not isinstance(name, str) or Path(name).name != name:
            raise InputError(f"{Path(folder) / 'scene.json'}: reference {name!r} is not a file name in the folder")
        reference = read_ply(Path(folder) / name)
    dtu = DtuProtocol.from_meta(Path(folder), meta["dtu"]) if meta.get("dtu") else None
    return settings, reference, dtu


def unproject(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """(M, 3) world points of the valid pixels (pixel centres at +0.5) of one (H, W) z-depth map.

    Example:
        >>> K = np.array([[1.0, 0, 1.0], [0, 1.0, 1.0], [0, 0, 1.0]])
        >>> unproject(np.full((2, 2), 2.0), np.eye(4)[:3], K)[0].tolist()
        [-1.0, -1.0, 2.0]
    """
    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0) if valid is None else valid & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[v, u]
    K = np.asarray(K, np.float64)
    cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], axis=1)
    R, t = np.asarray(w2c, np.float64)[:3, :3], np.asarray(w2c, np.float64)[:3, 3]
    return (cam - t) @ R  # R^T (x - t), row by row


def fuse_points(points: Sequence[np.ndarray], voxel: float) -> np.ndarray:
    """One point per occupied voxel (the mean of its points), over all views' points (the NumPy fusion)."""
    cloud = np.concatenate([p for p in points if len(p)], axis=0) if any(len(p) for p in points) else np.zeros((0, 3))
    return voxel_downsample(cloud, voxel)


def fuse_tsdf(
    depths: Sequence[np.ndarray],
    w2c: np.ndarray,
    intrinsics: np.ndarray,
    voxel_length: float,
    sdf_trunc: float,
    max_depth: Optional[float] = None,
) -> Geometry:
    """The triangle mesh of Open3D's ``ScalableTSDFVolume`` after integrating every view, as upstream's
    ``fuse_depth_to_tsdf`` (depth in scene units, ``depth_scale`` 1).

    Open3D reads pixel ``(u, v)`` at integer coordinates; the principal point is moved by half a pixel so that its
    points are the ones :func:`unproject` gives (pixel centres at +0.5).
    """
    try:
        import open3d as o3d
    except ImportError:
        raise MissingDependencyError("open3d is not installed; install it with: pip install open3d "
                                     "(or score with the NumPy point fusion)") from None  # fmt: skip
    integration = o3d.pipelines.integration
    volume = integration.ScalableTSDFVolume(voxel_length=float(voxel_length), sdf_trunc=float(sdf_trunc),
                                            color_type=integration.TSDFVolumeColorType.NoColor)  # fmt: skip
    trunc = float(max_depth) if max_depth is not None and np.isfinite(max_depth) else 1e12
    for depth, e, k in zip(depths, w2c, intrinsics):
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        H, W = depth.shape
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.zeros((H, W, 3), np.uint8)), o3d.geometry.Image(depth),
            depth_scale=1.0, depth_trunc=trunc, convert_rgb_to_intensity=False,
        )  # fmt: skip
        camera = o3d.camera.PinholeCameraIntrinsic(W, H, k[0, 0], k[1, 1], k[0, 2] - 0.5, k[1, 2] - 0.5)
        extrinsic = np.eye(4)
        extrinsic[:3] = np.asarray(e, np.float64)[:3]
        volume.integrate(rgbd, camera, extrinsic)
    mesh = volume.extract_triangle_mesh()
    return Geometry(np.asarray(mesh.vertices, np.float64).copy(), np.asarray(mesh.triangles, np.int64).copy())


def compare_clouds(
    predicted: np.ndarray, truth: np.ndarray, threshold: float, fusion: str = "numpy-points"
) -> ReconstructionScores:
    """Accuracy, completeness, overall, precision, recall and F-score (see the module docstring)."""
    spatial = require("scipy.spatial", "bench")
    if len(predicted) == 0 or len(truth) == 0:
        return ReconstructionScores(
            np.inf, np.inf, np.inf, 0.0, 0.0, 0.0, threshold, len(predicted), len(truth), fusion
        )
    d_pred, _ = spatial.cKDTree(truth).query(predicted)
    d_gt, _ = spatial.cKDTree(predicted).query(truth)
    accuracy, completeness = float(np.mean(d_pred)), float(np.mean(d_gt))
    precision, recall = float(np.mean(d_pred < threshold)), float(np.mean(d_gt < threshold))
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return ReconstructionScores(accuracy, completeness, (accuracy + completeness) / 2, precision, recall, fscore,
                                threshold, len(predicted), len(truth), fusion)  # fmt: skip


def reconstruction_scores(
    pred_depth: Sequence[np.ndarray],
    gt_depth: Sequence[np.ndarray],
    gt_w2c: np.ndarray,
    gt_intrinsics: np.ndarray,
    setting: str = "posed",
    pred_w2c: Optional[np.ndarray] = None,
    pred_intrinsics: Optional[np.ndarray] = None,
    threshold: float = 0.05,
    metric: bool = False,
    seed: int = 42,
    settings: Optional[FusionSettings] = None,
    reference: Optional[Geometry] = None,
    dtu: Optional[DtuProtocol] = None,
    gt_valid: Optional[Sequence[np.ndarray]] = None,
) -> ReconstructionScores:
    """Scores of one scene's depth maps (already at the ground truth's size) as a fused point cloud.

    Args:
        pred_depth, gt_depth: per view (H, W) z-depth; ground truth 0 / non-finite where there is none.
        gt_w2c, gt_intrinsics: (N, 3, 4) and (N, 3, 3) ground-truth cameras.
        setting: "posed" or "unposed" (see the module docstring).
        pred_w2c, pred_intrinsics: the predicted cameras (unposed; intrinsics default to the ground truth's,
            which is right when the prediction was resized to the ground truth's size only if they were predicted
            at that size: pass them scaled).
        threshold: F-score distance, in the ground truth's units.
        metric: the predicted depth is metric (posed: no scale alignment).
        seed: the seed of RANSAC, of the mesh sampling and of DTU's shuffles.
        settings: fusion and downsampling (default :class:`FusionSettings`).
        reference: the ground-truth geometry; None: the fused ground-truth depth maps.
        dtu: a :class:`~anydepth.bench.dtu_protocol.DtuProtocol`: score by DTU's protocol (``reference`` is then
            the STL point cloud, in mm).
        gt_valid: per view (H, W) bool, the pixels the prediction is scored on, where the dataset gives masks
            instead of (or besides) depth (DTU); default: where the ground-truth depth is.
    """
    if setting not in SETTINGS:
        raise InputError(f"unknown reconstruction setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    if len(pred_depth) != len(gt_depth):
        raise InputError(f"{len(pred_depth)} predicted depth maps against {len(gt_depth)} ground-truth ones")
    settings = FusionSettings() if settings is None else settings
    has_depth = [np.isfinite(g) & (g > 0) for g in gt_depth]
    gt_valid = has_depth if gt_valid is None else [np.asarray(m, bool) for m in gt_valid]
    depths, w2c, intrinsics = _placed_views(pred_depth, gt_depth, gt_valid, gt_w2c, gt_intrinsics, setting,
                                            pred_w2c, pred_intrinsics, metric, seed)  # fmt: skip
    if dtu is not None:
        return _dtu_scores(depths, w2c, intrinsics, setting, reference, dtu, seed)
    fusion = settings.resolved_fusion()
    voxel = threshold / 2 if settings.voxel_length is None else settings.voxel_length
    predicted = _fuse(depths, w2c, intrinsics, fusion, voxel, settings, seed)
    if reference is not None:
        truth = geometry_points(reference, settings.sampling_number, seed)
        source = "reference-mesh" if reference.is_mesh else "reference-points"
    else:
        truth_depths = [np.where(m & d, g, 0.0) for g, m, d in zip(gt_depth, gt_valid, has_depth)]
        truth = _fuse(truth_depths, gt_w2c, gt_intrinsics, fusion, voxel, settings, seed)
        source = "fused-depth"
    if settings.crop_to_reference is not None:
        predicted = crop_to_box(predicted, truth, settings.crop_to_reference)
    predicted = voxel_downsample(predicted, settings.down_sample)
    truth = voxel_downsample(truth, settings.down_sample)
    scores = compare_clouds(predicted, truth, threshold, fusion)
    return ReconstructionScores(**{**scores.as_dict(), "ground_truth": source})


def _placed_views(
    pred_depth: Sequence[np.ndarray],
    gt_depth: Sequence[np.ndarray],
    gt_valid: List[np.ndarray],
    gt_w2c: np.ndarray,
    gt_intrinsics: np.ndarray,
    setting: str,
    pred_w2c: Optional[np.ndarray],
    pred_intrinsics: Optional[np.ndarray],
    metric: bool,
    seed: int,
) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray]:
    """The predicted depth maps (masked with the ground truth's validity, scaled) and the cameras that place them
    in the ground truth's frame: (depths, (N, 3, 4) w2c, (N, 3, 3) intrinsics)."""
    masked = [np.where(m, np.asarray(p, np.float64), 0.0) for p, m in zip(pred_depth, gt_valid)]
    if setting == "posed":
        scale = 1.0
        if not metric and pred_w2c is not None:
            scale = _centre_similarity(pred_w2c, gt_w2c, seed)[0]
        elif not metric:
            if not any(np.any(np.isfinite(g) & (g > 0)) for g in gt_depth):
                raise InputError("the posed setting of a prediction without cameras takes its scale from the "
                                 "ground-truth depth, and the scene has none")  # fmt: skip
            ratios = np.concatenate([g[m] / p[m] for p, g, m in zip(masked, gt_depth, gt_valid) if np.any(m)])
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            scale = float(np.median(ratios)) if len(ratios) else 1.0
        return [scale * d for d in masked], np.asarray(gt_w2c, np.float64), np.asarray(gt_intrinsics, np.float64)
    if pred_w2c is None:
        raise InputError("the unposed setting needs the predicted cameras")
    intrinsics = gt_intrinsics if pred_intrinsics is None else pred_intrinsics
    s, R, t = _centre_similarity(pred_w2c, gt_w2c, seed)
    # a point X of a predicted view lands at s R X + t: the view's depth times s, seen from the camera
    # w2c' = [R_p R^T | s t_p - R_p R^T t] (as upstream: depth times the scale, the aligned extrinsics)
    pred_w2c = np.asarray(pred_w2c, np.float64)
    rotation = pred_w2c[:, :3, :3] @ R.T
    translation = s * pred_w2c[:, :3, 3] - rotation @ t
    placed = np.concatenate([rotation, translation[:, :, None]], axis=2)
    return [s * d for d in masked], placed, np.asarray(intrinsics, np.float64)


def _fuse(
    depths: Sequence[np.ndarray],
    w2c: np.ndarray,
    intrinsics: np.ndarray,
    fusion: str,
    voxel: float,
    settings: FusionSettings,
    seed: int,
) -> np.ndarray:
    """(M, 3) fused cloud of posed depth maps (0 where there is none) by the named fusion."""
    if fusion == "open3d-tsdf":
        trunc = settings.sdf_trunc if settings.sdf_trunc is not None else SDF_TRUNC_VOXELS * voxel
        mesh = fuse_tsdf(depths, w2c, intrinsics, voxel, trunc, settings.max_depth)
        return geometry_points(mesh, settings.sampling_number, seed) if mesh.is_mesh else np.zeros((0, 3))
    return fuse_points([unproject(d, e, k) for d, e, k in zip(depths, w2c, intrinsics)], voxel)


def _dtu_scores(
    depths: Sequence[np.ndarray],
    w2c: np.ndarray,
    intrinsics: np.ndarray,
    setting: str,
    reference: Optional[Geometry],
    dtu: DtuProtocol,
    seed: int,
) -> ReconstructionScores:
    from anydepth.bench.dtu_protocol import backprojected_points, cap_points, consistent_points, dtu_scores

    if reference is None:
        raise InputError("DTU's protocol scores against the STL point cloud: the scene.json needs a reference")
    if setting == "posed":
        fusion, predicted = "dtu-consistency", consistent_points(depths, w2c, intrinsics, dtu.dist_thresh,
                                                                   dtu.num_consist)  # fmt: skip
    else:
        fusion, predicted = "dtu-backprojection", backprojected_points(depths, w2c, intrinsics)
    predicted = cap_points(predicted, dtu.max_points, seed)
    accuracy, completeness, scored, truth_scored = dtu_scores(predicted, reference.vertices, dtu, seed)
    return ReconstructionScores(accuracy, completeness, (accuracy + completeness) / 2, None, None, None, None,
                                scored, truth_scored, fusion, "reference-points", "dtu")  # fmt: skip


def _centre_similarity(pred_w2c: np.ndarray, gt_w2c: np.ndarray, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of the similarity that maps the predicted camera centres onto the true ones:
    RANSAC Umeyama from three views (seeded as upstream), plain Umeyama below."""
    import torch

    from anydepth.bench.pose_metrics import camera_centres
    from anydepth.geometry.sim3 import ransac_umeyama, umeyama

    src = torch.from_numpy(camera_centres(pred_w2c))
    tgt = torch.from_numpy(camera_centres(gt_w2c))
    fit = ransac_umeyama(src, tgt, seed=seed)[0] if len(src) >= 3 else umeyama(src, tgt)
    return float(fit.scale), fit.rotation.numpy(), fit.translation.numpy()
