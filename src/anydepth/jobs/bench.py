"""Benchmark jobs: score saved predictions against ground truth (:mod:`anydepth.bench.score`) and keep the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.score import score
from anydepth.io.atomic import atomic_path


def score_job(
    pred: Union[str, Path],
    gt: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    min_depth: Optional[float] = None,
    max_depth: Optional[float] = None,
    json_out: Optional[Union[str, Path]] = None,
    pred_is_disparity: bool = False,
    fscore_threshold: Optional[float] = None,
) -> Dict[str, Any]:
    """Score one scene's prediction; with ``json_out``, the result is also written there (atomically). Settings
    left at None come from the scene's ``scene.json`` (see :func:`anydepth.bench.score.score`)."""
    result = score(pred, gt, modes, alignment, min_depth, max_depth, pred_is_disparity, fscore_threshold)
    if json_out is not None:
        json_out = Path(json_out)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(json_out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1, default=float))
    return result


def ground_truth_scenes(root: Union[str, Path]) -> list:
    """The ground-truth folders under ``root`` (each holding ``cameras.npz``), sorted by name: the order and the
    set do not depend on the file system's listing."""
    from anydepth.bench.score import ground_truth_folders
    from anydepth.errors import InputError

    scenes = ground_truth_folders(root)
    if not scenes:
        raise InputError(f"{root}: no scene (a folder with cameras.npz, depth/ and images/) in it")
    return scenes


def predict_views(model: Any, views: List[str], out: Path, process_res: int) -> Path:
    """Run ``model`` on one scene's views and save the prediction as ``<out>/results.npz`` (``depth`` (N, H, W),
    ``depth_kind``, and the cameras where the model predicts them); returns that file.

    Scene models (DA3) see the views together (the arrays of the ``mini_npz`` export); image models (V2) see
    each view alone; video models (Video Depth Anything, DepthCrafter) see the views as one video, in order.
    """
    from anydepth.export.npz import mini_npz_arrays
    from anydepth.families import family_of
    from anydepth.io.atomic import atomic_path
    from anydepth.jobs.options import SceneOptions

    task = family_of(model.preset).task
    target = out / "results.npz"
    if task == "scene":  # the scene job's inference, its mini_npz arrays kept here (no export to read back)
        options = SceneOptions(export_dir=out, export_format="mini_npz", process_res=process_res)
        arrays = mini_npz_arrays(model.infer(views, **options.infer_options()))
    elif task == "image":
        maps = [p.depth[0] for p in model.infer_iter(views, input_size=process_res, output="input")]
        arrays = {"depth": np.stack(maps)}
    else:
        import inspect

        frames = np.stack([_rgb(v) for v in views])
        # Video Depth Anything takes a processing size; DepthCrafter has its own (max_res)
        sized = "input_size" in inspect.signature(model.infer).parameters
        arrays = {"depth": model.infer(frames, input_size=process_res).depth if sized else model.infer(frames).depth}
    arrays["depth_kind"] = np.array(model.preset.depth_kind)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return target


