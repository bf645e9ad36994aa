"""Scene discovery in a gallery folder: which sub-folders hold exports, and which of their files may be served."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from anydepth.web.security import is_inside

GLB_NAME = "scene.glb"  # anydepth.export.glb.GLB_PATH
PLY_NAME = "scene.ply"  # anydepth.export.ply.PLY_PATH
DEPTH_VIS_DIR = "depth_vis"  # anydepth.export.depth_vis.DEPTH_VIS_DIR
INPUT_DIRS = ("images", "input_images", "inputs")
"""Sub-folders whose images count as a scene's inputs (thumbnail when there is no depth visualisation)."""

CONTENT_TYPES: Dict[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".glb": "model/gltf-binary",
    ".ply": "application/octet-stream",  # no registered type; served for the viewer and as a download
    ".mp4": "video/mp4",
}
"""The only files the gallery serves, by lower-case suffix, with the content type they are served with."""

IMAGE_TYPES = frozenset(s for s, t in CONTENT_TYPES.items() if t.startswith("image/"))

MAX_DEPTH = 4
"""Folder levels below the gallery root searched for scenes."""
MAX_SCENES = 2000
"""Scenes listed at most (a gallery pointed at a huge tree stays fast)."""


@dataclass
class Scene:
    """One exported scene; every path is relative to the gallery root, in POSIX form.

    Attributes:
        name: the scene folder ("" for the root itself).
        glb: ``scene.glb`` when present.
        ply: ``scene.ply`` when present.
        depth_images: ``depth_vis/`` images, sorted.
        input_images: images in the folder itself or its input sub-folders, sorted.
        videos: ``.mp4`` files in the folder.
    """

    name: str
    glb: Optional[str] = None
    ply: Optional[str] = None
    depth_images: List[str] = field(default_factory=list)
    input_images: List[str] = field(default_factory=list)
    videos: List[str] = field(default_factory=list)

    @property
    def thumbnail(self) -> Optional[str]:
        """The first depth visualisation, else the first input image."""
        return (self.depth_images or self.input_images or [None])[0]

    @property
    def model_3d(self) -> Optional[str]:
        """The file the 3D viewer shows: the GLB (it has the camera frusta), else the PLY."""
        return self.glb or self.ply

    @property
    def is_scene(self) -> bool:
        return bool(self.glb or self.ply or self.depth_images)


def is_hidden(relative: str) -> bool:
    """True when a segment of a relative path starts with a dot (``.git``, ``.partial`` folders, dotfiles)."""
    return any(part.startswith(".") for part in Path(relative).parts)


def _files(folder: Path, root: Path, suffixes: frozenset) -> List[str]:
    """Regular files in ``folder`` (not below) with one of the suffixes, inside ``root`` after symlinks; sorted."""
    if not folder.is_dir() or not is_inside(folder.resolve(), root):
        return []
    found = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in suffixes:
            continue
        path = Path(entry.path)
        if path.is_file() and is_inside(path.resolve(), root):
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


def read_scene(root: Path, folder: Path) -> Scene:
    """What the scene ``folder`` (inside ``root``, both resolved) holds."""
    scene = Scene(name=folder.relative_to(root).as_posix() if folder != root else "")
    for attribute, name in (("glb", GLB_NAME), ("ply", PLY_NAME)):
        path = folder / name
        if path.is_file() and is_inside(path.resolve(), root):
            setattr(scene, attribute, path.relative_to(root).as_posix())
    scene.depth_images = _files(folder / DEPTH_VIS_DIR, root, IMAGE_TYPES)
    scene.input_images = _files(folder, root, IMAGE_TYPES)
    for sub in INPUT_DIRS:
        scene.input_images += _files(folder / sub, root, IMAGE_TYPES)
    scene.videos = _files(folder, root, frozenset({".mp4"}))
    return scene


def _folders(root: Path) -> Iterator[Path]:
    """``root`` and the real (non-symlink, non-hidden) folders below it, at most ``MAX_DEPTH`` levels, sorted."""
    yield root
    level = [root]
    for _ in range(MAX_DEPTH):
        below = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name == DEPTH_VIS_DIR or entry.name in INPUT_DIRS:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    below.append(Path(entry.path))
        yield from below
        level = below


def find_scenes(root: Path) -> List[Scene]:
    """Every scene under ``root`` (the root itself included), in path order.

    Symlinked folders are not followed, so a link cannot pull a folder from elsewhere into the gallery.
    """
    root = Path(root).resolve()
    scenes = []
    for folder in _folders(root):
        scene = read_scene(root, folder)
        if scene.is_scene:
            scenes.append(scene)
            if len(scenes) >= MAX_SCENES:
                break
    return sorted(scenes, key=lambda s: s.name)
