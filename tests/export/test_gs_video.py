"""The gs_video export end to end: frames read back with PyAV against renders, layouts and sizes, custom render
cameras through the export, the DA3 facade and the scene job, and bad input refused before any work."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from anydepth.compat import DepthAnything3
from anydepth.errors import InputError, OptionError, ShapeError
from anydepth.export.formats import check_export_options, export, parse_export_format
from anydepth.geometry.camera_paths import camera_path
from anydepth.geometry.cameras import affine_inverse, as_homogeneous
from anydepth.geometry.gaussians import render_gaussians
from anydepth.jobs import SceneOptions, run_scene
from anydepth.presets import get_preset
from tests.helpers.inputs import scene_views
from tests.helpers.splats import splat_prediction


def _frames(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_frames_are_the_renders_of_the_predicted_cameras(tmp_path):
    pred = splat_prediction(views=2, h=24, w=32)
    written = export(pred, tmp_path, "gs_video", trj_mode="original", video_quality="high")
    path = written["gs_video"][0]
    assert path == tmp_path / "gs_video" / "0000_original.mp4"
    frames = _frames(path)
    assert frames.shape == (2, 24, 64, 3)  # two cameras; RGB and depth side by side
    g = pred.gaussians
    ext = as_homogeneous(torch.from_numpy(pred.extrinsics))
    ours = render_gaussians(g.means[0], g.rotations[0], g.scales[0], g.opacities[0], g.harmonics[0], ext,
                            torch.from_numpy(pred.intrinsics), 32, 24)  # fmt: skip
    expected = (ours.colors.clamp(0, 1) * 255).round().numpy()
    error = np.abs(frames[:, :, :32].astype(float) - expected)
    assert error.mean() < 6 and np.median(error) <= 4  # H.264 at CRF 18, 4:2:0 chroma, 24 px high
    assert np.abs(frames[:, :, :32].astype(float) - expected[::-1]).mean() > 2 * error.mean()  # views apart
    depth_half = frames[:, :, 32:].astype(float)
    assert depth_half.std() > 10  # a coloured depth map, not a flat picture
    # nearer is redder: the depth map's nearest pixel is redder than its farthest
    near = np.unravel_index(np.argmin(ours.depth[0].numpy()), (24, 32))
    far = np.unravel_index(np.argmax(ours.depth[0].numpy()), (24, 32))
    assert depth_half[0][near][0] - depth_half[0][near][2] > depth_half[0][far][0] - depth_half[0][far][2]


@pytest.mark.parametrize(
    "options, shape",
    [
        ({"show": "rgb"}, (24, 32)),
        ({"show": "depth"}, (24, 32)),
        ({"vis_depth": "vcat"}, (48, 32)),
        ({"vis_depth": None}, (24, 32)),  # upstream's way to ask for RGB only
        ({"out_image_hw": (12, 20)}, (12, 40)),
    ],
)
def test_what_the_frames_show_and_their_size(tmp_path, options, shape):
    pred = splat_prediction()
    path = export(pred, tmp_path, "gs_video", trj_mode="original", **options)["gs_video"][0]
    assert _frames(path).shape == (2, *shape, 3)


def test_default_path_and_custom_cameras(tmp_path):
    pred = splat_prediction()
    path = export(pred, tmp_path, "gs_video", video_quality="low")["gs_video"][0]
    assert path.name == "0000_extend.mp4"
    expected, _ = camera_path("extend", affine_inverse(as_homogeneous(torch.from_numpy(pred.extrinsics))),
                              torch.from_numpy(pred.intrinsics))  # fmt: skip
    assert len(_frames(path)) == len(expected)
    # three custom cameras, 3x4 and one shared intrinsics, rendered as they are
    ext = np.tile(np.eye(4, dtype=np.float32)[:3], (3, 1, 1))
    ext[:, 0, 3] = [0.0, -0.1, -0.2]
    K = np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], np.float32)
    path = export(pred, tmp_path / "custom", "gs_video", trj_mode="original", extrinsics=ext, intrinsics=K[None],
                  out_image_hw=(12, 16), show="rgb", output_name="mine")["gs_video"][0]  # fmt: skip
    frames = _frames(path)
    assert path.name == "mine.mp4" and frames.shape == (3, 12, 16, 3)
    g = pred.gaussians
    ours = render_gaussians(g.means[0], g.rotations[0], g.scales[0], g.opacities[0], g.harmonics[0],
                            torch.from_numpy(ext), torch.from_numpy(K).expand(3, 3, 3), 16, 12)  # fmt: skip
    assert np.abs(frames.astype(float) - (ours.colors.clamp(0, 1) * 255).numpy()).mean() < 8


@pytest.mark.parametrize(
    "options, error, needle",
    [
        ({"trj_mode": "orbit"}, InputError, "unknown gs_video trajectory 'orbit'"),
        ({"extrinsics": np.zeros((2, 3, 3))}, ShapeError, "render_exts must be (N, 3, 4) or (N, 4, 4)"),
        ({"intrinsics": np.zeros((2, 4, 4))}, ShapeError, "render_ixts must be (N, 3, 3)"),
        ({"extrinsics": np.tile(np.eye(4), (3, 1, 1)), "intrinsics": np.tile(np.eye(3), (2, 1, 1))}, ShapeError,
         "render_ixts has 2 cameras, render_exts 3"),
        ({"out_image_hw": (0, 10)}, InputError, "render_hw"),
        ({"video_quality": "ultra"}, InputError, "video_quality"),
        ({"show": "alpha"}, InputError, "show"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_before_any_file(tmp_path, options, error, needle):
    with pytest.raises(error, match=None) as info:
        check_export_options(("gs_video",), options)
    assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(error):
        export(splat_prediction(), tmp_path, "gs_video", **options)
    assert not (tmp_path / "gs_video").exists()


def test_gs_formats_need_gaussians_and_gs_ply_writes_no_video(tmp_path):
    for name in ("gs_video", "gs_ply", "mini_npz-gs_video"):
        with pytest.raises(InputError, match="needs 3D Gaussians"):
            parse_export_format(name, has_gaussians=False)
    pred = splat_prediction()
    no_gaussians = splat_prediction()
    no_gaussians.aux.clear()
    with pytest.raises(InputError, match=r"gs_video. needs 3D Gaussians"):
        export(no_gaussians, tmp_path, "gs_video")
    export(pred, tmp_path, "gs_ply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gs_ply"]  # upstream also renders a gs_video here


def test_facade_renders_the_given_cameras_and_refuses_bad_ones_before_inference(gs_model, tmp_path, monkeypatch):
    facade = DepthAnything3("da3-small", precision="fp32")
    facade.model, facade.preset = gs_model.net, get_preset("da3-giant")
    ext = np.tile(np.eye(4, dtype=np.float32), (2, 1, 1))
    ext[1, 0, 3] = -0.05
    K = np.array([[[40.0, 0, 21], [0, 40.0, 14], [0, 0, 1]]] * 2, np.float32)
    pred = facade.inference(
        scene_views(), infer_gs=True, process_res=56, export_dir=tmp_path, export_format="mini_npz-gs_video",
        render_exts=ext, render_ixts=K, render_hw=(28, 42), export_kwargs={"gs_video": {"trj_mode": "original"}},
    )  # fmt: skip
    assert pred.gaussians is not None
    assert _frames(tmp_path / "gs_video" / "0000_original.mp4").shape == (2, 28, 84, 3)

    def never(*args, **kwargs):
        raise AssertionError("inference ran before the options were checked")

    monkeypatch.setattr(facade, "_pipeline", never)
    for kwargs, needle in (
        ({"render_exts": np.zeros((2, 4))}, "render_exts"),
        ({"export_kwargs": {"gs_video": {"trj_mode": "spiral"}}}, "spiral"),
        ({"infer_gs": False}, "infer_gs=True"),
    ):
        options = {"infer_gs": True, "export_dir": tmp_path / "x", "export_format": "gs_video", **kwargs}
        with pytest.raises(InputError, match=needle):
            facade.inference(scene_views(), **options)
    with pytest.raises(InputError, match="add gs_video"):
        facade.inference(scene_views(), render_hw=(10, 10))
    small = DepthAnything3("da3-small", precision="fp32")
    monkeypatch.setattr(small, "_pipeline", never)
    with pytest.raises(InputError, match="needs 3D Gaussians"):
        small.inference(scene_views(), infer_gs=True, export_dir=tmp_path / "y", export_format="gs_video")


def test_scene_job_options(gs_model, tmp_path):
    scene = SceneOptions(tmp_path, export_format="gs_video", process_res=56, gs_trajectory="original",
                         gs_video_show="depth", render_hw=(20, 30))  # fmt: skip
    run_scene(gs_model, scene_views(), scene)
    assert _frames(tmp_path / "gs_video" / "0000_original.mp4").shape == (3, 20, 30, 3)
    for field, value in (("gs_trajectory", "orbit"), ("gs_video_show", "alpha"), ("gs_video_quality", "best"),
                         ("render_exts", np.zeros((3, 3))), ("render_ixts", np.zeros((1, 2, 3))),
                         ("render_hw", (10,))):  # fmt: skip
        with pytest.raises(OptionError) as info:
            SceneOptions.from_options({field: value}, export_dir=tmp_path)
        assert info.value.option == field
    with pytest.raises(OptionError, match="gs_video needs a Gaussian head"):
        SceneOptions(tmp_path, export_format="gs_video").check_against(get_preset("da3-small"))
    SceneOptions(tmp_path, export_format="gs_video").check_against(get_preset("da3nested-giant-large"))
    assert "render_exts" not in SceneOptions(tmp_path).request_fields()


def test_command_line_refuses_in_one_line_before_weights(tmp_path):
    from typer.testing import CliRunner

    from anydepth.cli.main import app

    runner = CliRunner()
    for model, extra, needle in (
        ("da3-giant", ["--gs-trajectory", "orbit"], "--gs-trajectory 'orbit': choose one of original"),
        ("da3-giant", ["--gs-video-quality", "best"], "--gs-video-quality 'best'"),
        ("da3-small", [], "gs_video needs a Gaussian head, which da3-small has not"),
    ):
        args = ["auto", str(tmp_path), "--model", model, "--export-format", "gs_video", "--export-dir",
                str(tmp_path / "out"), *extra]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and needle in result.output
        assert len(result.output.strip().splitlines()) == 1
