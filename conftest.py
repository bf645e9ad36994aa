"""Doctest collection over src/anydepth: a module whose optional extra is not installed is left out, not an error.

Only these modules import an extra at module level (they are that extra's adapter); every other module imports
its optional packages where it uses them, so it collects everywhere.
"""

from __future__ import annotations

from importlib.util import find_spec

_NEEDS = {  # module -> the package it imports at its top (the extra that installs it)
    "src/anydepth/gallery/server.py": "fastapi",  # anydepth[service]
    "src/anydepth/service/app.py": "fastapi",  # anydepth[service]
    "src/anydepth/models/depthcrafter/unet.py": "diffusers",  # anydepth[depthcrafter]
    "src/anydepth/pipelines/depthcrafter/components.py": "diffusers",  # anydepth[depthcrafter]
}

collect_ignore = [path for path, package in _NEEDS.items() if find_spec(package) is None]
