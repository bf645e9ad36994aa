"""Peak memory and time of one DA3 scene with many views (default: 100 views of 640x480 at process_res 504).

Random weights in the official layout (the cost does not depend on them); runs the native pipeline and a GLB +
mini_npz export in a child process and prints one JSON line::

    PYTHONPATH=src python benchmarks/large_scene.py --views 100 --model da3-small
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, time, json, numpy as np, torch
sys.path.insert(0, {root!r})
from tests.helpers.random_weights import fill_
import anydepth
from anydepth.export.formats import export
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.pipelines.runtime import resolve_device, resolve_precision, tune_allocator
from anydepth.presets import get_preset
preset = get_preset({model!r})
net = fill_(anydepth.build_network(preset)).eval()
dev = resolve_device("cpu")
tune_allocator("keep")  # as anydepth.load_model
model = MultiViewModel(net, preset, dev, resolve_precision({precision!r}, dev))
rng = np.random.RandomState(0)
yy, xx = np.mgrid[0:480, 0:640]
views = [np.clip(np.stack([(xx + 5 * i) % 256, (yy + 3 * i) % 256, (xx + yy) % 256], -1)
         + rng.normal(0, 8, (480, 640, 3)), 0, 255).astype(np.uint8) for i in range({views})]
start = time.perf_counter()
pred = model.infer(views, process_res={res})
infer_s = time.perf_counter() - start
start = time.perf_counter()
export(pred, {out!r}, "mini_npz-glb")
print(json.dumps({{"infer_s": round(infer_s, 1), "export_s": round(time.perf_counter() - start, 1),
                  "depth_shape": list(pred.depth.shape), "precision": model.precision}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--model", default="da3-small")
    parser.add_argument("--process-res", type=int, default=504)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(
            root=str(Path(__file__).resolve().parents[1]), model=args.model, precision=args.precision,
            views=args.views, res=args.process_res, out=str(Path(tmp) / "scene"),
        )  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
        wall = time.perf_counter() - start
    # the only child this process waits for: its ru_maxrss is the child's peak (KiB on Linux)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        views=args.views, model=args.model, process_res=args.process_res, wall_s=round(wall, 1),
        peak_rss_mib=round(peak_mib, 1),
    )  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
