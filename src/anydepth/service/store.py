"""The backend's job table in SQLite (WAL): one row per job, so that a restart loses nothing."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINISHED = frozenset({DONE, FAILED, CANCELLED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    inputs TEXT NOT NULL,
    input_kind TEXT NOT NULL,
    export_dir TEXT NOT NULL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created_at);
"""


@dataclass(frozen=True)
class Job:
    """One row of the job table.

    ``inputs`` are the files the worker reads (uploaded copies or confined server paths); ``input_kind`` is
    "images" (views of one scene) or "video" (one file sampled at ``options["fps"]``).
    """

    id: str
    state: str
    progress: float
    stage: str
    model: str
    options: Dict[str, Any]
    inputs: List[str]
    input_kind: str
    export_dir: str
    error: Optional[str]
    cancel_requested: bool
    attempts: int
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            state=row["state"],
            progress=row["progress"],
            stage=row["stage"],
            model=row["model"],
            options=json.loads(row["options"]),
            inputs=json.loads(row["inputs"]),
            input_kind=row["input_kind"],
            export_dir=row["export_dir"],
            error=row["error"],
            cancel_requested=bool(row["cancel_requested"]),
            attempts=row["attempts"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


def new_job_id() -> str:
    """A random 32-hex-digit id (unguessable, safe as a folder name)."""
    return secrets.token_hex(16)


class JobStore:
    """Thread-safe access to the job table; every change is committed before the call returns.

    Args:
        path: the SQLite file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> Optional[Job]:
        row = self._db.execute(sql, args).fetchone()
        return Job.from_row(row) if row else None

    def requeue_interrupted(self) -> int:
        """Jobs left running by a stopped server go back to the queue (their partial exports are redone)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, stage=?, finished_at=? WHERE state=? AND cancel_requested=1",
                (CANCELLED, CANCELLED, time.time(), RUNNING),
            )
            cur = self._db.execute(
                "UPDATE jobs SET state=?, stage='requeued after restart', progress=0, started_at=NULL WHERE state=?",
                (QUEUED, RUNNING),
            )
            return cur.rowcount

    def create(
        self, job_id: str, model: str, options: Dict[str, Any], inputs: List[str], input_kind: str, export_dir: str
    ) -> Job:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, model, options, inputs, input_kind, export_dir, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, QUEUED, model, json.dumps(options), json.dumps(inputs), input_kind, export_dir, time.time()),
            )
            return self._one("SELECT * FROM jobs WHERE id=?", (job_id,))

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._one("SELECT * FROM jobs WHERE id=?", (job_id,))

    def list(self, state: Optional[str] = None, limit: int = 100, offset: int = 0) -> List[Job]:
        """Jobs, newest first, optionally in one state."""
        where, args = ("WHERE state=?", (state,)) if state else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [Job.from_row(r) for r in rows]

    def counts(self) -> Dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    def unfinished_ids(self) -> Set[str]:
        """The ids of the queued and running jobs: those whose inputs and partial exports are still needed."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)).fetchall()
        return {r["id"] for r in rows}

    def claim_next(self) -> Optional[Job]:
        """The oldest queued job, atomically marked running; None when the queue is empty."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM jobs WHERE state=? ORDER BY created_at, id LIMIT 1", (QUEUED,)
                ).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                self._db.execute(
                    "UPDATE jobs SET state=?, stage='starting', progress=0, started_at=?, attempts=attempts+1"
                    " WHERE id=?",
                    (RUNNING, time.time(), row["id"]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._one("SELECT * FROM jobs WHERE id=?", (row["id"],))

    def set_progress(self, job_id: str, progress: float, stage: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET progress=?, stage=? WHERE id=? AND state=?", (progress, stage, job_id, RUNNING)
            )

    def finish(self, job_id: str, state: str, error: Optional[str] = None) -> None:
        """A running job ends as done, failed or cancelled."""
        progress_sql = "1" if state == DONE else "progress"
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET state=?, error=?, progress={progress_sql}, stage=?, finished_at=? WHERE id=?",
                (state, error, state, time.time(), job_id),
            )

    def request_cancel(self, job_id: str) -> Optional[Job]:
        """Cancels a queued job at once; flags a running one (its worker stops at the next stage boundary)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE jobs SET state=?, stage=?, finished_at=?, cancel_requested=1 WHERE id=? AND state=?",
                    (CANCELLED, CANCELLED, time.time(), job_id, QUEUED),
                )
                self._db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state=?", (job_id, RUNNING))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._one("SELECT * FROM jobs WHERE id=?", (job_id,))

    def delete(self, job_id: str) -> bool:
        """Removes a finished job's row; False if it is missing or not finished."""
        with self._lock:
            placeholders = ",".join("?" * len(FINISHED))
            cur = self._db.execute(f"DELETE FROM jobs WHERE id=? AND state IN ({placeholders})", (job_id, *FINISHED))
            return cur.rowcount == 1

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])
