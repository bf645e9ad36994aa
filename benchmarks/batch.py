"""Images per second of ``anydepth batch`` on this machine: the local engine against Ray Data (a local cluster).

Writes ``--images`` synthetic 640x480 JPEGs and a random dav2-small checkpoint (the cost does not depend on the
weights), then runs each engine in a child process on the same folder into a fresh OUTPUT (16-bit PNG per image,
JSONL manifest) and prints one JSON line per engine, after ``lscpu``'s model name:

- ``local``: one replica with ``--threads`` torch threads, ``--workers`` groups in flight;
- ``ray``: a local cluster of ``--threads`` CPUs (no dashboard, a 200 MB object store) and one replica per CPU,
  one torch thread each. ``ray_start_s`` is the cluster's start; ``images_per_s`` counts the job alone (listing,
  the replicas' start and model loads, inference, writing), as does the local figure.

``peak_rss_mib`` of the local child is one replica's memory (the model, a batch in flight, decoding, writing),
the figure the scaling model in benchmarks/RESULTS.md starts from::

    PYTHONPATH=src python benchmarks/batch.py --images 96 --input-size 266
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

from _common import cpu_model, write_photos

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(engine: str, folder: str, weights: str, out: str, input_size: int, batch_size: int, threads: int,
          workers: int) -> dict:  # fmt: skip
    from anydepth.jobs.batch import BatchOptions, batch_job
    from anydepth.jobs.options import ModelSpec, RuntimeOptions

    spec = ModelSpec("dav2-small", weights=weights)
    ray_start = 0.0
    if engine == "ray":
        import ray

        started = time.perf_counter()
        src = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
        ray.init(num_cpus=threads, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}})  # fmt: skip
        ray_start = time.perf_counter() - started
        runtime = RuntimeOptions(device="cpu", precision="fp32", threads=1)
        options = BatchOptions(input_size=input_size, batch_size=batch_size, engine="ray", replicas=threads)
    else:
        runtime = RuntimeOptions(device="cpu", precision="fp32", threads=threads)
        options = BatchOptions(input_size=input_size, batch_size=batch_size, workers=workers)
    started = time.perf_counter()
    report = batch_job(folder, Path(out), spec, runtime, options, progress=False)
    seconds = time.perf_counter() - started
    if engine == "ray":
        import ray

        ray.shutdown()
    return {
        "engine": engine, "images": report.done, "failed": report.failed, "input_size": input_size,
        "batch_size": batch_size, "cpus": threads, "seconds": round(seconds, 2),
        "images_per_s": round(report.done / seconds, 3), "ray_start_s": round(ray_start, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=266)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="CPUs each engine gets (torch threads / Ray CPUs).")
    parser.add_argument("--workers", type=int, default=2, help="Local engine: groups in flight.")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, folder, weights, out, size, batch, threads, workers = args.child
        print(json.dumps(child(engine, folder, weights, out, int(size), int(batch), int(threads), int(workers))))
        return

    import torch
    from tests.helpers.random_weights import random_state_dict

    from anydepth.api import build_network

    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count()}))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "photos"
        folder.mkdir()
        write_photos(folder, args.images)
        weights = tmp_path / "depth_anything_v2_vits.pth"
        net = build_network("dav2-small")
        torch.save(random_state_dict({k: v.shape for k, v in net.state_dict().items()}, 0), weights)
        del net
        for engine in args.engines.split(","):
            cmd = [sys.executable, __file__, "--child", engine, str(folder), str(weights), str(tmp_path / engine),
                   str(args.input_size), str(args.batch_size), str(args.threads), str(args.workers)]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(f"{engine} failed:\n{result.stderr[-3000:]}")
            print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
