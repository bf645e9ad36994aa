"""Stream jobs: a long video, a folder of frames or a COLMAP dataset reconstructed chunk by chunk with a DA3 model
(trajectory, per-frame depth, fused point cloud), resumable and in bounded memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from anydepth.errors import InputError, MissingDependencyError
from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions, StreamJobOptions

logger = logging.getLogger(__name__)


@dataclass
class StreamSummary:
    """What a stream job did.

    Attributes:
        frames: frames reconstructed.
        chunks: chunks inferred (or found finished in the work folder).
        loops: loops closed, as (later frame, earlier frame, similarity).
        search_engine: "faiss" or "numpy" for the loop search, None when none ran.
        points: points in the fused cloud.
        files: the files written, by kind.
        seconds: wall time of the reconstruction.
    """

    frames: int
    chunks: int
    loops: List[tuple]
    search_engine: Optional[str]
    points: int
    files: Dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def open_source(spec: str, options: StreamJobOptions) -> Any:
    """The frames of ``spec``: a video (decoded lazily), a COLMAP dataset (its registered images with their
    cameras, for pose conditioning) or images (a folder, glob or .txt list), checked now so that bad input fails
    in one line before the model loads.

    Raises:
        InputError: missing or unreadable input, a COLMAP model without registered images, no frames.
    """
    from anydepth.io.colmap import is_colmap_dataset, read_colmap_views
    from anydepth.io.inputs import expand_inputs, is_video_path
    from anydepth.pipelines.streaming import FrameList, VideoFrames

    path = Path(spec)
    if path.is_file() and is_video_path(path):
        return VideoFrames(path, fps=options.fps, max_frames=options.max_frames)
    if is_colmap_dataset(path, options.sparse_subdir):
        views = read_colmap_views(path, options.sparse_subdir, options.images_subdir)
        n = options.max_frames or len(views.image_paths)
        return FrameList(views.image_paths[:n], views.extrinsics[:n], views.intrinsics[:n], name=str(spec))
    paths = expand_inputs(spec)
    if options.max_frames:
        paths = paths[: options.max_frames]
    return FrameList(paths, fps=options.fps, name=str(spec))


def check_loop_dependencies(options: StreamJobOptions) -> None:
    """Loop closure's pose graph needs pypose: say so before any work, not after hours of inference."""
    if not options.loop:
        return
    try:
        import pypose  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "loop closure needs pypose: pip install 'anydepth[stream]', or run with --no-loop"
        ) from None


def stream_job(
    spec: ModelSpec,
    runtime: RuntimeOptions,
    input_spec: str,
    options: StreamJobOptions,
    loader: Callable[[ModelSpec, RuntimeOptions], Any] = load,
    predictor: Optional[Any] = None,
    progress: bool = True,
    on_chunk: Optional[Callable[[Any], None]] = None,
) -> StreamSummary:
    """A whole stream job: check everything, open the input, load the model, reconstruct, write the outputs.

    Args:
        spec, runtime: the DA3 model (one that predicts cameras) and how it runs.
        input_spec: a video, a folder / glob / .txt list of frames, or a COLMAP dataset.
        options: chunking, alignment, loops, outputs.
        loader: builds the model.
        predictor: a ready chunk predictor instead of the model (tests and benchmarks: ground truth plus noise).
        progress: show progress bars.
        on_chunk: called after each chunk is on disk.
    """
    from anydepth.pipelines.streaming import DA3ChunkPredictor, WorkDir, run_streaming

    options.check()
    if predictor is None:
        _check_model(spec)
    source = open_source(input_spec, options)  # a bad input is named before a missing optional dependency
    check_loop_dependencies(options)
    if predictor is None:
        model = loader(spec, runtime)
        predictor = DA3ChunkPredictor(model, options.process_res, options.process_res_method,
                                      options.ref_view_strategy, descriptors=options.loop)  # fmt: skip
    settings = {
        "input": str(Path(input_spec).resolve()), "model": spec.name, "weights": spec.weights,
        "process_res": options.process_res, "process_res_method": options.process_res_method,
        "ref_view_strategy": options.ref_view_strategy, "chunk_size": options.chunk_size, "overlap": options.overlap,
        "align": options.align_method, "irls": [options.irls_delta, options.irls_max_iters, options.align_max_points],
        "fps": options.fps, "max_frames": options.max_frames, "loop": options.loop,
    }  # fmt: skip
    work = WorkDir(options.work_folder, settings, options.disk_budget)
    result = run_streaming(source, predictor, options.pipeline_options(), work, on_chunk=on_chunk, progress=progress)
    summary = write_outputs(result, options, getattr(source, "fps", None))
    summary.seconds = result.seconds
    if not options.keep_work:
        work.remove()
    return summary


def _check_model(spec: ModelSpec) -> None:
    from anydepth.models.da3.network import da3_config
    from anydepth.presets import get_preset

    preset = get_preset(spec.name)
    if spec.task != "scene" or preset.arch is None:
        raise InputError(f"{spec.name} is not a DA3 any-view model; stream runs da3-small / base / large / giant")
    if da3_config(preset.arch).camera_decoder is None:
        raise InputError(f"{spec.name} predicts no cameras; stream needs an any-view model (da3-small, da3-base...)")


