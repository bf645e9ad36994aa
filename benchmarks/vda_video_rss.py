"""Peak memory and speed of ``anydepth video --model vda-small`` end to end, against video length.

Makes a random vda-small checkpoint in the official layout (the network cost does not depend on the weights),
synthesises 640x360 videos, runs the real command line on each in a child process (windowed mode, overlap
alignment, depth video + compressed npz) and prints the child's peak RSS and frames per second as JSON lines.
Flat memory means the peaks do not grow with the number of frames.

    PYTHONPATH=src python benchmarks/vda_video_rss.py --frames 300 3000 --input-size 140
    PYTHONPATH=src python benchmarks/vda_video_rss.py --frames 64 --input-size 518
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
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--mode", default="windowed")
    parser.add_argument("--raw", default="npz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        net = build_network("vda-small")
        weights = tmp / "video_depth_anything_vits.pth"
        torch.save(random_state_dict({k: v.shape for k, v in net.state_dict().items()}, seed=0), weights)
        del net
        for frames in args.frames:
            video = tmp / f"synthetic_{frames}.mp4"
            synthesise(video, frames, args.width, args.height, fps=30.0)
            cmd = [sys.executable, "-m", "anydepth", "video", str(video), "--model", "vda-small", "--weights",
                   str(weights), "--quiet", "--input-size", str(args.input_size), "--outdir", str(tmp / "out"),
                   "--raw", args.raw, "--device", "cpu", "--precision", args.precision,
                   "--vda-mode", args.mode]  # fmt: skip
            start = time.perf_counter()
            child = subprocess.Popen(cmd)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the max over all children
            seconds = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status):
                raise SystemExit(f"anydepth video failed with exit code {os.waitstatus_to_exitcode(status)}")
            print(json.dumps({
                "frames": frames, "size": f"{args.width}x{args.height}", "input_size": args.input_size,
                "mode": args.mode, "precision": args.precision, "raw": args.raw,
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "frames_per_s": round(frames / seconds, 3),
                "seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
