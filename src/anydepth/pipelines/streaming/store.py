"""The streaming pipeline's work folder: each finished chunk on disk as soon as it is final, and a small state file,
so that a run interrupted anywhere resumes without recomputing finished chunks, within a disk budget."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from anydepth.errors import InputError, OptionError
from anydepth.io.atomic import atomic_open
from anydepth.pipelines.streaming.predictors import ChunkPrediction

logger = logging.getLogger(__name__)

STATE_VERSION = 1
GIB = 1024.0**3


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 if it does not exist)."""
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class WorkDir:
    """Files of one streaming run.

    Layout::

        state.json              settings, finished chunks with their alignment to the previous one, loops, poses
        chunk_0003_head.npz     chunk 3's frames that no later chunk shares (final once written)
        chunk_0003_tail.npz     its last ``overlap`` frames: kept until chunk 4 is aligned to them (the last
                                chunk's tail stays: it owns those frames)

    Args:
        folder: the work folder (created).
        settings: what the results depend on (input, model, chunking, alignment); a folder holding a run with other
            settings is emptied rather than resumed.
        disk_budget_gb: the most this folder may hold, GiB (None: no limit).
    """

    def __init__(self, folder: Path, settings: Dict[str, Any], disk_budget_gb: Optional[float] = None) -> None:
        self.folder = Path(folder)
        self.settings = json.loads(json.dumps(settings))  # what it will read back as
        self.disk_budget_gb = disk_budget_gb
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state()

    # -- state -----------------------------------------------------------------------------------------------------
    def _load_state(self) -> Dict[str, Any]:
        path = self.folder / "state.json"
        fresh = {"version": STATE_VERSION, "settings": self.settings, "chunks": {}, "finished": False}
        if not path.exists():
            return fresh
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = None
        if not state or state.get("version") != STATE_VERSION or state.get("settings") != self.settings:
            logger.warning("%s holds a run with other settings (or a damaged one); starting afresh", self.folder)
            self.clear()
            return fresh
        return state

    def save_state(self) -> None:
        with atomic_open(self.folder / "state.json", "w") as handle:
            json.dump(self.state, handle, indent=1)

    def clear(self) -> None:
        for path in self.folder.glob("chunk_*.npz"):
            path.unlink()
        for path in self.folder.glob("loop_*.npz"):
            path.unlink()
        (self.folder / "state.json").unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the run's files (after a successful run), and the folder if that leaves it empty: never anything
        else a user's ``--work-dir`` may hold."""
        self.clear()
        for pattern in ("chunk_*.tmp-*", "state.tmp-*"):  # temporary files of an interrupted write
            for leftover in self.folder.glob(pattern):
                leftover.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            logger.info("%s holds other files; left in place", self.folder)

    # -- chunks ----------------------------------------------------------------------------------------------------
    def finished_chunks(self) -> List[int]:
        return sorted(int(k) for k in self.state["chunks"])

    def chunk_record(self, index: int) -> Optional[Dict[str, Any]]:
        return self.state["chunks"].get(str(index))

    def _path(self, index: int, part: str) -> Path:
        return self.folder / f"chunk_{index:04d}_{part}.npz"

    def save_chunk(self, index: int, start: int, end: int, pred: ChunkPrediction, overlap: int,
                   relative: Optional[np.ndarray], info: Dict[str, Any]) -> None:  # fmt: skip
        """Write chunk ``index`` (frames ``[start, end)``) as head and tail, then mark it finished with its alignment
        ``relative`` (4x4, its frame into the previous chunk's; None for the first), then drop the previous tail."""
        split = max(len(pred) - overlap, 0)
        for part, (a, b) in (("head", (0, split)), ("tail", (split, len(pred)))):
            with atomic_open(self._path(index, part), "wb") as handle:
                np.savez(handle, **pred.take(a, b).arrays())
        record = {"start": start, "end": end, "head": split, **info}
        record["relative"] = None if relative is None else np.asarray(relative, np.float64).reshape(-1).tolist()
        self.state["chunks"][str(index)] = record
        self.save_state()
        if index > 0:
            self._path(index - 1, "tail").unlink(missing_ok=True)
        self.check_budget()

    def load_part(self, index: int, part: str) -> ChunkPrediction:
        with np.load(self._existing(index, part)) as data:
            return ChunkPrediction.from_arrays({k: data[k] for k in data.files})

    def load_owned(self, index: int, is_last: bool) -> ChunkPrediction:
        """The frames chunk ``index`` owns: its head, and its tail too if it is the last chunk."""
        head = self.load_part(index, "head")
        if not is_last:
            return head
        tail = self.load_part(index, "tail").arrays()
        return ChunkPrediction.from_arrays({k: np.concatenate((v, tail[k])) for k, v in head.arrays().items()})

    def load_descriptors(self, index: int, is_last: bool) -> Optional[np.ndarray]:
        """(F, D) descriptors of the frames chunk ``index`` owns, without reading its maps; None if it has none."""
        parts = []
        for part in ("head", "tail") if is_last else ("head",):
            with np.load(self._existing(index, part)) as data:
                if "descriptors" not in data.files:
                    return None
                parts.append(data["descriptors"])
        return np.concatenate(parts)

    def _existing(self, index: int, part: str) -> Path:
        path = self._path(index, part)
        if not path.exists():
            raise InputError(f"{path}: a finished chunk's file is missing; delete {self.folder} and run again")
        return path

    # -- disk ------------------------------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        return folder_bytes(self.folder)

    def check_budget(self, projected_bytes: Optional[float] = None) -> None:
        """Raise if the folder holds more than the budget, or (after the first chunk) will by the projection."""
        if self.disk_budget_gb is None:
            return
        used = self.used_bytes()
        need = max(float(used), float(projected_bytes or 0.0))
        if need > self.disk_budget_gb * GIB:
            what = "holds" if used > self.disk_budget_gb * GIB else "would need about"
            raise OptionError(
                "disk_budget",
                self.disk_budget_gb,
                f"the work folder {self.folder} {what} {need / GIB:.3g} GiB; raise the budget, lower --process-res "
                "or --fps, or point --work-dir at a larger disk",
            )
