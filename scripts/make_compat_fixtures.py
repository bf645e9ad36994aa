"""Record upstream's documented surface in tests/fixtures/upstream_surface.json, for tests/compat/test_surface.py.

What it records, read from upstream itself (nothing is copied from upstream but names and defaults):
- ``da3_cli``: every command of DA3's ``da3`` command line with every parameter (name, argument or option, its
  spellings, default, whether it is a flag), from the typer app of ``depth_anything_3.cli``;
- ``da3_inference``: the parameters of ``DepthAnything3.inference`` in order, with their defaults;
- ``da3_prediction``: the fields of DA3's ``Prediction`` dataclass;
- ``da3_export_formats``: the ``export_format`` names DA3's exporter dispatches on;
- ``da3_export_files``: the files DA3's exporter writes for ``mini_npz-npz-glb-depth_vis-colmap`` on the
  prediction of :func:`export_case` (two 28x42 views), with every npz array's dtype and shape;
- ``v2_model``: the parameters of Depth Anything V2's ``DepthAnythingV2.__init__`` and ``infer_image``;
- ``scripts``: the command-line options of Depth Anything V2's ``run.py``, ``run_video.py`` and
  ``metric_depth/run.py``, Video Depth Anything's ``run.py`` and ``run_streaming.py`` (their argparse
  ``add_argument`` calls) and DepthCrafter's ``run.py`` (the parameters of the ``main`` python-fire runs), parsed
  without running them.

Run it in the upstream side environment (``../shared/upstream/make-upstream-env.sh .upstream-venv``: torch 2.13.0
CPU, depth-anything-3 0.1.1, jkp-depth-anything-v2 0.1.1), with the three script repositories as bare clones
(the ``fetch`` tool of the project's sessions, or ``git clone --bare``):

    .upstream-venv/bin/python scripts/make_compat_fixtures.py \\
        --v2-repo /path/Depth-Anything-V2.git --vda-repo /path/Video-Depth-Anything.git \\
        --depthcrafter-repo /path/DepthCrafter.git

Recorded on 2026-12-05 from depth-anything-3 0.1.1, jkp-depth-anything-v2 0.1.1, Depth-Anything-V2 a561b84,
Video-Depth-Anything 4f5ae23 and DepthCrafter e518612.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "upstream_surface.json"

SCRIPTS = {
    "v2": ["run.py", "run_video.py", "metric_depth/run.py"],
    "vda": ["run.py", "run_streaming.py"],
    "depthcrafter": ["run.py"],
}


def _plain(value):
    """A default as JSON: numbers, strings, booleans, None and lists as they are, anything else as its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def da3_cli() -> dict:
    import typer.main
    from depth_anything_3 import cli

    group = typer.main.get_command(cli.app)
    commands = {}
    for name, command in sorted(group.commands.items()):
        commands[name] = [
            {
                "name": param.name,
                "kind": param.param_type_name,
                "opts": list(param.opts),
                "secondary_opts": list(param.secondary_opts),
                "default": _plain(param.default),
                "is_flag": bool(getattr(param, "is_flag", False)),
            }
            for param in command.params
        ]
    return commands


def da3_api() -> dict:
    from depth_anything_3.api import DepthAnything3
    from depth_anything_3.specs import Prediction
    from depth_anything_3.utils import export as export_module

    inference = [
        {"name": p.name, "default": None if p.default is inspect.Parameter.empty else _plain(p.default)}
        for p in list(inspect.signature(DepthAnything3.inference).parameters.values())[1:]
    ]
    source = inspect.getsource(export_module.export)
    formats = re.findall(r'export_format == "([a-z_]+)"', source)
    return {
        "da3_inference": inference,
        "da3_prediction": [f.name for f in dataclasses.fields(Prediction)],
        "da3_export_formats": formats,
    }


def export_case() -> dict:
    """The arrays of a small any-view prediction (two 28x42 views), the same for upstream's exporters and the test."""
    rng = np.random.default_rng(0)
    n, h, w = 2, 28, 42
    extrinsics = np.tile(np.eye(4, dtype=np.float32)[:3], (n, 1, 1))
    extrinsics[1, 0, 3] = -0.2  # the second camera 0.2 to the right
    intrinsics = np.tile(np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]], np.float32), (n, 1, 1))
    return {
        "depth": rng.uniform(1.0, 3.0, (n, h, w)).astype(np.float32),
        "conf": rng.uniform(1.0, 2.0, (n, h, w)).astype(np.float32),
        "extrinsics": extrinsics,
        "intrinsics": intrinsics,
        "processed_images": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
    }


