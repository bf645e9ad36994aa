"""A bounded soak of a real backend: concurrent clients upload, poll, cancel and delete while the server is killed
(SIGKILL) once and restarted on the same data folder; the report says what every job and response ended as.

Used by ``tests/service/test_soak.py`` (small) and ``benchmarks/service_soak.py`` (any size).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests.helpers.backend import FINAL_STATES, BackendProcess, png_bytes
from tests.helpers.inputs import scene_views

# what each client does with its j-th job, in turn: poll it until it ends, cancel it at once, delete it once ended
ACTIONS = ("poll", "cancel", "poll", "delete")


@dataclass
class SoakReport:
    """What a soak left: job states in the database, responses by status, files left, the server's peak memory."""

    clients: int
    jobs_per_client: int
    workers: int
    model_memory_gb: float
    seconds: float = 0.0
    submitted: int = 0  # uploads answered 201 (one whose answer the kill cut off is retried: one job more)
    deleted: int = 0
    jobs_in_database: int = 0  # at the end: submitted - deleted, plus the uploads a retry made twice
    states: Dict[str, int] = field(default_factory=dict)  # every job left in the database, by state
    unfinished: List[str] = field(default_factory=list)
    running_at_kill: int = 0
    interrupted: Dict[str, str] = field(default_factory=dict)  # the jobs running at the kill: how each ended
    requeued_done: int = 0  # jobs running at the kill, then done after the restart (at their second attempt)
    requeued_not_finished: List[str] = field(default_factory=list)
    statuses: Dict[int, int] = field(default_factory=dict)  # every HTTP answer the clients got, by status
    server_errors: List[str] = field(default_factory=list)  # the 5xx answers: "METHOD path status body"
    transport_errors: int = 0  # requests cut off by the kill (retried)
    client_errors: List[str] = field(default_factory=list)  # anything a client thread did not expect
    left_files: List[str] = field(default_factory=list)  # uploads/* and exports/*.partial at the end
    peak_rss_bytes: List[int] = field(default_factory=list)  # VmHWM of each server process (before kill, at end)

    @property
    def peak_rss_gb(self) -> float:
        return max(self.peak_rss_bytes, default=0) / 2**30

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        out["peak_rss_gb"] = round(self.peak_rss_gb, 3)
        out["peak_rss_over_model_budget"] = round(self.peak_rss_gb / self.model_memory_gb, 2)
        return out


class _Clients:
    """The client threads' shared view: where the server is, and every answer they got."""

    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.server_errors: List[str] = []
        self.client_errors: List[str] = []
        self.transport_errors = 0
        self.submitted = 0
        self.deleted = 0
        self.actions: Dict[str, str] = {}  # what its client does with each job
        self.ended: Dict[str, Dict[str, Any]] = {}  # each job as its client last saw it, once ended

    def call(self, client, method: str, path: str, **kwargs):
        """One request, retried while the server is down (killed and not yet restarted); the answer is counted."""
        import httpx

        while True:
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError:
                with self.lock:
                    self.transport_errors += 1
                if time.monotonic() > self.deadline:
                    raise
                time.sleep(0.1)
                continue
            with self.lock:
                self.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    self.server_errors.append(f"{method} {path} {response.status_code} {response.text[:200]}")
            return response


def _client(shared: _Clients, n: int, jobs: int, views: List[Any], options: str) -> None:
    import httpx

    try:
        with httpx.Client(base_url=shared.url, timeout=60) as client:
            files = [("files", (f"v{i}.png", png_bytes(v), "image/png")) for i, v in enumerate(views)]
            mine: List[Tuple[str, str]] = []
            for j in range(jobs):
                response = shared.call(client, "POST", "/jobs/upload", files=files, data={"options": options})
                if response.status_code != 201:
                    shared.client_errors.append(f"client {n}: upload answered {response.status_code}")
                    continue
                with shared.lock:
                    shared.submitted += 1
                job_id, action = response.json()["id"], ACTIONS[(n + j) % len(ACTIONS)]
                shared.actions[job_id] = action
                mine.append((job_id, action))
                if action == "cancel":  # 409 when it ended meanwhile
                    response = shared.call(client, "POST", f"/jobs/{job_id}/cancel")
                    if response.status_code not in (200, 409):
                        shared.client_errors.append(f"client {n}: cancel answered {response.status_code}")
            for job_id, action in mine:
                while True:
                    response = shared.call(client, "GET", f"/jobs/{job_id}")
                    if response.status_code != 200:
                        shared.client_errors.append(f"client {n}: job answered {response.status_code}")
                        break
                    if response.json()["state"] in FINAL_STATES:
                        shared.ended[job_id] = response.json()
                        break
                    if time.monotonic() > shared.deadline:
                        raise TimeoutError(f"job {job_id} did not end")
                    time.sleep(0.1)
                if action == "delete":  # 404 when a retry follows a delete whose answer the kill cut off
                    response = shared.call(client, "DELETE", f"/jobs/{job_id}")
                    if response.status_code not in (204, 404):
                        shared.client_errors.append(f"client {n}: delete answered {response.status_code}")
                    with shared.lock:
                        shared.deleted += 1
    except Exception as exc:  # reported; a thread's exception would otherwise vanish
        with shared.lock:
            shared.client_errors.append(f"client {n}: {exc!r}")


