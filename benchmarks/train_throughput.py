"""Training throughput and peak memory of each family on this CPU: `anydepth train` from random weights on the
synthetic generator, a few steps each, in fresh processes (the numbers come from each run's train.json).

    PYTHONPATH=src python benchmarks/train_throughput.py [--steps 12] [--threads 2]

Prints a Markdown table with samples/s (frames per second: a DA3 sample is its views, a video sample its clip),
peak RSS, and the CPU's model name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import cpu_model

# (preset, options): sizes a user fine-tuning on a CPU would pick, batch sizes that fit this machine's memory
RUNS = [
    ("dav2-small", ["--size", "266x266", "--batch-size", "4"]),
    ("dav2-metric-indoor-small", ["--size", "266x266", "--batch-size", "4"]),
    ("da3mono-large", ["--size", "266x266", "--batch-size", "2"]),
    ("da3-small", ["--size", "266x266", "--batch-size", "1", "--frames", "4"]),
    ("da3metric-large", ["--size", "266x266", "--batch-size", "2"]),
    ("vda-small", ["--size", "266x266", "--batch-size", "1", "--frames", "8"]),
    ("anydepth-nano", ["--size", "126x98", "--batch-size", "8"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--only", default=None, help="comma-separated presets")
    args = parser.parse_args()
    runs = [r for r in RUNS if args.only is None or r[0] in args.only.split(",")]
    rows = []
    for preset, options in runs:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "anydepth", "--threads", str(args.threads), "train", "--model", preset,
                       "--from-scratch", "--data", "synthetic", "--synthetic-scenes", "8", "--synthetic-views", "8",
                       "--steps", str(args.steps), "--lr", "1e-4", "--precision", args.precision, "--out", out,
                       "-q", *options]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{preset} failed:\n{done.stderr[-2000:]}")
            summary = json.loads((Path(out) / "train.json").read_text())
        frames = int(options[options.index("--frames") + 1]) if "--frames" in options else 1
        batch = int(options[options.index("--batch-size") + 1])
        rows.append((preset, " ".join(options), summary["samples_per_second"] * frames, batch * frames,
                     summary["peak_rss_mib"]))  # fmt: skip
        print(json.dumps({"preset": preset, "frames_per_s": rows[-1][2], "peak_rss_mib": rows[-1][4]}), flush=True)
    print(f"\n`anydepth train --from-scratch --data synthetic --steps {args.steps} --precision {args.precision}`, "
          f"{args.threads} threads; CPU: {cpu_model()}")  # fmt: skip
    print("| preset | options | frames/s | frames per step | peak RSS |")
    print("|---|---|--:|--:|--:|")
    for preset, options, rate, per_step, rss in rows:
        print(f"| {preset} | `{options}` | {rate:.2f} | {per_step} | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