def _rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run_job(
    root: Union[str, Path],
    spec: Any,
    runtime: Any,
    out: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    process_res: int = 504,
    fscore_threshold: Optional[float] = None,
    loader: Any = None,
    on_scene: Any = None,
    dataset: Optional[str] = None,
    scenes: Optional[Sequence[str]] = None,
    max_frames: Optional[int] = None,
    workers: int = 1,
    max_depth: Optional[float] = None,
) -> Dict[str, Any]:
    """Inference, then scoring, for every scene; resumable: a scene whose ``<out>/<scene>.json`` exists is not
    run again. Writes the per-scene JSON and ``<out>/summary.json`` (the mean of every numeric score over the
    scenes) and returns the summary.

    Args:
        root: a folder of ground-truth scenes (:func:`ground_truth_scenes`); with ``dataset``, the dataset as
            downloaded, converted first into ``<out>/ground-truth`` (:func:`anydepth.bench.datasets.convert`).
        spec, runtime: the model and how it runs (:mod:`anydepth.jobs.options`); any task (:func:`predict_views`).
        out: the run's folder (predictions under ``<out>/<scene>/``).
        modes: the modes scored (default: the dataset's, else depth, and pose where the model predicts cameras).
        alignment, fscore_threshold: as for :func:`score_job`.
        process_res: the model's processing size.
        loader: builds the model (default :func:`anydepth.jobs.loader.load`); loaded once, on the first scene
            that runs.
        on_scene: called with (scene name, result) after each scene.
        dataset, scenes, max_frames: which dataset reader, which of its scenes, and its frame sampling.
        workers: processes that score scenes while the model runs on the next (1: scoring in this process). The
            scores do not depend on it, nor on the order of the scenes.
        max_depth: ground truth at or beyond this is not scored, and aligned depth is capped there (default: the
            dataset's, else none); the synthetic outdoor scenes end at 80 units, and without a cap one pixel of an
            affine-aligned disparity at or below zero makes an image's AbsRel astronomical.
    """
    from anydepth.jobs.loader import load

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        from anydepth.bench.datasets import convert
        from anydepth.bench.datasets import dataset as reader

        modes = modes or list(reader(dataset).modes)
        folders = convert(dataset, root, out / "ground-truth", scenes, max_frames)
    else:
        folders = ground_truth_scenes(root)
        if scenes:
            folders = [f for f in folders if f.name in set(scenes)]
    model = None
    results: Dict[str, Dict[str, Any]] = {}
    pending: Dict[str, Any] = {}
    pool = _scoring_pool(workers)
    try:
        for folder in folders:
            name = folder.name
            result_path = out / f"{name}.json"
            if result_path.is_file():
                results[name] = json.loads(result_path.read_text())
                continue
            if model is None:
                model = (loader or load)(spec, runtime)
            names = [str(n) for n in np.load(folder / "cameras.npz")["image_names"]]
            prediction = predict_views(model, [str(folder / "images" / n) for n in names], out / name, process_res)
            chosen = modes or _default_modes(prediction, folder)
            disparity = model.preset.depth_kind == "disparity"
            args = (prediction, folder, chosen, alignment, None, max_depth, result_path, disparity, fscore_threshold)
            if pool is None:
                results[name] = score_job(*args)
                if on_scene is not None:
                    on_scene(name, results[name])
            else:
                pending[name] = pool.submit(score_job, *args)
        for name, future in sorted(pending.items()):
            results[name] = future.result()
            if on_scene is not None:
                on_scene(name, results[name])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary = summarise(results)
    with atomic_path(out / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=float))
    return summary


def _default_modes(prediction: Path, folder: Path) -> List[str]:
    from anydepth.bench.datasets import read_scene_meta

    with np.load(prediction) as data:
        cameras = "extrinsics" in data.files
    meta = read_scene_meta(folder)
    modes = ["depth"] if meta.get("has_depth", True) else []
    return modes + (["pose"] if cameras and meta.get("has_poses", True) else [])


def _scoring_pool(workers: int) -> Any:
    """A process pool for scoring, or None for ``workers <= 1``. Started with "spawn": the parent holds a model
    and its threads, which a forked child must not inherit."""
    if workers <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def summarise(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The mean over scenes of every numeric score of each mode (per-view details left out), and the scenes."""
    modes: Dict[str, Dict[str, list]] = {}
    for _, result in sorted(results.items()):  # one order of summation whatever the order of the scenes
        for mode, scores in result.items():
            if not isinstance(scores, dict):
                continue
            flat = scores.get("mean", scores)
            for key, value in flat.items():
                if isinstance(value, (int, float)) and key not in ("seconds", "peak_rss_mib"):
                    modes.setdefault(mode, {}).setdefault(key, []).append(float(value))
    return {
        "scenes": sorted(results),
        "mean": {mode: {k: float(np.mean(v)) for k, v in keys.items()} for mode, keys in sorted(modes.items())},
    }


def compare_runs(runs: Sequence[Union[str, Path]]) -> Dict[str, Any]:
    """The summaries of several runs side by side: ``{"runs": [...], "rows": [[mode, metric, value per run]]}``
    over the union of their metrics (None where a run lacks one)."""
    from anydepth.errors import InputError

    summaries = []
    for run in runs:
        path = Path(run) / "summary.json" if Path(run).is_dir() else Path(run)
        if not path.is_file():
            raise InputError(f"{path}: no summary.json (run `anydepth bench run` first)")
        summaries.append(json.loads(path.read_text()))
    keys = sorted({(mode, key) for s in summaries for mode, scores in s["mean"].items() for key in scores})
    rows = [[mode, key, *[s["mean"].get(mode, {}).get(key) for s in summaries]] for mode, key in keys]
    return {"runs": [str(r) for r in runs], "rows": rows}
