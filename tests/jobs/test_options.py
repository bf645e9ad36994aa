"""The typed options of the application layer, held together across the command line, the service and the app;
option errors worded by each interface; the one loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anydepth.errors import OptionError, UnknownModelError
from anydepth.jobs import loader as jobs_loader
from anydepth.jobs.options import (
    FrameSampling,
    ImageOutputs,
    ModelSpec,
    RuntimeOptions,
    SceneOptions,
    VideoOutputs,
    parse_raw,
)


def _click_defaults(command_name: str) -> dict:
    import typer.main

    from anydepth.cli.main import app

    command = typer.main.get_command(app).commands[command_name]
    return {p.name: p.default for p in command.params}


# ------------------------------------------------------------------------------------------- options, one place


def test_scene_defaults_are_the_same_in_the_cli_the_service_and_the_app():
    defaults = {k: v for k, v in SceneOptions.defaults().items() if k not in SceneOptions.PYTHON_ONLY}
    assert defaults["process_res"] == 504 and defaults["num_max_points"] == 1_000_000  # upstream's
    for command in ("auto", "image", "images", "video"):
        cli = _click_defaults(command)
        for name, value in defaults.items():
            if name == "export_format":
                assert cli[name] is None  # None: "not given", which means the SceneOptions default
            else:
                assert cli[name] == value, (command, name)
    pytest.importorskip("fastapi")
    from anydepth.service.app import JobOptions

    service = JobOptions.model_fields
    for name, value in defaults.items():
        if name in SceneOptions.SERVER_OWNED:
            assert name not in service
        elif name == "export_format":
            assert service[name].default == "mini_npz-glb"  # the backend's own default: both formats
        else:
            assert service[name].default == value, name
    from anydepth.app.runner import RunOptions

    run = RunOptions(model="da3-small")
    for name in ("process_res", "conf_thresh_percentile", "show_cameras", "num_max_points"):
        assert getattr(run, name) == defaults[name]


def test_service_request_schema_is_the_scene_options():
    pytest.importorskip("fastapi")
    from anydepth.service.app import JobOptions
    from anydepth.service.worker import scene_option_names

    request_only = {"model", "fps", "max_frames"}
    assert set(JobOptions.model_fields) - request_only == set(scene_option_names())
    everything = set(scene_option_names()) | set(SceneOptions.SERVER_OWNED) | set(SceneOptions.PYTHON_ONLY)
    assert everything == set(SceneOptions.field_names())
    request = JobOptions(process_res=280, export_feat="3,5", use_ray_pose=True, ref_view_strategy="first")
    scene = request.scene(Path("out"))
    assert (scene.process_res, scene.feat_layers(), scene.use_ray_pose, scene.ref_view_strategy) == (
        280,
        [3, 5],
        True,
        "first",
    )
    assert scene.export_dir == Path("out") and scene.export_format == "mini_npz-glb"
    # the request's enumerations are the pipeline's own
    from anydepth.models.da3.reference_view import REF_VIEW_STRATEGIES
    from anydepth.pipelines.da3_preprocess import PROCESS_RES_METHODS

    schema = JobOptions.model_json_schema()["properties"]
    assert tuple(schema["process_res_method"]["enum"]) == PROCESS_RES_METHODS
    assert tuple(schema["ref_view_strategy"]["enum"]) == REF_VIEW_STRATEGIES


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("process_res", 7, "at least 14"),
        ("process_res_method", "nearest", "choose one of upper_bound_resize"),
        ("ref_view_strategy", "last", "choose one of first"),
        ("conf_thresh_percentile", 140.0, "percentile"),
        ("num_max_points", 0, "at least one point"),
        ("feat_vis_fps", 0.0, "positive"),
        ("export_feat", "3,x", "block indices"),
    ],
)
def test_scene_options_refuse_bad_values_naming_the_field(field, value, needle):
    with pytest.raises(OptionError) as info:
        SceneOptions.from_options({field: value}, export_dir=Path("out"))
    assert info.value.option == field
    assert needle in str(info.value)
    assert info.value.worded("--" + field.replace("_", "-")).startswith("--" + field.replace("_", "-"))


def test_scene_options_are_checked_against_the_model_before_weights_load(tmp_path):
    from anydepth.errors import InputError
    from anydepth.jobs.scene import scene_job
    from anydepth.presets import get_preset

    small, giant, nested = (get_preset(name) for name in ("da3-small", "da3-giant", "da3nested-giant-large"))
    for preset in (giant, nested):  # the models with a Gaussian head
        SceneOptions(tmp_path, export_format="glb-gs_ply").check_against(preset)
    with pytest.raises(OptionError) as info:
        SceneOptions(tmp_path, export_format="glb-gs_ply").check_against(small)
    assert info.value.option == "export_format" and "da3-small" in str(info.value) and "gs_ply" in str(info.value)
    SceneOptions(tmp_path, export_format="feat_vis", export_feat="0,11").check_against(small)  # ViT-S: 12 blocks
    SceneOptions(tmp_path, export_format="feat_vis", export_feat="39").check_against(nested)  # ViT-G: 40
    with pytest.raises(OptionError) as info:
        SceneOptions(tmp_path, export_format="glb", export_feat="5,12").check_against(small)
    assert info.value.option == "export_feat" and "0 to 11" in str(info.value)

    def never(*args):
        raise AssertionError("views gathered or weights loaded before the options were checked")

    for scene in (SceneOptions(tmp_path, export_format="gs_ply"), SceneOptions(tmp_path, export_feat="12")):
        with pytest.raises(InputError):
            scene_job(ModelSpec("da3-small"), RuntimeOptions(), scene, views_of=never, loader=never)


def test_option_errors_are_worded_by_each_interface(tmp_path, vits_weights):
    from typer.testing import CliRunner

    from anydepth.cli.main import app

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(image)
    result = CliRunner().invoke(app, ["auto", str(image), "--export-feat", "1,b", "--export-dir", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "error: --export-feat '1,b': give block indices separated by commas" in result.output
    result = CliRunner().invoke(app, ["video", str(image), "--fps", "0"])
    assert result.exit_code == 1 and "error: --fps 0.0: must be positive" in result.output
    result = CliRunner().invoke(app, ["image", str(image), "--weights", str(vits_weights), "--no-vis"])
    assert result.exit_code == 1 and "error: --no-vis: leaves nothing to write" in result.output


def test_model_spec_picks_the_preset():
    assert ModelSpec.pick(None, None, "dav2-small").name == "dav2-small"
    assert ModelSpec.pick(None, "depth-anything/DA3-BASE", "dav2-small").name == "da3-base"
    assert ModelSpec.pick("vda-small", None, "dav2-small").task == "video"
    assert ModelSpec.pick("da3mono-large", None, "x").task == "scene"
    with pytest.raises(UnknownModelError):
        ModelSpec.pick("no-such-model", None, "dav2-small")


def test_raw_and_sampling_options():
    assert parse_raw("png16,NPY-npy, exr") == ("png16", "npy", "exr")
    with pytest.raises(OptionError, match="unknown raw format"):
        ImageOutputs(Path("o"), raw=("tiff",)).check()
    with pytest.raises(OptionError) as info:
        VideoOutputs(Path("o"), raw=(), vis=False).check()
    assert info.value.option == "vis"
    for bad in (FrameSampling(fps=-1.0), FrameSampling(stride=0), FrameSampling(max_frames=0)):
        with pytest.raises(OptionError):
            bad.check()


# --------------------------------------------------------------------------------------------------- the loader


def test_the_loader_honours_every_runtime_option(monkeypatch):
    seen = {}

    def fake_load_model(name, **kwargs):
        seen.update(name=name, **kwargs)
        return "model"

    import anydepth.api

    monkeypatch.setattr(anydepth.api, "load_model", fake_load_model)
    spec = ModelSpec("depthcrafter", weights="dc", revision="r1", svd_weights="svd")
    runtime = RuntimeOptions("cpu", "fp32", threads=3, compile=True, backend="pytorch", cpu_offload="model")
    assert jobs_loader.load(spec, runtime) == "model"
    assert seen == dict(
        name="depthcrafter", weights="dc", revision="r1", device="cpu", precision="fp32", num_threads=3,
        compile=True, backend="pytorch", svd_weights="svd", cpu_offload="model",
    )  # fmt: skip
    with pytest.raises(OptionError, match="unknown backend"):
        jobs_loader.load(spec, RuntimeOptions(backend="tensorrt"))


def test_cli_root_options_reach_the_loader_through_the_context(monkeypatch, tmp_path, vits_weights):
    """--threads and --compile travel in typer's context object to every job, not through module state."""
    from typer.testing import CliRunner

    import anydepth.api
    from anydepth.cli.main import app

    calls = []
    real = anydepth.api.load_model

    def spy(name, **kwargs):
        calls.append(kwargs)
        return real(name, **{**kwargs, "compile": False})  # the switch is what is under test, not torch.compile

    monkeypatch.setattr(anydepth.api, "load_model", spy)
    image = tmp_path / "a.png"
    Image.fromarray(np.full((28, 42, 3), 90, np.uint8)).save(image)
    args = ["--threads", "1", "--compile", "image", str(image), "--weights", str(vits_weights)]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o"), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert calls[0]["num_threads"] == 1 and calls[0]["compile"] is True and calls[0]["device"] == "cpu"
    result = CliRunner().invoke(app, ["image", str(image), "--weights", str(vits_weights), "-o", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert calls[-1]["num_threads"] is None and calls[-1]["compile"] is False  # nothing left over from the last run
