"""A small client of the backend (standard library only): upload a scene, follow the job, download its exports."""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from anydepth.errors import AnyDepthError, InputError


class BackendError(AnyDepthError, RuntimeError):
    """The backend refused the job, failed it, or could not be reached."""


def _multipart(files: Sequence[Path], options: Dict[str, Any]) -> Tuple[bytes, str]:
    boundary = "anydepth-" + secrets.token_hex(12)
    parts: List[bytes] = []
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n'
    parts.append(head.encode() + json.dumps(options).encode() + b"\r\n")
    for path in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class BackendClient:
    """Talks to ``anydepth backend`` at ``url``.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8008``.
        token: bearer token, when the server has one.
        timeout: seconds for each HTTP request.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Optional[bytes] = None, content_type: Optional[str] = None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise BackendError(f"backend {self.url}: {message} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            message = f"cannot reach the backend at {self.url} ({reason}); start it with `anydepth backend`"
            raise BackendError(message) from None

    def _json(self, method: str, path: str, body: Optional[bytes] = None, content_type: Optional[str] = None):
        with self._request(method, path, body, content_type) as response:
            return json.loads(response.read())

    def submit(self, files: Sequence[Path], options: Dict[str, Any]) -> Dict[str, Any]:
        """Uploads the files (views of one scene, or one video) with the job options; returns the queued job."""
        body, content_type = _multipart([Path(f) for f in files], options)
        return self._json("POST", "/jobs/upload", body, content_type)

    def job(self, job_id: str) -> Dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}")

    def wait(
        self, job_id: str, poll_seconds: float = 0.5, on_progress: Optional[Callable[[Dict[str, Any]], None]] = None
    ) -> Dict[str, Any]:
        """Polls until the job finishes; a failed or cancelled job raises BackendError."""
        while True:
            job = self.job(job_id)
            if on_progress:
                on_progress(job)
            if job["state"] == "done":
                return job
            if job["state"] in ("failed", "cancelled"):
                raise BackendError(f"backend job {job_id} {job['state']}: {job.get('error') or 'no reason given'}")
            time.sleep(poll_seconds)

    def download(self, job_id: str, export_dir: Path) -> List[Path]:
        """Writes every exported file of a done job under ``export_dir`` (each atomically); returns their paths."""
        from anydepth.io.atomic import atomic_open

        export_dir = Path(export_dir)
        written = []
        for entry in self._json("GET", f"/jobs/{job_id}/files")["files"]:
            relative = PurePosixPath(entry["path"])
            if relative.is_absolute() or ".." in relative.parts:
                raise BackendError(f"backend returned an unsafe file name {entry['path']!r}")
            target = export_dir.joinpath(*relative.parts)
            quoted = urllib.parse.quote(entry["path"])
            with self._request("GET", f"/jobs/{job_id}/files/{quoted}") as response, atomic_open(target) as out:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            written.append(target)
        return written


def scene_files(spec: str, max_frames: Optional[int] = None) -> List[Path]:
    """The local files that ``anydepth auto SPEC`` would read: one video, or the images the spec names."""
    from anydepth.io.inputs import expand_inputs, is_video_path

    path = Path(spec)
    if path.is_file() and is_video_path(path):
        return [path]
    paths = expand_inputs(spec)
    if not paths:
        raise InputError(f"{spec}: no images to send")
    return paths[:max_frames] if max_frames else paths
