"""A bounded soak of ``anydepth backend``: concurrent clients, cancels, deletes and one SIGKILL mid-run.

Writes a random-weight da3-small in the hub layout (the work done does not depend on the weights), starts the real
backend on loopback, runs CLIENTS threads that each upload JOBS small jobs, poll them, cancel one in four and
delete one in four once ended; when half the jobs are in, the server is killed with SIGKILL while it runs a job
and restarted on the same port and data folder. Prints one JSON object: every job's final state, the HTTP answers
by status (a 5xx is a failure), the working files left (uploads/*, exports/*.partial: none expected), and the
server's peak RSS (VmHWM, before the kill and at the end) against its --model-memory-gb budget. Exit code 1 when
a check fails.

    PYTHONPATH=src python benchmarks/service_soak.py --clients 8 --jobs 8 --process-res 56
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import cpu_model
from tests.helpers.networks import save_da3_hub_folder
from tests.helpers.soak import run_soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="Client threads.")
    parser.add_argument("--jobs", type=int, default=8, help="Jobs per client.")
    parser.add_argument("--views", type=int, default=2, help="Images per job.")
    parser.add_argument("--size", type=int, nargs=2, default=(48, 64), metavar=("H", "W"), help="Image size.")
    parser.add_argument("--process-res", type=int, default=56)
    parser.add_argument("--workers", type=int, default=2, help="The server's --workers.")
    parser.add_argument("--model-memory-gb", type=float, default=1.0, help="The server's --model-memory-gb.")
    parser.add_argument("--kill-after", type=int, default=None, help="Jobs submitted before the kill (half).")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Longest the soak may take, seconds.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "DA3-SMALL")
        weights.mkdir()
        save_da3_hub_folder(weights, "da3-small", seed=11)
        report = run_soak(
            weights, Path(tmp, "data"), clients=args.clients, jobs_per_client=args.jobs, views=args.views,
            size=tuple(args.size), process_res=args.process_res, workers=args.workers,
            model_memory_gb=args.model_memory_gb, kill_after=args.kill_after, timeout=args.timeout,
        )  # fmt: skip
    checks = {
        "every_job_final": not report.unfinished,
        "requeued_jobs_finished": not report.requeued_not_finished and report.running_at_kill > 0,
        "no_5xx": not report.server_errors,
        "no_client_errors": not report.client_errors,
        "no_working_files_left": not report.left_files,
    }
    print(json.dumps({
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "views": args.views, "size": f"{args.size[1]}x{args.size[0]}", "process_res": args.process_res,
        **report.as_dict(), "checks": checks,
    }, indent=1), flush=True)  # fmt: skip
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
