"""The gallery's HTML: an index of scenes and one page per scene. Every file-system name is escaped here.

Links are absolute paths under ``base``: "" when the gallery is its own server, the mount point ("/gallery") when
another application serves it (``anydepth backend --gallery-dir``).
"""

from __future__ import annotations

from html import escape
from pathlib import PurePosixPath
from typing import List
from urllib.parse import quote

from anydepth.gallery.scenes import Scene

VIEWER_JS = "static/viewer.js"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f5; color: #18181b; }
header { background: #18181b; color: #fafafa; padding: 12px 20px; }
header a { color: #fafafa; }
main { padding: 16px 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px; }
.card { background: #fff; border-radius: 8px; overflow: hidden; box-shadow: 0 1px 3px #0003;
        text-decoration: none; color: inherit; }
.card img, .card .none { width: 100%; height: 150px; object-fit: cover; display: block; background: #d4d4d8; }
.card span { display: block; padding: 8px 10px; overflow-wrap: anywhere; }
.card small { display: block; padding: 0 10px 8px; color: #52525b; }
#viewer { width: 100%; height: 60vh; min-height: 320px; background: #202124; border-radius: 8px;
          position: relative; overflow: hidden; }
.viewer-error { color: #fca5a5; padding: 12px; position: absolute; top: 0; }
.depth { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 10px; }
.depth img { width: 100%; border-radius: 6px; background: #d4d4d8; }
.downloads a { margin-right: 14px; }
"""


def _url(prefix: str, relative: str) -> str:
    """A same-origin URL for a gallery path, percent-encoded (then HTML-escaped where it is written)."""
    return prefix + quote(relative, safe="/")


def file_url(relative: str, base: str = "") -> str:
    return _url(f"{base}/files/", relative)


def scene_url(scene: Scene, base: str = "") -> str:
    return _url(f"{base}/scene/", scene.name)


def _page(title: str, body: str, script: bool = False, base: str = "") -> str:
    tag = f'<script src="{escape(base)}/{VIEWER_JS}" defer></script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request (a 404 in the console)
        f"<title>{escape(title)}</title><style>{_STYLE}</style>{tag}</head>"
        f"<body>{body}</body></html>\n"
    )


def _label(scene: Scene) -> str:
    return scene.name or "(gallery folder)"


def index_page(scenes: List[Scene], gallery_name: str, base: str = "") -> str:
    """The list of scenes with their thumbnails."""
    cards = []
    for scene in scenes:
        thumb = scene.thumbnail
        image = (
            f'<img src="{escape(file_url(thumb, base))}" alt="" loading="lazy">'
            if thumb
            else '<div class="none"></div>'
        )
        parts = [f"{len(scene.depth_images)} depth map(s)"] + [
            kind for kind, present in (("glb", scene.glb), ("ply", scene.ply)) if present
        ]
        cards.append(
            f'<a class="card" href="{escape(scene_url(scene, base))}">{image}'
            f"<span>{escape(_label(scene))}</span><small>{escape(', '.join(parts))}</small></a>"
        )
    listing = f'<div class="grid">{"".join(cards)}</div>' if cards else "<p>No exported scenes in this folder yet.</p>"
    header = f"<header><h1>anydepth gallery</h1><div>{escape(gallery_name)}: {len(scenes)} scene(s)</div></header>"
    return _page("anydepth gallery", f"{header}<main>{listing}</main>", base=base)


def scene_page(scene: Scene, base: str = "") -> str:
    """One scene: the 3D viewer (GLB with camera frusta, else PLY points) and the depth maps."""
    sections = []
    model = scene.model_3d
    if model:
        kind = PurePosixPath(model).suffix.lstrip(".").lower()
        sections.append(
            f'<h2>3D scene</h2><div id="viewer" data-src="{escape(file_url(model, base))}" '
            f'data-kind="{escape(kind)}"></div>'
        )
    if scene.depth_images:
        images = "".join(
            f'<a href="{escape(file_url(p, base))}"><img src="{escape(file_url(p, base))}" '
            f'alt="{escape(PurePosixPath(p).name)}">'
            "</a>"
            for p in scene.depth_images
        )
        sections.append(f'<h2>Depth maps</h2><div class="depth">{images}</div>')
    downloads = [p for p in (scene.glb, scene.ply, *scene.videos) if p]
    if downloads:
        links = "".join(
            f'<a href="{escape(file_url(p, base))}" download>{escape(PurePosixPath(p).name)}</a>' for p in downloads
        )
        sections.append(f'<h2>Files</h2><p class="downloads">{links}</p>')
    header = f'<header><a href="{escape(base)}/">&larr; all scenes</a><h1>{escape(_label(scene))}</h1></header>'
    title = f"{_label(scene)} - anydepth gallery"
    return _page(title, f"{header}<main>{''.join(sections)}</main>", script=bool(model), base=base)
