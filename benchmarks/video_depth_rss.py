"""Peak memory of ``anydepth video`` end to end (decode -> dav2-small -> encode + raw .npy) against video length.

Makes a random dav2-small checkpoint in the official layout (the network cost does not depend on the weights),
synthesises videos of 200 and 2,000 frames, runs the real command line on each in a child process and reports
the child's peak RSS and frames per second as JSON lines. Flat memory means the two peaks are about equal.

    PYTHONPATH=src python benchmarks/video_depth_rss.py --frames 200 2000 --input-size 112
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.random_weights import random_state_dict
from video_memory import synthesise

from anydepth.api import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--input-size", type=int, default=112)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        net = build_network("dav2-small")
        weights = tmp / "depth_anything_v2_vits.pth"
        torch.save(random_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed=0), weights)
        del net
        for frames in args.frames:
            video = tmp / f"synthetic_{frames}.mp4"
            synthesise(video, frames, args.width, args.height, fps=30.0)
            cmd = [sys.executable, "-m", "anydepth", "video", str(video), "--weights", str(weights), "--quiet",
                   "--input-size", str(args.input_size), "--outdir", str(tmp / "out"), "--raw", "npy",
                   "--device", "cpu"]  # fmt: skip
            start = time.perf_counter()
            child = subprocess.Popen(cmd)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the max over all children
            seconds = time.perf_counter() - start
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                raise SystemExit(f"anydepth video failed with exit code {child.returncode}")
            peak_kib = usage.ru_maxrss
            print(json.dumps({
                "frames": frames, "size": f"{args.width}x{args.height}", "input_size": args.input_size,
                "peak_rss_mib": round(peak_kib / 1024, 1), "frames_per_s": round(frames / seconds, 2),
                "seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
