"""How fast `anydepth.bench.synthetic` renders ground truth on this CPU: frames per second, indoor and outdoor.

Usage: PYTHONPATH=src python benchmarks/synthetic_render.py [--frames 50] [--size 256x192]
Prints one JSON line per scene kind with the CPU's model name.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import cpu_model

from anydepth.bench.synthetic import indoor_scene, outdoor_scene, render_views, walk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", default="256x192", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    for make in (indoor_scene, outdoor_scene):
        scene = make(seed=0)
        start = time.perf_counter()
        count = sum(1 for _ in render_views(scene, walk(scene, args.frames, loop=True), width, height))
        seconds = time.perf_counter() - start
        record = {"scene": scene.name, "frames": count, "size": f"{width}x{height}",
                  "frames_per_s": round(count / seconds, 1), "cpu": cpu_model()}  # fmt: skip
        print(json.dumps(record))


if __name__ == "__main__":
    main()
