"""Seconds per rendered 504x378 frame of DA3-like Gaussians with our PyTorch rasteriser, and the peak RSS.

The scene is what DA3's Gaussian head makes: one Gaussian per pixel of several views of a surface (a wavy wall
2 to 4 m away), each about a pixel wide (scale = depth / focal, as the head's scale factor gives), opacities 0.5 to
1, SH degree 2. The frame is rendered from a camera between the input views. Each size runs in a fresh process so
that its peak RSS is its own::

    PYTHONPATH=src python benchmarks/gs_render.py                 # 200k, 800k and 1.5M Gaussians
    PYTHONPATH=src python benchmarks/gs_render.py --gaussians 200000 --frames 3
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch
from _common import cpu_model

WIDTH, HEIGHT = 504, 378


def scene(count: int, seed: int = 0):
    """``count`` pixel-aligned Gaussians from views of 504x378 (the last view partly)."""
    g = torch.Generator().manual_seed(seed)
    focal = 400.0
    per_view = WIDTH * HEIGHT
    views = math.ceil(count / per_view)
    means, scales = [], []
    ys, xs = torch.meshgrid(torch.arange(HEIGHT) + 0.5, torch.arange(WIDTH) + 0.5, indexing="ij")
    for v in range(views):
        shift = 0.4 * (v - (views - 1) / 2)
        rays = torch.stack([(xs - WIDTH / 2) / focal, (ys - HEIGHT / 2) / focal, torch.ones_like(xs)], -1)
        depth = 3.0 + 0.5 * torch.sin(3 * rays[..., 0] + shift) * torch.cos(2 * rays[..., 1])
        points = rays * depth[..., None] + torch.tensor([shift, 0.0, 0.0])
        means.append(points.reshape(-1, 3))
        scales.append((depth / focal).reshape(-1, 1).expand(-1, 3) * (0.5 + torch.rand(per_view, 3, generator=g)))
    means, scales = torch.cat(means)[:count], torch.cat(scales)[:count]
    quats = torch.nn.functional.normalize(torch.randn(count, 4, generator=g), dim=-1)
    opacities = 0.5 + 0.5 * torch.rand(count, generator=g)
    harmonics = 0.3 * torch.randn(count, 3, 9, generator=g)
    return means, quats, scales, opacities, harmonics, focal


def run_one(count: int, frames: int, threads: int) -> dict:
    from anydepth.geometry.gaussians import render_gaussians

    torch.set_num_threads(threads)
    means, quats, scales, opacities, harmonics, focal = scene(count)
    K = torch.tensor([[[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]]])
    times = []
    for f in range(frames):
        w2c = torch.eye(4)[None]
        w2c[0, 0, 3] = -0.1 * f  # a slightly different camera each frame
        start = time.perf_counter()
        out = render_gaussians(means, quats, scales, opacities, harmonics, w2c, K, WIDTH, HEIGHT)
        times.append(time.perf_counter() - start)
    covered = float((out.alpha > 0.5).float().mean())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"gaussians": count, "seconds_per_frame": min(times), "times": times, "covered": covered,
            "peak_rss_mib": peak_mib, "threads": threads}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, nargs="*", default=[200_000, 800_000, 1_500_000])
    parser.add_argument("--frames", type=int, default=2, help="frames per size; the fastest counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one size, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.gaussians[0], args.frames, args.threads)))
        return
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {args.threads} thread(s); frame {WIDTH}x{HEIGHT}")
    print("| Gaussians | s / frame | pixels covered | peak RSS |")
    print("|---:|---:|---:|---:|")
    for count in args.gaussians:
        child = subprocess.run(
            [sys.executable, __file__, "--one", "--gaussians", str(count), "--frames", str(args.frames),
             "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"| {count:,} | {r['seconds_per_frame']:.2f} | {r['covered']:.0%} | {r['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
