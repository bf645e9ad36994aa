"""``anydepth backend`` as a real process on loopback, and what its clients do: upload views, wait for jobs."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from anydepth.service.settings import ServiceSettings

from tests.helpers.paths import SRC

FINAL_STATES = ("done", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackendProcess:
    """``python -m anydepth backend`` in a subprocess on loopback, started and answering ``/health``.

    Args:
        weights: the served da3-small weights (folder or file).
        data_dir: the server's ``--data-dir``; its log goes to ``server-<port>.log`` beside it (appended, so a
            restart on the same port keeps the earlier log).
        workers: ``--workers``.
        token: set as ``ANYDEPTH_BACKEND_TOKEN``.
        port: a free one when None; pass the port of a killed server to restart it where its clients look.
        extra_args: more ``anydepth backend`` options (``--model-memory-gb 1``).
    """

    def __init__(
        self,
        weights: Path,
        data_dir: Path,
        workers: int = 2,
        token: Optional[str] = None,
        port: Optional[int] = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        import httpx

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        command = [
            sys.executable, "-m", "anydepth", "--threads", "1", "backend", "--weights", str(weights),
            "--device", "cpu", "--precision", "fp32", "--port", str(self.port), "--data-dir", str(data_dir),
            "--workers", str(workers), *extra_args,
        ]  # fmt: skip
        if token:
            env["ANYDEPTH_BACKEND_TOKEN"] = token
        self.log_path = Path(data_dir).parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident memory so far (``VmHWM`` of ``/proc/<pid>/status``); 0 off Linux."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024  # kB
        except OSError:
            pass
        return 0

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.process.kill()
        self.process.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.log.close()


def png_bytes(view: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, format="PNG")
    return buffer.getvalue()


def submit_views(client, views: Iterable[np.ndarray], options: str) -> str:
    """Uploads ``views`` as one job with ``options`` (JSON); returns its id."""
    files = [("files", (f"v{i}.png", png_bytes(v), "image/png")) for i, v in enumerate(views)]
    response = client.post("/jobs/upload", files=files, data={"options": options})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_all(client, ids: Iterable[str], timeout: float = 300.0) -> Dict[str, dict]:
    """The jobs ``ids`` once each has ended, by id."""
    deadline = time.monotonic() + timeout
    pending, finished = set(ids), {}
    while pending:
        for job_id in list(pending):
            job = client.get(f"/jobs/{job_id}").json()
            if job["state"] in FINAL_STATES:
                finished[job_id] = job
                pending.discard(job_id)
        assert time.monotonic() < deadline, f"{len(pending)} job(s) unfinished"
        time.sleep(0.1)
    return finished


def da3_settings(tmp_path: Path, weights: Path, **kw: object) -> ServiceSettings:
    """In-process backend settings serving da3-small from ``weights`` on the CPU in float32, polling quickly."""
    from anydepth.service.settings import ServiceSettings

    kw.setdefault("poll_seconds", 0.05)
    return ServiceSettings(
        data_dir=tmp_path / "data", models={"da3-small": str(weights)}, device="cpu", precision="fp32", **kw
    )
