"""Benchmark jobs: score saved predictions against ground truth (:mod:`anydepth.bench.score`) and keep the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from anydepth.bench.score import score
from anydepth.io.atomic import atomic_path


def score_job(
    pred: Union[str, Path],
    gt: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    json_out: Optional[Union[str, Path]] = None,
    pred_is_disparity: bool = False,
    fscore_threshold: float = 0.05,
) -> Dict[str, Any]:
    """Score one scene's prediction; with ``json_out``, the result is also written there (atomically)."""
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
    from anydepth.errors import InputError

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    scenes = sorted(p for p in root.iterdir() if (p / "cameras.npz").is_file())
    if (root / "cameras.npz").is_file():
        scenes = [root]
    if not scenes:
        raise InputError(f"{root}: no scene (a folder with cameras.npz, depth/ and images/) in it")
    return scenes


def run_job(
    root: Union[str, Path],
    spec: Any,
    runtime: Any,
    out: Union[str, Path],
    modes: Optional[Sequence[str]] = None,
    alignment: str = "median",
    process_res: int = 504,
    fscore_threshold: float = 0.05,
    loader: Any = None,
    on_scene: Any = None,
) -> Dict[str, Any]:
    """Inference, then scoring, for every scene under ``root``; resumable: a scene whose ``<out>/<scene>.json``
    exists is not run again. Writes the per-scene JSON and ``<out>/summary.json`` (the mean of every numeric
    score over the scenes) and returns the summary.

    Args:
        root: a folder of ground-truth scenes (:func:`ground_truth_scenes`).
        spec, runtime: the model (a scene model: DA3) and how it runs (:mod:`anydepth.jobs.options`).
        out: the run's folder (predictions under ``<out>/<scene>/``).
        modes, alignment, fscore_threshold: as for :func:`score_job`.
        process_res: the processing size of the scene job.
        loader: builds the model (default :func:`anydepth.jobs.loader.load`); loaded once, on the first scene
            that runs.
        on_scene: called with (scene name, result) after each scene.
    """
    from anydepth.jobs.loader import load
    from anydepth.jobs.options import SceneOptions
    from anydepth.jobs.scene import run_scene

    scenes = ground_truth_scenes(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = None
    results: Dict[str, Dict[str, Any]] = {}
    for folder in scenes:
        name = folder.name
        result_path = out / f"{name}.json"
        if result_path.is_file():
            results[name] = json.loads(result_path.read_text())
            continue
        if model is None:
            model = (loader or load)(spec, runtime)
        names = [str(n) for n in np.load(folder / "cameras.npz")["image_names"]]
        views = [str(folder / "images" / n) for n in names]
        options = SceneOptions(export_dir=out / name, export_format="mini_npz", process_res=process_res)
        run_scene(model, views, options)
        results[name] = score_job(out / name, folder, modes, alignment, json_out=result_path,
                                  fscore_threshold=fscore_threshold)  # fmt: skip
        if on_scene is not None:
            on_scene(name, results[name])
    summary = summarise(results)
    with atomic_path(out / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=float))
    return summary


def summarise(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The mean over scenes of every numeric score of each mode (per-view details left out), and the scenes."""
    modes: Dict[str, Dict[str, list]] = {}
    for result in results.values():
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
