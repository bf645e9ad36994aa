"""Depth Anything V2 ``infer_image`` speed: upstream against anydepth, same weights and image, in one run.

Upstream runs in its own virtualenv (``../shared/upstream/make-upstream-env.sh DIR``) in a child process; both
sides fill the network with the same deterministic random weights (``tests/helpers/random_weights.py``), which cost the
same as the official ones. Prints a table of median seconds per image and ratios against upstream::

    PYTHONPATH=src python benchmarks/v2_speed.py --upstream-python /path/to/upvenv/bin/python --encoder vits
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"vits": (64, [48, 96, 192, 384]), "vitb": (128, [96, 192, 384, 768]), "vitl": (256, [256, 512, 1024, 1024])}

# run by the upstream interpreter: build upstream's model, fill it, time infer_image, print JSON
UPSTREAM = """
import json, sys, time, statistics
import numpy as np, torch
sys.path.insert(0, {root!r})
from tests.helpers.random_weights import random_state_dict
from depth_anything_v2.dpt import DepthAnythingV2
torch.set_num_threads({threads})
model = DepthAnythingV2(encoder={encoder!r}, features={features}, out_channels={channels})
model.load_state_dict(random_state_dict({{k: v.shape for k, v in model.state_dict().items()}}, 0))
model.eval()
image = np.load({image!r})
model.infer_image(image, {size})
times = []
for _ in range({repeats}):
    t = time.perf_counter(); model.infer_image(image, {size}); times.append(time.perf_counter() - t)
print(json.dumps({{"median_s": statistics.median(times)}}))
"""


def time_ours(encoder: str, image: np.ndarray, size: int, repeats: int, precision: str) -> float:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.helpers.random_weights import random_state_dict

    from anydepth.compat import DepthAnythingV2

    features, channels = CONFIGS[encoder]
    model = DepthAnythingV2(encoder=encoder, features=features, out_channels=channels, precision=precision)
    model.load_state_dict(random_state_dict({k: v.shape for k, v in model.state_dict().items()}, 0))
    model.eval()
    with torch.inference_mode():
        model.infer_image(image, size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.infer_image(image, size)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-python", required=True, help="python of the upstream side environment")
    parser.add_argument("--encoder", default="vits", choices=sorted(CONFIGS))
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    args = parser.parse_args()

    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.RandomState(0)
    image = (rng.rand(args.height, args.width, 3) * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        image_path = str(Path(tmp) / "image.npy")
        np.save(image_path, image)
        features, channels = CONFIGS[args.encoder]
        code = UPSTREAM.format(
            root=str(ROOT), threads=args.threads or torch.get_num_threads(), encoder=args.encoder,
            features=features, channels=channels, image=image_path, size=args.input_size, repeats=args.repeats,
        )  # fmt: skip
        proc = subprocess.run([args.upstream_python, "-c", code], capture_output=True, text=True, check=True)
        upstream = json.loads(proc.stdout.strip().splitlines()[-1])["median_s"]
    rows = [("upstream DepthAnythingV2.infer_image (fp32)", upstream)]
    for precision in ("fp32", "auto"):
        rows.append((f"anydepth compat infer_image (precision={precision})", time_ours(
            args.encoder, image, args.input_size, args.repeats, precision)))  # fmt: skip
    print(f"{args.encoder}, {args.width}x{args.height} image, input_size {args.input_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    print(f"| {'run':50} | s/image | speed-up vs upstream |")
    print(f"|{'-' * 52}|--------:|---------------------:|")
    for name, seconds in rows:
        print(f"| {name:50} | {seconds:7.3f} | {upstream / seconds:19.2f}x |")


if __name__ == "__main__":
    main()
