"""Atomic file writing: write to a temporary name in the target folder, rename into place only on success."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import IO, Iterator, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def temporary_sibling(final_path: PathLike) -> Path:
    """A fresh, unused path next to ``final_path`` that keeps its suffix.

    ``out/depth.png`` gives ``out/depth.tmp-1a2b3c4d.png``: same folder (so the final ``os.replace`` is an atomic
    rename on one file system) and same suffix (so writers that pick the format from the suffix, such as
    ``cv2.imencode``, OpenEXR or FFmpeg, still work). The file is not created.

    Args:
        final_path: the path the output will finally have.
    """
    final_path = Path(final_path)
    stem, suffix = final_path.stem, final_path.suffix
    while True:
        candidate = final_path.with_name(f"{stem}.tmp-{secrets.token_hex(4)}{suffix}")
        if not os.path.lexists(candidate):
            return candidate


def _remove_quietly(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # never hide the original error behind a cleanup error
        logger.warning("could not remove temporary file %s: %s", path, exc)


class PendingFile:
    """A temporary sibling of a final path that is either committed (renamed into place) or discarded.

    For writers whose lifetime spans several calls (a video writer); one-shot writers use :func:`atomic_path`.

    Args:
        final_path: the path the output will finally have.
        make_parents: create the final path's missing parent folders.
    """

    def __init__(self, final_path: PathLike, make_parents: bool = True) -> None:
        self.final_path = Path(final_path)
        if make_parents:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self.temp_path = temporary_sibling(self.final_path)
        self.done = False

    def commit(self) -> Path:
        """Rename the temporary file onto the final path (replacing it) and return the final path."""
        if self.done:
            raise RuntimeError(f"{self.final_path}: pending file already committed or discarded")
        try:
            os.replace(self.temp_path, self.final_path)
        except OSError:
            _remove_quietly(self.temp_path)
            raise
        finally:
            self.done = True
        return self.final_path

    def discard(self) -> None:
        """Remove the temporary file if it exists; the final path is left as it was."""
        if not self.done:
            _remove_quietly(self.temp_path)
            self.done = True


@contextlib.contextmanager
def atomic_path(final_path: PathLike, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it onto ``final_path`` if the block succeeds.

    If the block raises, the temporary file is removed and the exception propagates: an existing file at
    ``final_path`` is left untouched and no partial output appears.

    Args:
        final_path: the path the output will finally have.
        make_parents: create missing parent folders first.

    Yields:
        A path in the same folder with the same suffix, e.g. ``name.tmp-1a2b3c4d.png``. It does not exist yet.

    Example:
        >>> with atomic_path("out/depth.png") as tmp:  # doctest: +SKIP
        ...     cv2.imwrite(str(tmp), image)
    """
    pending = PendingFile(final_path, make_parents=make_parents)
    try:
        yield pending.temp_path
    except BaseException:
        pending.discard()
        raise
    pending.commit()


@contextlib.contextmanager
def atomic_open(final_path: PathLike, mode: str = "wb", make_parents: bool = True, **open_kwargs) -> Iterator[IO]:
    """Open a temporary sibling of ``final_path`` for writing; rename it into place when the block succeeds.

    Args:
        final_path: the path the output will finally have.
        mode: a write mode, ``"wb"`` (default) or ``"w"``; ``x`` is implied since the temporary name is fresh.
        make_parents: create missing parent folders first.
        **open_kwargs: passed to :func:`open` (``encoding``, ``newline``...).

    Yields:
        The open file object. It is flushed, synced to disk and closed before the rename.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open needs a write mode ('w' or 'wb'), got {mode!r}")
    with atomic_path(final_path, make_parents=make_parents) as temp_path:
        handle = open(temp_path, "x" + mode[1:], **open_kwargs)  # noqa: SIM115 - closed by the with below
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
