"""Upstream's documented surface, item by item, against anydepth (tests/fixtures/upstream_surface.json, recorded from
upstream by scripts/make_compat_fixtures.py): every `da3` command and option, every argument of
``DepthAnything3.inference``, every ``Prediction`` field and export format, Depth Anything V2's model API, and every
option of the V2, Video Depth Anything and DepthCrafter scripts.

docs/compat.md holds the table. Its two generated parts (the `da3` options, the script options) must equal what this
module computes from the command line itself; ``ANYDEPTH_WRITE_COMPAT_DOC=1 pytest tests/compat/test_surface.py``
rewrites them after a deliberate change. Every difference needs its reason here, and every option anydepth does not
take needs a hint in ``anydepth.cli.migration`` that its error message shows.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
import typer.main

from anydepth.cli.main import app
from anydepth.cli.migration import upstream_option_hint
from anydepth.compat import DepthAnything3, DepthAnythingV2
from anydepth.export.formats import parse_export_format
from anydepth.prediction import Prediction
from tests.helpers.paths import ROOT

SURFACE = json.loads((ROOT / "tests" / "fixtures" / "upstream_surface.json").read_text())
DOC = ROOT / "docs" / "compat.md"

# `da3` options whose default differs on purpose: (command or "*", option) -> why
CLI_DEFAULTS: Dict[Tuple[str, str], str] = {
    ("*", "--model-dir"): "no default checkpoint: --model picks the preset (auto, colmap: da3-small; image, images, "
    "video: dav2-small as in Depth Anything V2's scripts); upstream's DA3NESTED-GIANT-LARGE is 6.8 GB, CC-BY-NC-4.0",
    ("*", "--device"): "auto: CUDA where present, else Apple MPS, else the CPU (upstream's cuda fails without a GPU)",
    ("*", "--backend-url"): "127.0.0.1, where `anydepth backend` binds (localhost can resolve to ::1 first)",
    ("images", "--image-extensions"): "every image type anydepth reads (JPEG, PNG, TIFF, WebP, BMP; HEIC/AVIF with "
    "the heic extra); --image-extensions png,jpg,jpeg is upstream's set",
    ("gradio", "--workspace-dir"): "a temporary folder (runs stay only while the app runs); pass "
    "--workspace-dir workspace/gradio for upstream's",
}
# options anydepth leaves at None where upstream writes out the value it means: (command or "*", option) -> value
CLI_EFFECTIVE: Dict[Tuple[str, str], Any] = {
    ("*", "--export-format"): "glb",
    ("*", "--export-feat"): "",
    ("video", "--fps"): 1.0,  # for DA3 models (V2 and video models: every frame)
    ("backend", "--gallery-dir"): "workspace/gallery",  # served when it exists, as upstream
}
# upstream script -> the anydepth command that does its job
SCRIPT_COMMANDS = {
    "v2/run.py": "images",
    "v2/metric_depth/run.py": "images",
    "v2/run_video.py": "video",
    "vda/run.py": "video",
    "vda/run_streaming.py": "video",
    "depthcrafter/run.py": "video",
}
# script options anydepth spells the same but whose default differs on purpose: (script, option) -> why
SCRIPT_DEFAULTS: Dict[Tuple[str, str], str] = {
    ("v2/run_video.py", "--outdir"): "./vis_depth for every command",
    ("depthcrafter/run.py", "--cpu-offload"): "none: offloading needs CUDA and accelerate; pass --cpu-offload model "
    "on a GPU short of memory",
    ("*", "--input-size"): "none: the model's own size, 518 for the official models as upstream (98 for the "
    "built-in anydepth-nano, the size it was trained at)",
}


def _group():
    return typer.main.get_command(app)


def _lookup(table: Dict[Tuple[str, str], Any], command: str, option: str) -> Any:
    return table.get((command, option), table.get(("*", option)))


def _same_default(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, Path) or (isinstance(theirs, str) and isinstance(ours, str) and "/" in theirs):
        return theirs is not None and Path(str(theirs)) == Path(str(ours))
    if isinstance(ours, (int, float)) and not isinstance(ours, bool) and isinstance(theirs, (int, float)):
        return float(ours) == float(theirs)
    return ours == theirs


def _show(value: Any) -> str:
    if value is None or value == "":
        return "none"
    return f"`{value}`"


def _our_options(command) -> Dict[str, Any]:
    return {spelling: param for param in command.params for spelling in (*param.opts, *param.secondary_opts)}


def cli_rows() -> List[Tuple[str, ...]]:
    """(command, upstream option, upstream default, anydepth, status) for every parameter of every `da3` command."""
    group = _group()
    rows = []
    for name, params in sorted(SURFACE["da3_cli"].items()):
        command = group.commands[name]
        ours = _our_options(command)
        for param in params:
            if param["kind"] == "argument":
                argument = next(p for p in command.params if p.param_type_name == "argument")
                rows.append((name, f"{param['name'].upper()} (argument)", "-", argument.name.upper(), "same"))
                continue
            spellings = param["opts"] + param["secondary_opts"]
            label = " / ".join(f"`{s}`" for s in spellings)
            found = [ours[s] for s in spellings if s in ours]
            if len(found) < len(spellings):
                hint = upstream_option_hint(param["opts"][0])
                rows.append((name, label, _show(param["default"]), "-", f"not supported: {hint}"))
                continue
            mine = found[0]
            effective = _lookup(CLI_EFFECTIVE, name, param["opts"][0])
            default = mine.default if mine.default is not None or effective is None else effective
            ours_text = " / ".join(f"`{s}`" for s in (*mine.opts, *mine.secondary_opts)) + f", {_show(mine.default)}"
            if _same_default(default, param["default"]):
                status = "same" if effective is None or mine.default is not None else f"same (none means {effective!r})"
            else:
                status = f"different: {_lookup(CLI_DEFAULTS, name, param['opts'][0])}"
            rows.append((name, label, _show(param["default"]), ours_text, status))
    return rows


def script_rows() -> List[Tuple[str, ...]]:
    """(script, upstream option, upstream default, anydepth, status) for every option of every upstream script."""
    group = _group()
    rows = []
    for script, options in sorted(SURFACE["scripts"].items()):
        command_name = SCRIPT_COMMANDS[script]
        ours = _our_options(group.commands[command_name])
        for option in options:
            label = " / ".join(f"`{s}`" for s in option["opts"])
            found = next((ours[s] for s in option["opts"] if s in ours), None)
            if found is None:
                hint = upstream_option_hint(option["opts"][0])
                rows.append((script, label, _show(option["default"]), "-", f"spelled otherwise: {hint}"))
                continue
            ours_text = f"`anydepth {command_name} {found.opts[0]}`, {_show(found.default)}"
            if option["is_flag"] or _same_default(found.default, option["default"]):
                status = "same"
            else:
                status = f"different: {_lookup(SCRIPT_DEFAULTS, script, option['opts'][0])}"
            rows.append((script, label, _show(option["default"]), ours_text, status))
    return rows


def _table(header: Tuple[str, ...], rows: List[Tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


GENERATED = {
    "da3 cli": lambda: _table(("command", "upstream option", "upstream default", "anydepth", "status"), cli_rows()),
    "scripts": lambda: _table(("script", "upstream option", "upstream default", "anydepth", "status"), script_rows()),
}


def _section(name: str) -> re.Pattern:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} .*?-->\n)(.*?)(\n<!-- end generated: {re.escape(name)} -->)", re.S
    )


# ------------------------------------------------------------------------------------------------ command line


def test_every_da3_command_exists():
    assert set(SURFACE["da3_cli"]) <= set(_group().commands)


@pytest.mark.parametrize("rows", [cli_rows, script_rows], ids=["da3", "scripts"])
def test_every_difference_has_its_reason(rows):
    for row in rows():
        status = row[-1]
        assert status == "same" or status.startswith("same (") or not status.endswith(": None"), row


def test_upstream_options_anydepth_lacks_say_what_to_write_instead():
    """Each upstream option anydepth does not take fails with one error that names what to write instead."""
    from typer.testing import CliRunner

    lacking = [(row[0], row[1]) for row in cli_rows() if row[-1].startswith("not supported")]
    lacking += [(SCRIPT_COMMANDS[row[0]], row[1]) for row in script_rows() if row[-1].startswith("spelled")]
    assert lacking
    for command, label in lacking:
        option = label.split(" / ")[0].strip("`")
        result = CliRunner().invoke(app, [command, "x", option, "1"] if command != "gradio" else [command, option])
        assert result.exit_code == 2, (command, option, result.output)
        assert f"No such option: {option}, an upstream script's option: " in result.output, result.output
        assert upstream_option_hint(option) in " ".join(result.output.split()), result.output


def test_the_compat_doc_holds_the_generated_tables():
    text = DOC.read_text()
    for name, build in GENERATED.items():
        pattern = _section(name)
        match = pattern.search(text)
        assert match, f"docs/compat.md has no generated section {name!r}"
        if os.environ.get("ANYDEPTH_WRITE_COMPAT_DOC") == "1":
            table = build()
            text = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(3), text)
            DOC.write_text(text)
        assert match.group(2) == build() or os.environ.get("ANYDEPTH_WRITE_COMPAT_DOC") == "1", (
            f"docs/compat.md's {name!r} table is out of date: rerun with ANYDEPTH_WRITE_COMPAT_DOC=1"
        )


# ------------------------------------------------------------------------------------------------ Python API


def test_inference_takes_upstreams_arguments_in_order_with_upstreams_defaults():
    ours = list(inspect.signature(DepthAnything3.inference).parameters.values())[1:]
    theirs = SURFACE["da3_inference"]
    assert [p.name for p in ours] == [p["name"] for p in theirs]
    for mine, upstream in zip(ours, theirs):
        default = None if mine.default is inspect.Parameter.empty else mine.default
        if upstream["name"] == "export_kwargs":  # upstream's mutable {} default, shared between calls
            assert default is None and upstream["default"] == "{}"
        else:
            assert _same_default(default, upstream["default"]), upstream["name"]


def test_prediction_has_every_upstream_field():
    prediction = Prediction(depth=np.ones((1, 2, 2), np.float32), depth_kind="depth")
    for field in SURFACE["da3_prediction"]:
        assert hasattr(prediction, field), field


def test_every_upstream_export_format_is_taken():
    names = SURFACE["da3_export_formats"]
    assert set(names) == {"glb", "mini_npz", "npz", "feat_vis", "depth_vis", "gs_ply", "gs_video", "colmap"}
    for name in names:
        options = dict(depth_kind="depth", has_cameras=True, num_views=2, has_features=True, has_gaussians=True)
        assert parse_export_format(name, **options) == (name,)


def test_depth_anything_v2_takes_upstreams_arguments_with_upstreams_defaults():
    init = inspect.signature(DepthAnythingV2.__init__).parameters
    for name, default in SURFACE["v2_model"]["init"].items():
        assert name in init and _same_default(_listed(init[name].default), default), name
    infer = inspect.signature(DepthAnythingV2.infer_image).parameters
    assert set(infer) - {"self"} == set(SURFACE["v2_model"]["infer_image"])
    assert infer["input_size"].default == SURFACE["v2_model"]["infer_image"]["input_size"]


def _listed(value: Any) -> Optional[Any]:
    return list(value) if isinstance(value, tuple) else value


def test_the_exporters_write_upstreams_files_and_npz_arrays(tmp_path):
    """The files upstream's exporter wrote for ``mini_npz-npz-glb-depth_vis-colmap`` on a small prediction (recorded
    by running it), and every npz array's dtype and shape: the same from anydepth's exporters on that prediction."""
    import importlib.util

    from PIL import Image

    from anydepth.export.formats import export

    spec = importlib.util.spec_from_file_location("make_compat_fixtures", ROOT / "scripts" / "make_compat_fixtures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recorded = SURFACE["da3_export_files"]
    arrays = script.export_case()
    paths = []
    for i, image in enumerate(arrays["processed_images"]):
        paths.append(tmp_path / "inputs" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(paths[-1])
    out = tmp_path / "out"
    export(Prediction(depth_kind="depth", **arrays), out, recorded["format"], colmap={"image_paths": paths})
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == recorded["files"]
    for name, expected in recorded["npz"].items():
        with np.load(out / name) as npz:
            assert {k: [str(npz[k].dtype), list(npz[k].shape)] for k in npz.files} == expected, name
