"""Peak memory of a running backend on one job of sixteen 8000x8000 images (the report of issue 18).

Makes a random da3-small in the hub folder layout and the views, smooth colour gradients so that the files stay
small as in the report (16 PNGs of 8000x8000: 7.4 MB), starts ``python -m anydepth backend`` from ``--src``
(default: this checkout's ``src``; pass another checkout's to measure the code before a change), uploads the views
as one job with the service's default options (process_res 504, mini_npz + glb), waits for it and prints one
JSON line: the server process's peak RSS (``VmHWM``), its RSS once the model was loaded, the job's state and
time::

    PYTHONPATH=src python benchmarks/service_memory.py --src /work/main/src     # before
    PYTHONPATH=src python benchmarks/service_memory.py                          # after
    PYTHONPATH=src python benchmarks/service_memory.py --format jpg             # JPEG views (decoded reduced)

The images and weights are kept in ``--workdir`` between runs. A server that has ``--max-job-megapixels`` gets it
raised to take the job (its default refuses these 1,024 megapixels with 413).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def _weights(folder: Path) -> Path:
    """A random da3-small in the hub layout (config.json + model.safetensors), made once."""
    if (folder / "model.safetensors").exists():
        return folder
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import save_model
    from tests.helpers.random_weights import fill_

    from anydepth.models.da3.network import build_da3_network

    class HubWrapper(torch.nn.Module):  # the hub files hold the network under ``model``
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.model = net

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    save_model(HubWrapper(fill_(build_da3_network("da3-small"), seed=11).eval()), str(folder / "model.safetensors"))
    return folder


def _views(folder: Path, count: int, size: int, suffix: str) -> list:
    """``count`` smooth size x size RGB gradients, each turned and shifted a little, made once."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"view_{i:02d}.{suffix}"
        if not path.exists():
            ramp = Image.linear_gradient("L").resize((size, size))
            red = ramp.rotate(90 * (i % 4))
            green = ramp.transpose(Image.Transpose.ROTATE_90).point(lambda v, i=i: (v + 16 * i) % 256)
            blue = Image.radial_gradient("L").resize((size, size))
            Image.merge("RGB", (red, green, blue)).save(path, **({"quality": 90} if suffix == "jpg" else {}))
        paths.append(path)
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return int(re.search(field + r":\s+(\d+)", handle.read()).group(1)) * 1024


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="The anydepth source the server runs.")
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "anydepth-service-memory")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    weights = _weights(args.workdir / "DA3-SMALL")
    paths = _views(args.workdir / f"views-{args.size}", args.views, args.size, args.format)
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    base = [sys.executable, "-m", "anydepth", "--threads", str(args.threads), "backend"]
    helped = subprocess.run([*base, "--help"], env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    extra = ["--max-job-megapixels", "100000"] if "--max-job-megapixels" in helped else []
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        command = [*base, "--weights", str(weights), "--device", "cpu", "--port", str(port),
                   "--data-dir", data, "--max-upload-mb", "4096", *extra]  # fmt: skip
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.5)
            loaded_rss = _status_bytes(server.pid, "VmRSS")
            start = time.perf_counter()
            files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
            response = httpx.post(url + "/jobs/upload", files=files, timeout=3600)
            if response.status_code != 201:
                raise SystemExit(f"upload refused: {response.status_code} {response.text}")
            job_id = response.json()["id"]
            while True:
                job = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
                if job["state"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(1)
            seconds = time.perf_counter() - start
            peak = _status_bytes(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(60)
    print(
        json.dumps(
            {
                "src": str(args.src),
                "views": args.views,
                "size": args.size,
                "format": args.format,
                "upload_mib": round(sum(p.stat().st_size for p in paths) / 2**20, 1),
                "state": job["state"],
                "error": job["error"],
                "job_s": round(seconds, 1),
                "rss_after_start_mib": round(loaded_rss / 2**20, 1),
                "peak_rss_mib": round(peak / 2**20, 1),
                "cpu": cpu_model(),
            }
        )
    )


if __name__ == "__main__":
    main()
