"""How Video Depth Anything's windows are joined, scored on a rendered video with exact depth and cameras.

The network is a stand-in (``tests/helpers/synthetic_video.py``): each window sees the true disparity through its own
random scale and shift, plus a per-frame flicker, which is the ambiguity the stitching has to resolve. Compared:
per-window output (no joining), upstream's keyframe alignment, and the overlap alignment (keyframes + all
overlap frames). Prints AbsRel, delta1 and TAE (after one disparity scale+shift per sequence), mean over seeds.

    PYTHONPATH=src python benchmarks/vda_alignment.py --frames 200 --flicker 0 0.03 --seeds 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.synthetic_video import AffineDisparityNet, per_window_depth, render_video

from anydepth.bench import evaluate_video_depth
from anydepth.pipelines.video_depth import VideoDepthRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--flicker", type=float, nargs="+", default=[0.0, 0.03])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    video = render_video(args.frames)
    height = video.frames.shape[1]
    for flicker in args.flicker:
        scores = {"per-window": [], "keyframes": [], "overlap": []}
        for seed in range(args.seeds):
            scores["per-window"].append(per_window_depth(video, AffineDisparityNet(seed, flicker)))
            for align in ("keyframes", "overlap"):
                runner = VideoDepthRunner(AffineDisparityNet(seed, flicker), torch.device("cpu"))
                scores[align].append(np.stack(list(runner.windowed(iter(video.frames), height, align=align))))
        for name, outputs in scores.items():
            s = [evaluate_video_depth(o, video.depth, video.extrinsics, video.intrinsics) for o in outputs]
            print(json.dumps({
                "frames": args.frames, "flicker": flicker, "join": name, "seeds": args.seeds,
                "abs_rel": round(float(np.mean([x.abs_rel for x in s])), 4),
                "delta1": round(float(np.mean([x.delta1 for x in s])), 4),
                "tae": round(float(np.mean([x.tae for x in s])), 3),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
