"""A gallery folder for the gallery tests: a scene exported by a tiny random DA3 model, plus hostile neighbours."""

from __future__ import annotations

import shutil
from pathlib import Path

from anydepth.api import load_model
from anydepth.jobs import SceneOptions, run_scene
from tests.helpers.inputs import scene_views

SCRIPT_NAME = "<script>alert(1)</script>"
SECRET = b"top secret, outside the gallery"


def export_scene(weights: Path, export_dir: Path, export_format: str = "glb-ply-depth_vis") -> Path:
    """``export_dir`` with the exports of a tiny random DA3 model on three synthetic views (as `anydepth auto`)."""
    model = load_model("da3-small", weights=weights, device="cpu", precision="fp32")
    run_scene(model, scene_views(), SceneOptions(export_dir=export_dir, export_format=export_format, process_res=112))
    return export_dir


def build_gallery(weights: Path, base: Path) -> Path:
    """``base/gallery`` with scenes ``room`` (glb, ply, depth_vis), ``group/points`` (ply only) and the
    ``<script>`` one (depth_vis only); beside it, in ``base/outside``, files and a scene the gallery must not show.
    """
    root = base / "gallery"
    room = export_scene(weights, root / "room")
    (room / "notes.txt").write_text("not a served type")
    (room / "exports" / "mini_npz").mkdir(parents=True)
    (room / "exports" / "mini_npz" / "results.npz").write_bytes(b"PK not served")
    points = root / "group" / "points"
    points.mkdir(parents=True)
    shutil.copy(room / "scene.ply", points / "scene.ply")
    shutil.copytree(room / "depth_vis", root / SCRIPT_NAME / "depth_vis")
    hidden = root / ".hidden_scene"
    hidden.mkdir()
    shutil.copy(room / "scene.glb", hidden / "scene.glb")

    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(SECRET)
    (outside / "secret.glb").write_bytes(SECRET)
    shutil.copy(room / "scene.glb", outside / "scene.glb")
    (room / "escape.jpg").symlink_to(outside / "secret.jpg")
    (room / "escape_dir").symlink_to(outside)
    (root / "linked_scene").symlink_to(outside)  # a symlinked folder is never listed as a scene
    (room / "loop.jpg").symlink_to("loop.jpg")  # a symlink loop: the system refuses to look it up
    return root