EXPORT_FORMAT = "mini_npz-npz-glb-depth_vis-colmap"


def da3_export_files() -> dict:
    import threading

    from depth_anything_3.specs import Prediction
    from depth_anything_3.utils.export import export
    from PIL import Image

    arrays = export_case()
    prediction = Prediction(is_metric=0, sky=None, gaussians=None, aux={}, scale_factor=None, **arrays)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        paths = []
        for i, image in enumerate(arrays["processed_images"]):
            paths.append(str(root / "inputs" / f"{i}.png"))
            Path(paths[-1]).parent.mkdir(exist_ok=True)
            Image.fromarray(image).save(paths[-1])
        out = root / "out"
        export(prediction, EXPORT_FORMAT, str(out), colmap={"image_paths": paths})
        for thread in threading.enumerate():  # upstream writes the npz files in background threads
            if thread is not threading.current_thread():
                thread.join()
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        arrays_of = {}
        for name in files:
            if name.endswith(".npz"):
                with np.load(out / name) as npz:
                    arrays_of[name] = {k: [str(npz[k].dtype), list(npz[k].shape)] for k in npz.files}
    return {"format": EXPORT_FORMAT, "files": files, "npz": arrays_of}


def v2_model() -> dict:
    from depth_anything_v2.dpt import DepthAnythingV2

    def params(function):
        return {
            p.name: None if p.default is inspect.Parameter.empty else _plain(p.default)
            for p in list(inspect.signature(function).parameters.values())[1:]
        }

    return {"init": params(DepthAnythingV2.__init__), "infer_image": params(DepthAnythingV2.infer_image)}


def _fire_options(tree: ast.Module) -> list:
    """The options python-fire makes of the parameters of ``main`` (DepthCrafter's run.py): ``--video_path`` and
    ``--video-path`` alike."""
    main = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"), None)
    if main is None:
        return []
    args = main.args.args
    defaults = [None] * (len(args) - len(main.args.defaults)) + list(main.args.defaults)
    options = []
    for arg, default in zip(args, defaults):
        value = ast.literal_eval(default) if default is not None else None
        options.append(
            {
                "opts": sorted({f"--{arg.arg}", f"--{arg.arg.replace('_', '-')}"}),
                "default": _plain(value),
                "is_flag": isinstance(value, bool),
            }
        )
    return options


def script_options(source: str) -> list:
    """The option spellings and defaults of every ``parser.add_argument("--x", ...)`` call in ``source``, or of
    the parameters of a ``main`` run by python-fire."""
    tree = ast.parse(source)
    if "Fire(" in source:
        return _fire_options(tree)
    options = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
        if not names:
            continue
        default = next((k.value for k in node.keywords if k.arg == "default"), None)
        action = next((k.value for k in node.keywords if k.arg == "action"), None)
        flag = isinstance(action, ast.Constant) and action.value in ("store_true", "store_false")
        try:
            value = (
                ast.literal_eval(default) if default is not None else (action.value == "store_false" if flag else None)
            )
        except ValueError:  # a default computed at run time
            value = ast.unparse(default)
        options.append({"opts": names, "default": _plain(value), "is_flag": flag})
    return options


def scripts(repos: dict) -> dict:
    found = {}
    for project, files in SCRIPTS.items():
        for name in files:
            source = subprocess.run(
                ["git", f"--git-dir={repos[project]}", "show", f"HEAD:{name}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            found[f"{project}/{name}"] = script_options(source)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v2-repo", required=True, help="bare clone of DepthAnything/Depth-Anything-V2")
    parser.add_argument("--vda-repo", required=True, help="bare clone of DepthAnything/Video-Depth-Anything")
    parser.add_argument("--depthcrafter-repo", required=True, help="bare clone of Tencent/DepthCrafter")
    args = parser.parse_args()
    surface = {"da3_cli": da3_cli(), **da3_api(), "da3_export_files": da3_export_files(), "v2_model": v2_model()}
    surface["scripts"] = scripts({"v2": args.v2_repo, "vda": args.vda_repo, "depthcrafter": args.depthcrafter_repo})
    OUT.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
