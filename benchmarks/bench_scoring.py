"""What scoring costs: seconds and peak RSS per scene for each mode of `anydepth bench score`.

A synthetic indoor scene (``--views`` views at ``--size``) is scored against a perturbed copy of its own ground
truth (depth scaled and noised, cameras rotated by a degree), each mode in a fresh process so that its peak RSS is
its own. Prints one JSON line per mode with the CPU's model name.

Usage: PYTHONPATH=src python benchmarks/bench_scoring.py [--views 100] [--size 504x378]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import cpu_model

MODES = ("depth", "pose", "video", "trajectory", "recon-posed", "recon-unposed")


def make_scene(root: Path, views: int, width: int, height: int) -> Path:
    """Ground truth and a prediction of it up to scale: depth and camera translations x 0.7, depth with 2 % noise,
    camera rotations perturbed by about a degree."""
    import cv2

    from anydepth.bench.score import read_ground_truth
    from anydepth.bench.synthetic import indoor_scene, orbit, render_views, write_ground_truth

    scene = indoor_scene(3)
    gt = write_ground_truth(root / "gt", render_views(scene, orbit(scene, views, arc_deg=300.0), width, height))
    truth = read_ground_truth(gt)
    rng = np.random.default_rng(0)
    depth = np.stack(truth.depth) * 0.7 * (1 + 0.02 * rng.standard_normal((views, height, width)))
    extrinsics = truth.extrinsics.copy()
    extrinsics[:, :, 3] *= 0.7
    for e in extrinsics:
        e[:, :3] = cv2.Rodrigues(rng.standard_normal(3) * np.radians(1.0) / np.sqrt(3))[0] @ e[:, :3]
    pred = root / "pred" / "results.npz"
    pred.parent.mkdir()
    np.savez(pred, depth=depth.astype(np.float32), extrinsics=extrinsics, intrinsics=truth.intrinsics)
    return root


def score_one(root: Path, mode: str) -> None:
    import resource

    from anydepth.bench.score import score

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the imports' share (KiB on Linux)
    result = score(root / "pred" / "results.npz", root / "gt", [mode])
    print(json.dumps({"seconds": round(result[mode]["seconds"], 3), "peak_rss_mib": round(result[mode]["peak_rss_mib"]),
                      "rss_after_imports_mib": round(before)}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--size", default="504x378", help="WIDTHxHEIGHT of the ground truth")
    parser.add_argument("--one", nargs=2, metavar=("ROOT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        score_one(Path(args.one[0]), args.one[1])
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = make_scene(Path(tmp), args.views, width, height)
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--one", str(root), mode], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
            record = json.loads(out.strip().splitlines()[-1])
            record.update(mode=mode, views=args.views, size=f"{width}x{height}", cpu=cpu_model())
            print(json.dumps(record))


if __name__ == "__main__":
    main()
