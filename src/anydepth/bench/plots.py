"""PNG plots of a benchmark run (matplotlib, ``pip install 'anydepth[bench]'``): per-scene bars of each mode's
main metrics, the distribution of per-view AbsRel, and each scene's camera trajectory (ground truth against the
prediction aligned by Sim(3)), seen from above."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from anydepth.bench.score import prediction_file
from anydepth.errors import InputError, require

# the metrics drawn as per-scene bars, per mode
BAR_METRICS = {
    "depth": ("abs_rel", "delta1"),
    "pose": ("auc03", "auc30"),
    "video": ("abs_rel", "tae"),
    "trajectory": ("ate_rmse",),
    "recon-posed": ("fscore",),
    "recon-unposed": ("fscore",),
}


def _pyplot():
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _scene_results(run: Path) -> Dict[str, dict]:
    summary = run / "summary.json"
    if not summary.is_file():
        raise InputError(f"{summary}: missing (run `anydepth bench run` first)")
    scenes = json.loads(summary.read_text())["scenes"]
    return {name: json.loads((run / f"{name}.json").read_text()) for name in scenes if (run / f"{name}.json").is_file()}


def plot_run(run: Union[str, Path], out: Optional[Union[str, Path]] = None) -> List[Path]:
    """Write the run's plots into ``out`` (default ``<run>/plots``); returns the files."""
    plt = _pyplot()
    run = Path(run)
    out = run / "plots" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = _scene_results(run)
    names = sorted(results)
    written: List[Path] = []
    for mode, metrics in BAR_METRICS.items():
        for metric in metrics:
            values = []
            for name in names:
                scores = results[name].get(mode)
                scores = scores.get("mean", scores) if isinstance(scores, dict) else None
                values.append(np.nan if not scores or scores.get(metric) is None else float(scores[metric]))
            if all(np.isnan(values)):
                continue
            fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2))
            ax.bar(range(len(names)), values, color="#4c72b0")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{mode}: {metric} per scene (mean {np.nanmean(values):.4f})")
            fig.tight_layout()
            path = out / f"{mode}_{metric}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    per_view = [v["abs_rel"] for r in results.values() for v in r.get("depth", {}).get("per_view", {}).values()]
    if per_view:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist(per_view, bins=min(30, max(5, len(per_view) // 2)), color="#55a868")
        ax.set_xlabel("AbsRel per view")
        ax.set_ylabel("views")
        fig.tight_layout()
        path = out / "depth_abs_rel_hist.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    for name in names:  # trajectories: the run's predicted cameras against the ground truth's
        prediction = prediction_file(run / name)
        truth = Path(str(results[name].get("ground_truth", ""))) / "cameras.npz"
        if prediction is None or not truth.is_file():
            continue
        with np.load(prediction) as pred, np.load(truth) as gt:
            if "extrinsics" not in pred.files or len(pred["extrinsics"]) < 3:
                continue
            written.append(plot_trajectory(pred["extrinsics"], gt["extrinsics"], out / f"trajectory_{name}.png", name))
    return written


def plot_trajectory(pred_w2c: np.ndarray, gt_w2c: np.ndarray, path: Union[str, Path], title: str = "") -> Path:
    """Camera centres from above (x, z): the ground truth and the prediction after the Sim(3) of
    :func:`~anydepth.bench.pose_metrics.trajectory_scores`."""
    import torch

    from anydepth.bench.pose_metrics import camera_centres
    from anydepth.geometry.sim3 import umeyama

    plt = _pyplot()
    source, target = camera_centres(pred_w2c), camera_centres(gt_w2c)
    fit = umeyama(torch.from_numpy(source), torch.from_numpy(target))
    aligned = float(fit.scale) * source @ fit.rotation.numpy().T + fit.translation.numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(target[:, 0], target[:, 2], "-o", ms=2, label="ground truth", color="#333333")
    ax.plot(aligned[:, 0], aligned[:, 2], "-o", ms=2, label="prediction (Sim(3))", color="#c44e52")
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
