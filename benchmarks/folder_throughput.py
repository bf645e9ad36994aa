"""Images per second and peak RSS of ``anydepth images`` on a folder of synthetic photos (dav2-small).

Writes N synthetic 640x480 JPEGs and a random dav2-small checkpoint (the cost does not depend on the weights),
runs the real command line in a child process and prints one JSON line::

    PYTHONPATH=src python benchmarks/folder_throughput.py --images 200 --input-size 518
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

import torch
from _common import write_photos

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.random_weights import random_state_dict

from anydepth.api import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        write_photos(folder, args.images)
        weights = tmp / "depth_anything_v2_vits.pth"
        net = build_network("dav2-small")
        torch.save(random_state_dict({k: v.shape for k, v in net.state_dict().items()}, 0), weights)
        del net
        cmd = [sys.executable, "-m", "anydepth", "images", str(folder), "--weights", str(weights), "--quiet",
               "--input-size", str(args.input_size), "--batch-size", str(args.batch_size), "--device", "cpu",
               "--precision", args.precision, "--outdir", str(tmp / "out"), "--raw", "png16"]  # fmt: skip
        start = time.perf_counter()
        child = subprocess.Popen(cmd)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            raise SystemExit("anydepth images failed")
        print(json.dumps({
            "images": args.images, "size": "640x480", "input_size": args.input_size,
            "precision": args.precision, "batch_size": args.batch_size,
            "images_per_s": round(args.images / seconds, 3), "seconds": round(seconds, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
