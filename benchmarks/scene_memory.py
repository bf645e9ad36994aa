"""Working memory of one DA3 scene job (inference, then a mini_npz + glb export) per processed pixel.

Calibrates :data:`anydepth.jobs.memory.WORKING_BYTES_PER_PIXEL`, the constant of the service's memory estimate.
Each run is a child process: random weights in the official layout (the cost does not depend on them), a warm-up
call on one tiny view (it makes the bf16 weight copies, which belong to the model, not to the job), then the peak
RSS is reset (``/proc/self/clear_refs``) and ``S`` views already at the processing size (no decoding, no resize:
those the estimate counts apart) go through ``MultiViewModel.infer`` and the export. Prints one JSON line per run
with the peak over the warm model, in bytes per processed pixel, next to what the estimate says::

    PYTHONPATH=src python benchmarks/scene_memory.py --model da3-small --views 2 8 16 --precision fp32 auto
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, re, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from tests.helpers.random_weights import fill_
import anydepth
from anydepth.export.formats import export
from anydepth.io.images import ImageHeader
from anydepth.jobs.memory import scene_working_bytes
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.pipelines.runtime import resolve_device, resolve_precision, tune_allocator
from anydepth.presets import get_preset
from anydepth.web.models import model_bytes


def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1)) * 1024


preset = get_preset({model!r})
tune_allocator("keep")  # as anydepth.load_model
dev = resolve_device("cpu")
model = MultiViewModel(fill_(anydepth.build_network(preset)).eval(), preset, dev, resolve_precision({precision!r}, dev))
weights = model_bytes(model)
model.infer([np.zeros((56, 56, 3), np.uint8)], process_res=56)  # makes the bf16 weight copies, if any
rng = np.random.RandomState(0)
h, w = {height}, {width}
yy, xx = np.mgrid[0:h, 0:w]
views = [np.clip(np.stack([(xx + 5 * i) % 256, (yy + 3 * i) % 256, (xx + yy) % 256], -1)
         + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8) for i in range({views})]
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the present RSS
base = status("VmRSS")
start = time.perf_counter()
pred = model.infer(views, process_res=max(h, w))
export(pred, {out!r}, "mini_npz-glb")
seconds = time.perf_counter() - start
peak = status("VmHWM") - base
estimate = scene_working_bytes([ImageHeader(h, w)] * {views}, preset.encoder, max(h, w))
print(json.dumps({{"model": preset.name, "precision": model.precision, "views": {views}, "size": [h, w],
                  "model_mib": round(weights / 2**20, 1), "peak_over_model_mib": round(peak / 2**20, 1),
                  "bytes_per_pixel": round(peak / ({views} * h * w), 1),
                  "estimate_mib": round(estimate / 2**20, 1), "seconds": round(seconds, 1)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["da3-small"])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--height", type=int, default=378)
    parser.add_argument("--width", type=int, default=504)
    args = parser.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    for model in args.model:
        for precision in args.precision:
            for views in args.views:
                with tempfile.TemporaryDirectory() as tmp:
                    code = CHILD.format(
                        root=root, model=model, precision=precision, views=views, height=args.height,
                        width=args.width, out=str(Path(tmp) / "scene"),
                    )  # fmt: skip
                    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
                print(proc.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
