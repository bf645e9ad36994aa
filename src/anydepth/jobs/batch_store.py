"""Where a batch job reads and what it keeps: input listing (local paths or fsspec URIs), deterministic output
names, and the manifest and failures files that make the job resumable.

A batch job's OUTPUT folder holds, besides the per-item files:

- ``manifest.jsonl`` (or ``manifest/part-*.parquet``): one row per finished item (:data:`RESULT_FIELDS`). The
  manifest is the job's journal: an item whose key is in it is never run again.
- ``failures.jsonl``: one row per item that could not be done, with the reason. Failed items are not in the
  manifest, so the next run tries them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set

from anydepth.errors import InputError, require
from anydepth.io.atomic import atomic_path
from anydepth.io.images import IMAGE_SUFFIXES
from anydepth.io.inputs import VIDEO_SUFFIXES, natural_sort_key

RESULT_FIELDS = (
    ("key", "string"), ("uri", "string"), ("name", "string"), ("kind", "string"), ("status", "string"),
    ("reason", "string"), ("start", "int64"), ("stop", "int64"), ("lead", "int64"), ("frames", "int64"),
    ("fps", "float64"), ("height", "int64"), ("width", "int64"), ("depth_kind", "string"),
    ("depth_min", "float64"), ("depth_max", "float64"), ("depth_mean", "float64"), ("depth_median", "float64"),
    ("depth_p05", "float64"), ("depth_p95", "float64"), ("valid_fraction", "float64"),
    ("intrinsics", "list<float64>"), ("extrinsics", "list<float64>"), ("outputs", "list<string>"),
    ("model", "string"), ("seconds", "float64"),
)  # fmt: skip
"""The columns of a result row (manifest and failures): name and Arrow type. Cameras are row-major, intrinsics
3x3 in pixels of the input, extrinsics 3x4 world-to-camera (OpenCV), where the model predicts them; ``outputs``
are paths relative to OUTPUT."""

MANIFEST_FORMATS = ("jsonl", "parquet")
MEDIA_SUFFIXES = IMAGE_SUFFIXES.union(VIDEO_SUFFIXES)
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def empty_row() -> Dict[str, Any]:
    return {name: None for name, _ in RESULT_FIELDS}


def is_uri(text: str) -> bool:
    """``s3://bucket/key``, ``gs://...``, ``memory://...``: read through fsspec. ``file://`` counts as local."""
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class Source:
    """One input file: its URI (an absolute local path or an fsspec URI) and its path relative to the input."""

    uri: str
    rel: str

    @property
    def is_video(self) -> bool:
        return posixpath.splitext(self.rel)[1].lower() in VIDEO_SUFFIXES


def output_name(source: Source) -> str:
    """Deterministic, collision-free output name: the relative path without its suffix and a short hash of the
    full URI (two inputs with one relative path, from two list lines or buckets, still get two names).

    >>> output_name(Source("/data/a/img 1.jpg", "a/img 1.jpg"))
    'a/img_1-1eda9712'
    """
    stem = posixpath.splitext(source.rel)[0].lstrip("/")
    stem = "/".join(p for p in _UNSAFE.sub("_", stem).split("/") if p not in ("", ".", ".."))
    return f"{stem or 'item'}-{hashlib.sha1(source.uri.encode('utf-8')).hexdigest()[:8]}"


def _filesystem(uri: str) -> Any:
    fsspec = require("fsspec", "batch")
    fs, _ = fsspec.core.url_to_fs(uri)
    return fs


def list_sources(spec: str) -> List[Source]:
    """The image and video files of an input: a folder (recursively), a glob (``**`` any depth), a ``.txt`` list
    (one path or URI a line, relative paths from the list's folder, ``#`` comments) or one file; local or any
    URI fsspec reads. Naturally sorted, except a list, which keeps its order.

    Raises:
        InputError: nothing there, or nothing matched.
    """
    text = str(spec)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_uri(text):
        sources = _list_remote(text)
    else:
        sources = _list_local(Path(text))
    if not sources:
        raise InputError(f"{spec}: no images or videos there (suffixes: {', '.join(sorted(MEDIA_SUFFIXES))})")
    return sources


