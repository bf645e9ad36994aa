"""Long-video reconstruction on this CPU: frames/s, peak RSS and temporary disk of the streaming pipeline.

Each run is a child process: the pipeline (``anydepth.pipelines.streaming.run_streaming``) and the stream job's
output writer (``anydepth.jobs.stream.write_outputs``) on a looped synthetic walk of ``--frames`` frames, with ground
truth plus noise as every chunk's prediction (``tests/helpers/streaming.py``: a random Sim(3) per chunk, depth and
pose noise, a drift the loop closure has to remove) in place of the network, whose cost depends on the device and is
measured elsewhere. What is measured is everything around the network: chunking, alignment, loop search and pose
graph, the work folder and the outputs. The child reports its own peak RSS (``ru_maxrss``), the time spent in the
stand-in predictor (rendering), the largest size the work folder reached, the outputs' size and the ATE::

    PYTHONPATH=src python benchmarks/stream.py --frames 500 2000
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

from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(frames: int, size: str, chunk_size: int, overlap: int, loop: bool) -> dict:
    import numpy as np
    from tests.helpers.streaming import NoisyTruth, SyntheticSequence

    from anydepth.bench.pose_metrics import trajectory_scores
    from anydepth.jobs.options import StreamJobOptions
    from anydepth.jobs.stream import write_outputs
    from anydepth.pipelines.streaming import FrameList, WorkDir, run_streaming
    from anydepth.pipelines.streaming.store import folder_bytes

    width, height = (int(v) for v in size.split("x"))
    sequence = SyntheticSequence(frames, width, height, seed=0)
    inner = NoisyTruth(sequence, seed=1, drift_deg=0.5)
    predictor_seconds = [0.0]

    def predictor(batch, indices, cameras):
        start = time.perf_counter()
        out = inner(batch, indices, cameras)
        predictor_seconds[0] += time.perf_counter() - start
        return out

    with tempfile.TemporaryDirectory() as tmp:
        options = StreamJobOptions(export_dir=Path(tmp) / "out", chunk_size=chunk_size, overlap=overlap, loop=loop)
        work = WorkDir(options.work_folder, {"benchmark": frames})
        peak_work = [0]

        def on_chunk(chunk):
            peak_work[0] = max(peak_work[0], folder_bytes(work.folder))

        began = time.perf_counter()
        result = run_streaming(FrameList(list(range(frames))), predictor, options.pipeline_options(), work, on_chunk)
        pipeline_seconds = time.perf_counter() - began
        summary = write_outputs(result, options)
        total_seconds = time.perf_counter() - began
        results_bytes = folder_bytes(Path(tmp) / "out" / "results_output")
        other_bytes = folder_bytes(Path(tmp) / "out") - results_bytes - folder_bytes(work.folder)
        w2c = np.load(Path(tmp) / "out" / "w2c.npy")
        ate = trajectory_scores(w2c, sequence.w2c).ate_rmse
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "frames": frames, "size": size, "chunks": summary.chunks, "loops": len(summary.loops),
        "search": summary.search_engine, "seconds_total": total_seconds, "seconds_pipeline": pipeline_seconds,
        "seconds_predictor": predictor_seconds[0], "peak_rss_mib": rss_kib / 1024,
        "peak_work_mib": peak_work[0] / 2**20, "results_output_mib": results_bytes / 2**20,
        "other_outputs_mib": other_bytes / 2**20, "points": summary.points, "ate": ate,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--size", default="64x48", help="WIDTHxHEIGHT of the synthetic frames")
    parser.add_argument("--chunk-size", type=int, default=120)
    parser.add_argument("--overlap", type=int, default=60)
    parser.add_argument("--no-loop", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.size, args.chunk_size, args.overlap, not args.no_loop)))
        return
    print(f"CPU: {cpu_model()}")
    header = ("frames", "chunks", "loops", "frames/s", "frames/s w/o predictor", "peak RSS MiB", "peak work MiB",
              "results_output MiB", "ATE")  # fmt: skip
    print(" | ".join(header))
    for frames in args.frames:
        command = [sys.executable, __file__, "--child", str(frames), "--size", args.size, "--chunk-size",
                   str(args.chunk_size), "--overlap", str(args.overlap)]  # fmt: skip
        command += ["--no-loop"] if args.no_loop else []
        r = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        own = r["seconds_total"] - r["seconds_predictor"]
        print(
            f"{r['frames']} | {r['chunks']} | {r['loops']} ({r['search']}) | {r['frames'] / r['seconds_total']:.1f} | "
            f"{r['frames'] / own:.1f} | {r['peak_rss_mib']:.0f} | {r['peak_work_mib']:.1f} | "
            f"{r['results_output_mib']:.1f} | {r['ate']:.4f}"
        )
        print(json.dumps(r), file=sys.stderr)


if __name__ == "__main__":
    main()
