"""Peak memory and speed of streaming a long video: VideoReader -> per-frame colourise -> VideoWriter.

Synthesises a video (a moving gradient) in a child process, so that this process's peak RSS counts only the
streaming, then reads it frame by frame, colours each frame's luminance as if it were a depth map, writes the
image and its colouring side by side, and prints one line of JSON. Memory must not grow with the video's
length: compare ``rss_mib`` at the sampled frames, or run with ``--frames 200`` and ``--frames 2000``.

Run with the package installed (or ``PYTHONPATH=src``)::

    python benchmarks/video_memory.py --frames 2000 --width 320 --height 240
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from anydepth.export.depth_maps import colorize, side_by_side
from anydepth.io.video import VideoReader, VideoWriter


def synthesise(path: Path, frames: int, width: int, height: int, fps: float) -> None:
    """Write a ``frames``-long video of a gradient that moves 2 px right per frame, with a bouncing bar."""
    y, x = np.mgrid[0:height, 0 : 2 * width]
    base = np.stack([x * 255 // (2 * width), y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)
    with VideoWriter(path, fps=fps) as writer:
        for index in range(frames):
            shift = (2 * index) % width
            frame = np.ascontiguousarray(base[:, shift : shift + width])
            bar = index % max(1, height - 10)
            frame[bar : bar + 10] = 255
            writer.write(frame)


def current_rss_mib() -> Optional[float]:
    """Resident memory now, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def colourise(frame: np.ndarray) -> np.ndarray:
    """The per-frame work: the frame itself beside its luminance coloured with Spectral_r, as V2's run.py."""
    luminance = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return side_by_side(frame, colorize(luminance))


def stream(source: Path, target: Path) -> Dict[str, object]:
    samples: Dict[str, Optional[float]] = {}
    count = 0
    start = time.perf_counter()
    with VideoReader(source) as reader, VideoWriter(target, fps=reader.out_fps) as writer:
        expected = reader.num_frames
        for frame in reader:
            writer.write(colourise(frame))
            count += 1
            if count in (10, 100, 500, 1000, 1500) or count == expected:
                samples[str(count)] = round(current_rss_mib() or float("nan"), 1)
        codec = writer.codec
    seconds = time.perf_counter() - start
    return {
        "frames": count,
        "seconds": round(seconds, 2),
        "frames_per_s": round(count / seconds, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_mib_at_frame": samples,
        "codec": codec,
        "output_mib": round(target.stat().st_size / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--synthesise-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.synthesise_only is not None:  # the child process
        synthesise(args.synthesise_only, args.frames, args.width, args.height, args.fps)
        return

    with tempfile.TemporaryDirectory(prefix="anydepth-video-bench-") as folder:
        source, target = Path(folder) / "source.mp4", Path(folder) / "colourised.mp4"
        started = time.perf_counter()
        size = ["--width", str(args.width), "--height", str(args.height), "--fps", str(args.fps)]
        command = [sys.executable, __file__, "--synthesise-only", str(source), "--frames", str(args.frames), *size]
        subprocess.run(command, check=True)
        synth_seconds = time.perf_counter() - started
        baseline = current_rss_mib()
        result = stream(source, target)
    report = {
        "benchmark": "video_memory",
        "size": f"{args.width}x{args.height}",
        "synthesise_seconds": round(synth_seconds, 2),
        "rss_mib_before_streaming": None if baseline is None else round(baseline, 1),
        **result,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
