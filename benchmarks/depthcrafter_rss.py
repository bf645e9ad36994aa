"""Peak memory of DepthCrafter against video length: anydepth's lazy pipeline, and upstream's pipeline if given.

The networks are the tests' tiny random DepthCrafter (``tests/helpers/depthcrafter_tiny.py``): what grows with the video
is the frames, latents and depth the pipeline keeps, not the networks, so a tiny network shows it at a cost this
CPU can pay. Each run is a child process fed frames of a synthetic video; the child's peak RSS is read from its
own rusage. anydepth reads the frames from a generator and drops each depth map once received; upstream gets the
(T, H, W, 3) float32 array its ``run.py`` reads and returns every frame at once.

    PYTHONPATH=src python benchmarks/depthcrafter_rss.py --frames 100 400
    PYTHONPATH=src python benchmarks/depthcrafter_rss.py --frames 100 400 --upstream /tmp/dc_upstream
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _frames(count: int, size: int):
    rng = np.random.RandomState(0)
    base = (rng.rand(size, size + count, 3) * 255).astype(np.uint8)
    for t in range(count):
        yield np.ascontiguousarray(base[:, t : t + size])


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    settings = dict(window=args.window, overlap=args.overlap, steps=args.steps)
    if args.impl == "anydepth":
        import anydepth

        model = anydepth.load_model("depthcrafter", weights=args.dc, svd_weights=args.svd, device="cpu")
        count = sum(1 for _ in model.infer_frames(_frames(args.count, args.size), align=False, **settings))
    else:
        sys.path.insert(0, str(args.upstream))
        from depthcrafter.depth_crafter_ppl import DepthCrafterPipeline
        from depthcrafter.unet import DiffusersUNetSpatioTemporalConditionModelDepthCrafter
        from tests.helpers.depthcrafter_tiny import build_networks
        from transformers import CLIPImageProcessor

        unet, vae, encoder, scheduler = build_networks(0, DiffusersUNetSpatioTemporalConditionModelDepthCrafter)
        pipe = DepthCrafterPipeline(vae, encoder, unet, scheduler, CLIPImageProcessor())
        pipe.set_progress_bar_config(disable=True)
        frames = np.stack(list(_frames(args.count, args.size))).astype(np.float32) / 255.0  # as run.py reads
        with torch.inference_mode():
            out = pipe(frames, height=args.size, width=args.size, output_type="np", num_inference_steps=args.steps,
                       window_size=args.window, overlap=args.overlap).frames[0]  # fmt: skip
        count = len(out)
    print(json.dumps({"frames_out": count}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--size", type=int, default=128, help="frame side (a multiple of 64)")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--upstream", type=Path, help="folder holding upstream's depthcrafter/ package")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="anydepth", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dc", help=argparse.SUPPRESS)
    parser.add_argument("--svd", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from tests.helpers.depthcrafter_tiny import save_official_layout

    with tempfile.TemporaryDirectory() as tmp:
        dc, svd = save_official_layout(Path(tmp), seed=0)
        impls = ["anydepth"] + (["upstream"] if args.upstream else [])
        for impl in impls:
            for count in args.frames:
                cmd = [sys.executable, __file__, "--child", "--impl", impl, "--count", str(count), "--dc", str(dc),
                       "--svd", str(svd), "--size", str(args.size), "--window", str(args.window), "--overlap",
                       str(args.overlap), "--steps", str(args.steps)]  # fmt: skip
                if args.upstream:
                    cmd += ["--upstream", str(args.upstream)]
                start = time.perf_counter()
                process = subprocess.Popen(cmd, stdout=subprocess.PIPE)
                _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
                out = json.loads(process.stdout.read().decode().strip().splitlines()[-1])
                row = {"impl": impl, "frames": count, "size": args.size, "window": args.window,
                       "overlap": args.overlap, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                       "seconds": round(time.perf_counter() - start, 1), "frames_out": out["frames_out"],
                       "status": status}  # fmt: skip
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