def _is_media(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in MEDIA_SUFFIXES


def _list_local(path: Path) -> List[Source]:
    if path.is_file() and path.suffix.lower() == ".txt":
        return _list_file(path.read_text(encoding="utf-8-sig"), str(path.resolve().parent))
    if path.is_file():
        return [Source(path.resolve().as_posix(), path.name)]
    if path.is_dir():
        root = path.resolve()
        found = [
            Path(folder, name)
            for folder, dirs, names in os.walk(root)
            for name in names
            if not name.startswith(".") and _is_media(name)
        ]
        found.sort(key=natural_sort_key)
        return [Source(p.as_posix(), p.relative_to(root).as_posix()) for p in found]
    if _GLOB_CHARS.search(str(path)):
        import glob

        root = Path(_glob_root(str(path))).resolve()
        found = [Path(p).resolve() for p in glob.glob(str(path), recursive=True) if Path(p).is_file() and _is_media(p)]
        found.sort(key=natural_sort_key)
        return [Source(p.as_posix(), _relative(p.as_posix(), root.as_posix())) for p in found]
    raise InputError(f"{path}: no such file or folder; pass a folder, a glob, a .txt list, a file or a URI")


def _list_remote(uri: str) -> List[Source]:
    fs = _filesystem(uri)
    path = fs._strip_protocol(uri)
    if _GLOB_CHARS.search(path):
        root, found = _glob_root(path), [p for p in fs.glob(path) if _is_media(p)]
    elif path.endswith(".txt") and fs.isfile(path):
        with fs.open(path, "rb") as f:
            return _list_file(f.read().decode("utf-8-sig"), fs.unstrip_protocol(posixpath.dirname(path)))
    elif fs.isdir(path):
        root, found = path, [p for p in fs.find(path) if _is_media(p)]
    elif fs.isfile(path):
        return [Source(fs.unstrip_protocol(path), posixpath.basename(path))]
    else:
        raise InputError(f"{uri}: nothing there")
    found = sorted(found, key=natural_sort_key)
    found = [p for p in found if not posixpath.basename(p).startswith(".")]
    return [Source(fs.unstrip_protocol(p), _relative(p, root)) for p in found]


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard."""
    head = _GLOB_CHARS.split(pattern, 1)[0]
    return head if head.endswith("/") else posixpath.dirname(head)


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/")
    return path[len(root) + 1 :] if root and path.startswith(root + "/") else posixpath.basename(path)


def _list_file(text: str, base: str) -> List[Source]:
    sources = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_uri(line):
            sources.append(Source(line, posixpath.basename(line.split("://", 1)[1])))
            continue
        full = line if posixpath.isabs(line) else posixpath.join(base, line)
        if not is_uri(full):
            full = Path(full).resolve().as_posix()
        sources.append(Source(full, _relative(full, base)))
    return sources


def read_bytes(uri: str) -> bytes:
    """The whole file (workers read their own inputs: the driver only lists them)."""
    if not is_uri(uri):
        return Path(uri).read_bytes()
    with _filesystem(uri).open(uri, "rb") as f:
        return f.read()


def read_source_image(uri: str) -> Any:
    """An (H, W, 3) image of a local path or URI, as :func:`anydepth.io.images.read_image` reads it."""
    from anydepth.io.images import read_image

    if not is_uri(uri):
        return read_image(uri)
    from PIL import Image

    try:
        return read_image(Image.open(io.BytesIO(read_bytes(uri))))
    except OSError as exc:
        raise InputError(f"{uri}: cannot read image ({exc})") from None


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[Path]:
    """A local path of the file: itself, or a temporary copy of a remote one (FFmpeg opens paths)."""
    if not is_uri(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="anydepth-batch-") as folder:
        local = Path(folder) / posixpath.basename(uri.split("://", 1)[1])
        _filesystem(uri).get_file(uri, str(local))
        yield local


def _arrow_schema() -> Any:
    pa = require("pyarrow", "batch")
    types = {
        "string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
        "list<float64>": pa.list_(pa.float64()), "list<string>": pa.list_(pa.string()),
    }  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in RESULT_FIELDS])


def _jsonable(row: Dict[str, Any]) -> Dict[str, Any]:
    return {name: row.get(name) for name, _ in RESULT_FIELDS}


class Manifest:
    """The manifest and failures files of one OUTPUT folder; safe to call from several threads.

    JSONL rows are appended and flushed one group at a time, and synced to disk at most every ``sync_seconds``
    (a sync per group capped the driver at 2,300 rows/s): a crashed process loses nothing written, a crashed
    machine at most the last second's rows, whose items then run again and rewrite the same files. A torn last
    line is cut off when the file is opened again. Parquet rows are buffered and written as
    one new part file per :meth:`flush` (``manifest/part-<time>-<n>.parquet``, each written atomically): Parquet
    files cannot be appended to, and parts are the layout Arrow, Spark and Ray read as one table.

    Args:
        outdir: the OUTPUT folder.
        fmt: "jsonl" or "parquet".
        flush_rows: Parquet rows per part.
        sync_seconds: longest time between syncs of the JSONL files.
    """

    def __init__(self, outdir: Path, fmt: str = "jsonl", flush_rows: int = 1024, sync_seconds: float = 1.0) -> None:
        if fmt not in MANIFEST_FORMATS:
            raise InputError(f"manifest format {fmt!r}: choose one of {', '.join(MANIFEST_FORMATS)}")
        self.outdir, self.fmt, self.flush_rows = Path(outdir), fmt, flush_rows
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.outdir / "manifest.jsonl"
        self.parquet_dir = self.outdir / "manifest"
        self.failures_path = self.outdir / "failures.jsonl"
        self._lock = threading.Lock()
        self._buffer: List[Dict[str, Any]] = []
        self._parts = 0
        self.sync_seconds = sync_seconds
        self._synced = time.monotonic()
        self.done: Set[str] = set()
        self.rows: Dict[str, Dict[str, Any]] = {}  # segments' rows only: a million images' rows would be gigabytes
        for row in self.read():
            self._keep(row)

    def read(self) -> List[Dict[str, Any]]:
        """Every row recorded so far, in either format (a folder may switch formats between runs)."""
        rows = _read_jsonl(self.jsonl_path, repair=True)
        if self.parquet_dir.is_dir():
            pq = require("pyarrow.parquet", "batch")
            for part in sorted(self.parquet_dir.glob("part-*.parquet")):
                rows.extend(pq.read_table(part).to_pylist())
        return rows

    def record(self, rows: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Append finished rows (those of keys not yet done) and failure rows; returns the rows taken as done.

        A key is recorded once: a group run twice (a worker retried after a crash) adds nothing the second time.
        """
        done, failed = [], []
        with self._lock:
            for row in rows:
                if row.get("status") == "ok":
                    if row["key"] in self.done:
                        continue
                    self._keep(row)
                    done.append(_jsonable(row))
                else:
                    failed.append(_jsonable(row))
            sync = time.monotonic() - self._synced >= self.sync_seconds
            if sync:
                self._synced = time.monotonic()
            if failed:
                _append_jsonl(self.failures_path, failed, sync)
            if not done:
                return done
            if self.fmt == "jsonl":
                _append_jsonl(self.jsonl_path, done, sync)
            else:
                self._buffer.extend(done)
                if len(self._buffer) >= self.flush_rows:
                    self._write_part()
        return done

    def _keep(self, row: Dict[str, Any]) -> None:
        self.done.add(row["key"])
        if row.get("kind") == "segment":
            self.rows[row["key"]] = row

    def flush(self) -> None:
        """Write buffered Parquet rows and sync the JSONL files (the end of a run)."""
        with self._lock:
            if self.fmt == "parquet" and self._buffer:
                self._write_part()
            for path in (self.jsonl_path, self.failures_path):
                if path.is_file():
                    with open(path, "rb+") as f:
                        os.fsync(f.fileno())

    def _write_part(self) -> None:
        pa = require("pyarrow", "batch")
        pq = require("pyarrow.parquet", "batch")
        table = pa.Table.from_pylist(self._buffer, schema=_arrow_schema())
        self._parts += 1
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{self._parts:05d}.parquet"
        with atomic_path(self.parquet_dir / name) as tmp:
            pq.write_table(table, tmp)
        self._buffer = []

    def failures(self) -> List[Dict[str, Any]]:
        return _read_jsonl(self.failures_path, repair=False)


def _read_jsonl(path: Path, repair: bool) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):  # a crash mid-line: drop the torn line, its item runs again
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def _append_jsonl(path: Path, rows: List[Dict[str, Any]], sync: bool = True) -> None:
    text = "".join(json.dumps(row, allow_nan=False, default=_plain) + "\n" for row in rows)
    with open(path, "ab") as f:
        f.write(text.encode("utf-8"))  # one write per group: lines of other groups never interleave
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def manifest_table(outdir: Path) -> Any:
    """The manifest of OUTPUT as one Arrow table (whichever format wrote it)."""
    pa = require("pyarrow", "batch")
    return pa.Table.from_pylist([_jsonable(r) for r in Manifest(outdir).read()], schema=_arrow_schema())


def finite_or_none(value: Optional[float]) -> Optional[float]:
    import math

    return None if value is None or not math.isfinite(value) else float(value)