def write_outputs(result: Any, options: StreamJobOptions, fps: Optional[float] = None) -> StreamSummary:
    """Write the run's outputs into ``options.export_dir``, one chunk in memory at a time:

    - ``camera_poses.txt``, ``intrinsic.txt`` (upstream's), ``trajectory_tum.txt``, ``trajectory_kitti.txt``,
      ``w2c.npy``, ``c2w.npy``, ``intrinsics.npy``, ``poses.npz``;
    - ``results_output/frame_<i>.npz`` per frame (upstream's name): image, depth and conf at the processed size,
      depth scaled into the common frame, with the frame's intrinsics and extrinsics;
    - ``pointcloud.ply`` (and ``pointcloud.glb``): the frames' confident points, each frame from the one chunk that
      owns it (no doubled overlaps), fused on a voxel grid;
    - ``trajectory.png`` (needs matplotlib) and ``loop_closures.txt``.
    """

    from anydepth.export.fused_cloud import VoxelCloud
    from anydepth.export.trajectory import plot_trajectory, write_trajectory
    from anydepth.io.atomic import atomic_open

    folder = Path(options.export_dir)
    folder.mkdir(parents=True, exist_ok=True)
    n = result.num_frames
    w2c = np.zeros((n, 3, 4), np.float64)
    intrinsics = np.zeros((n, 3, 3), np.float64)
    cloud: Optional[VoxelCloud] = None
    files: Dict[str, Path] = {}
    for start, pred in result.frames():
        count = len(pred)
        w2c[start : start + count] = pred.extrinsics[:, :3, :4]
        intrinsics[start : start + count] = pred.intrinsics
        if cloud is None:
            positive = pred.depth[pred.depth > 0]
            median = float(np.median(positive)) if positive.size else 1.0
            cloud = VoxelCloud(options.voxel_size or 0.01 * median)
        threshold = options.cloud_conf_ratio * float(np.mean(pred.conf))
        chunk_points, chunk_colors = [], []  # one add per chunk: each add sorts the grid's keys once
        for v in range(count):
            keep = (pred.conf[v] >= threshold) & (pred.conf[v] > 1e-5) & (pred.depth[v] > 0)
            if keep.any():
                chunk_points.append(_view_points(pred, v)[keep])
                colors = pred.images[v][keep] if pred.images is not None else np.full((int(keep.sum()), 3), 128)
                chunk_colors.append(colors)
            if options.save_frames:
                arrays = {"depth": pred.depth[v], "conf": pred.conf[v], "intrinsics": pred.intrinsics[v],
                          "extrinsics": pred.extrinsics[v, :3, :4]}  # fmt: skip
                if pred.images is not None:
                    arrays["image"] = pred.images[v]
                with atomic_open(folder / "results_output" / f"frame_{start + v}.npz", "wb") as handle:
                    np.savez_compressed(handle, **arrays)
        if chunk_points:
            cloud.add(np.concatenate(chunk_points), np.concatenate(chunk_colors))
    timestamps = np.arange(n) / fps if fps else None
    for path in write_trajectory(folder, w2c, intrinsics, timestamps):
        files[path.name] = path
    points = 0
    if cloud is not None and len(cloud):
        files["pointcloud.ply"] = cloud.write_ply(folder / "pointcloud.ply")
        if options.glb:
            files["pointcloud.glb"] = cloud.write_glb(folder / "pointcloud.glb")
        points = len(cloud)
    loops = [(lc.candidate.later, lc.candidate.earlier, lc.candidate.similarity) for lc in result.loops]
    with atomic_open(folder / "loop_closures.txt", "w") as handle:
        handle.write(f"# loop pairs (later frame, earlier frame, similarity); search: {result.search_engine}\n")
        handle.writelines(f"{a}, {b}, {s:.4f}\n" for a, b, s in loops)
    files["loop_closures.txt"] = folder / "loop_closures.txt"
    if options.plot:
        before = _chained_c2w(result, w2c) if result.loops else None
        plotted = plot_trajectory(folder / "trajectory.png", _c2w(w2c), before, [(a, b) for a, b, _ in loops],
                                  title=f"{n} frames, {len(result.chunks)} chunks, {len(loops)} loop(s)")  # fmt: skip
        if plotted is not None:
            files["trajectory.png"] = plotted
    return StreamSummary(n, len(result.chunks), loops, result.search_engine, points, files)


def _view_points(pred: Any, view: int) -> np.ndarray:
    """(H, W, 3) world points of one view of a prediction."""
    import torch

    from anydepth.geometry.cameras import unproject_depth

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, np.float64))

    return unproject_depth(t(pred.depth[view]), t(pred.intrinsics[view]), t(pred.extrinsics[view, :3, :4])).numpy()


def _c2w(w2c: np.ndarray) -> np.ndarray:
    from anydepth.export.trajectory import rigid_inverse, to_4x4

    return rigid_inverse(to_4x4(w2c))


def _chained_c2w(result: Any, w2c: np.ndarray) -> np.ndarray:
    """Cameras as the chained alignments alone placed them (before the pose graph), for the plot."""
    c2w = _c2w(w2c)
    out = c2w.copy()
    for k in range(len(result.chunks)):
        start, end = result.owned(k)
        change = result.chained[k] @ np.linalg.inv(result.transforms[k])
        scale = np.cbrt(np.linalg.det(change[:3, :3]))
        moved = change @ c2w[start:end]
        moved[:, :3, :3] /= scale
        out[start:end] = moved
    return out
