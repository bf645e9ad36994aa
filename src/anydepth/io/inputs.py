"""Turn an input spec (image file, folder, glob pattern or .txt list) into a list of image paths."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import List, Tuple

from anydepth.errors import InputError
from anydepth.io.atomic import PathLike
from anydepth.io.images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
"""File suffixes (lower case, with the dot) treated as videos."""

_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


def is_image_path(path: PathLike) -> bool:
    """True if the path's suffix (any case) is one of :data:`~anydepth.io.images.IMAGE_SUFFIXES`."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_path(path: PathLike) -> bool:
    """True if the path's suffix (any case) is one of :data:`VIDEO_SUFFIXES`; the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def natural_sort_key(path: PathLike) -> Tuple:
    """Sort key that orders numbers by value: ``img2.png`` before ``img10.png``.

    Compares folder by folder, case-insensitively, with the exact text as the tie-breaker so that the order is
    total and the same on every platform.
    """
    text = Path(path).as_posix()
    parts = tuple(
        tuple((0, int(piece), piece) if piece.isdigit() else (1, 0, piece.casefold()) for piece in _DIGITS.split(part))
        for part in text.split("/")
    )
    return (parts, text)


def expand_inputs(spec: PathLike, recursive: bool = False) -> List[Path]:
    """Expand one input spec into image paths, in the forms that Depth Anything V2's ``run.py`` accepts.

    - an existing file: returned as is, whatever its suffix (reading it decides whether it is an image);
    - a ``.txt`` file: one path per line; relative paths are resolved against the list's folder, blank lines and
      lines starting with ``#`` are skipped, and every listed file must exist; the order is kept;
    - a folder: the image files in it (by suffix, any case), naturally sorted; hidden files (``.name``) are
      skipped; subfolders only with ``recursive=True``;
    - a glob pattern (``frames/*.jpg``, ``data/**/*.png``; ``**`` matches any depth): the matching image files,
      naturally sorted.

    Args:
        spec: the input as the user typed it.
        recursive: for a folder, also collect images in its subfolders.

    Returns:
        The image paths; never empty.

    Raises:
        InputError: nothing exists at ``spec``, nothing matched, or a listed file is missing.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return _read_list(path) if path.suffix.lower() == ".txt" else [path]
    if path.is_dir():
        return _scan_folder(path, recursive)
    if _GLOB_CHARS.search(text):
        return _match_glob(text)
    raise InputError(f"{text}: no such file or folder; pass an image, a folder, a glob pattern or a .txt list")


def _read_list(list_path: Path) -> List[Path]:
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_path}: cannot read the list of images ({exc})") from None
    paths = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = list_path.parent / path
        if not path.is_file():
            raise InputError(f"{list_path}:{number}: {entry}: no such file; fix the list or remove the line")
        paths.append(path)
    if not paths:
        raise InputError(f"{list_path}: the list names no images (only blank lines or # comments)")
    return paths


def _scan_folder(folder: Path, recursive: bool) -> List[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    paths = [
        path
        for path in candidates
        if is_image_path(path) and not _is_hidden(path.relative_to(folder)) and path.is_file()
    ]
    if not paths:
        has_subfolders = not recursive and any(child.is_dir() for child in folder.iterdir())
        hint = "; pass recursive=True (--recursive) to search its subfolders" if has_subfolders else ""
        suffixes = " ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"{folder}: no images found ({suffixes}){hint}")
    return sorted(paths, key=natural_sort_key)


def _match_glob(pattern: str) -> List[Path]:
    paths = [Path(match) for match in glob.glob(os.path.expanduser(pattern), recursive=True)]
    paths = [path for path in paths if is_image_path(path) and path.is_file()]
    if not paths:
        raise InputError(f"{pattern}: the pattern matches no image files; check the pattern and the folder")
    return sorted(paths, key=natural_sort_key)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