def _working_files(data_dir: Path) -> List[str]:
    uploads = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "uploads").rglob("*"))
    partial = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "exports").glob("*.partial"))
    return uploads + partial


def run_soak(
    weights: Path,
    data_dir: Path,
    clients: int = 4,
    jobs_per_client: int = 4,
    views: int = 2,
    size: Tuple[int, int] = (48, 64),
    process_res: int = 56,
    workers: int = 2,
    model_memory_gb: float = 1.0,
    kill_after: Optional[int] = None,
    timeout: float = 600.0,
) -> SoakReport:
    """Runs the soak and reports; asserts nothing (the test and the benchmark judge the report).

    Args:
        weights: the served da3-small weights.
        data_dir: the server's data folder (created).
        clients: client threads; each submits ``jobs_per_client`` jobs of ``views`` images of ``size`` (h, w),
            then polls them; it cancels or deletes some (:data:`ACTIONS`).
        process_res: the jobs' processing size.
        workers: the server's worker threads.
        model_memory_gb: the server's ``--model-memory-gb``.
        kill_after: the server is killed once this many jobs were submitted and one is running (default: half of
            them), then restarted on the same port and data folder.
        timeout: the longest the whole soak may take.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    report = SoakReport(clients, jobs_per_client, workers, model_memory_gb)
    args = ["--model-memory-gb", str(model_memory_gb)]
    total = clients * jobs_per_client
    kill_after = total // 2 if kill_after is None else kill_after
    options = f'{{"process_res": {process_res}, "export_format": "mini_npz"}}'
    pictures = scene_views(views, *size)
    start = time.monotonic()
    server = BackendProcess(weights, data_dir, workers=workers, extra_args=args)
    restarted: Optional[BackendProcess] = None
    shared = _Clients(server.url, start + timeout)
    threads = [
        threading.Thread(target=_client, args=(shared, n, jobs_per_client, pictures, options)) for n in range(clients)
    ]
    try:
        import httpx

        for thread in threads:
            thread.start()
        with httpx.Client(base_url=server.url, timeout=30) as watcher:
            while time.monotonic() < start + timeout:  # mid-run: enough submitted, more queued, and running a job
                if shared.submitted >= kill_after:  # that no client cancels (so that it must run again)
                    queued = watcher.get("/health").json()["jobs"]["queued"]
                    running = watcher.get("/jobs", params={"state": "running"}).json()["jobs"]
                    if queued and any(shared.actions.get(job["id"]) != "cancel" for job in running):
                        break
                    if not any(t.is_alive() for t in threads):
                        break
                time.sleep(0.01)
        report.peak_rss_bytes.append(server.peak_rss_bytes())
        server.kill()
        with closing(sqlite3.connect(str(data_dir / "jobs.sqlite"))) as db:  # what the kill interrupted
            running = [row[0] for row in db.execute("SELECT id FROM jobs WHERE state='running'")]
        report.running_at_kill = len(running)
        restarted = BackendProcess(weights, data_dir, workers=workers, port=server.port, extra_args=args)
        for thread in threads:
            thread.join(max(0.0, start + timeout - time.monotonic()))
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            jobs = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
            deadline = time.monotonic() + 10  # a job is final a moment before its worker sweeps its files
            while _working_files(data_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
        report.peak_rss_bytes.append(restarted.peak_rss_bytes())
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
    report.seconds = round(time.monotonic() - start, 1)
    report.jobs_in_database = len(jobs)
    report.states = dict(Counter(job["state"] for job in jobs))
    report.unfinished = [job["id"] for job in jobs if job["state"] not in FINAL_STATES]
    by_id = {**shared.ended, **{job["id"]: job for job in jobs}}  # a deleted job as its client saw it end
    for job_id in running:
        job = by_id.get(job_id, {"state": "lost", "attempts": None})
        report.interrupted[job_id] = f"{job['state']} at attempt {job['attempts']}"
        if job["state"] not in FINAL_STATES or (job["state"] == "done" and job["attempts"] != 2):
            report.requeued_not_finished.append(job_id)
        elif job["state"] == "done":
            report.requeued_done += 1
    report.submitted, report.deleted = shared.submitted, shared.deleted
    report.statuses = dict(shared.statuses)
    report.server_errors, report.client_errors = shared.server_errors, shared.client_errors
    report.transport_errors = shared.transport_errors
    report.client_errors += [f"client thread {i} still running" for i, t in enumerate(threads) if t.is_alive()]
    report.left_files = _working_files(data_dir)
    return report
