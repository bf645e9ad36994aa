"""Inputs of batch jobs: many small images in nested folders, corrupt files, and short videos."""

from __future__ import annotations

from pathlib import Path
from typing import List

from tests.helpers.inputs import write_photo
from tests.helpers.inputs import write_video as _write_video


def write_images(root: Path, count: int, seed: int = 0, size=(48, 64)) -> List[Path]:
    """``count`` pictures under ``root/a`` (PNG) and ``root/b/c`` (JPEG, the other orientation); returns them."""
    h, w = size
    paths = []
    for i in range(count):
        folder = root / ("a" if i % 2 == 0 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        suffix, shape = (".png", (h, w)) if i % 2 == 0 else (".jpg", (w, h))
        paths.append(write_photo(folder / f"img{i:04d}{suffix}", *shape, seed=seed + i))
    return paths


def write_corrupt(root: Path) -> List[Path]:
    """A JPEG that is not one and a PNG cut after its header: both must end in the failures file."""
    root.mkdir(parents=True, exist_ok=True)
    broken = root / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg at all")
    good = write_photo(root / "full.png")
    truncated = root / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    good.unlink()
    return [broken, truncated]


def write_video(path: Path, frames: int = 40, h: int = 48, w: int = 64, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_video(path, frames=frames, h=h, w=w, fps=fps)


class _CrashOnce:
    """A model whose process dies (``os._exit``, as a killed worker does) at its ``at``-th forward pass, once per
    job: the first replica to get there leaves ``marker`` behind, so the restarted one carries on."""

    def __init__(self, model, marker: str, at: int) -> None:
        self.model, self.marker, self.at, self.calls = model, Path(marker), at, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def infer_iter(self, images, **kwargs):
        import os

        self.calls += 1
        if self.calls == self.at and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return self.model.infer_iter(images, **kwargs)


def crash_once_loader(spec, runtime, marker: str, at: int = 3):
    """A loader (pass it with functools.partial) whose model kills its own process once: see :class:`_CrashOnce`."""
    from anydepth.jobs.loader import load

    return _CrashOnce(load(spec, runtime), marker, at)
