"""`anydepth auto`: one scene of views through a DA3 model, exported in upstream's layout."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest
import trimesh
from PIL import Image

from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.inputs import scene_views, write_video

pytestmark = pytest.mark.torch113


def _scene_folder(tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    for i, view in enumerate(scene_views()):
        Image.fromarray(view).save(folder / f"view{i}.png")
    return folder


def test_auto_folder_exports_every_format(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    out = tmp_path / "scene"
    code, output = run_cli(
        "auto", _scene_folder(tmp_path), "--weights", weights, "--export-dir", out, "--export-format",
        "mini_npz-glb-ply-colmap", "--process-res", "56", "--num-max-points", "400", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    with np.load(out / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape == (3, 42, 56) and npz["extrinsics"].shape == (3, 3, 4)
    scene = trimesh.load(out / "scene.glb")
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert clouds and len(clouds[0].vertices) <= 400
    reconstruction = pycolmap.Reconstruction(str(out))
    assert len(reconstruction.images) == 3
    assert {(c.width, c.height) for c in reconstruction.cameras.values()} == {(80, 60)}  # original image size


def test_auto_feature_visualisation(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    out = tmp_path / "scene"
    code, output = run_cli(
        "auto", _scene_folder(tmp_path), "--weights", weights, "--export-dir", out, "--export-format",
        "depth_vis-feat_vis", "--export-feat", "3,5", "--process-res", "56", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    assert len(list((out / "depth_vis").glob("*.jpg"))) == 3
    assert {p.name for p in (out / "feat_vis").iterdir()} >= {"feat_layer_3", "feat_layer_5"}
    code, output = run_cli("auto", tmp_path / "views", "--export-format", "feat_vis", "--export-dir", tmp_path / "x")
    assert_one_line_error(code, output, "export_feat_layers")


def test_auto_exports_at_input_resolution(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    out = tmp_path / "scene"
    code, output = run_cli(
        "auto", _scene_folder(tmp_path), "--weights", weights, "--export-dir", out, "--export-format", "mini_npz",
        "--process-res", "56", "--export-at-input-res", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    with np.load(out / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape == (3, 60, 80)


def test_auto_video(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    video = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    out = tmp_path / "scene"
    code, output = run_cli(
        "auto", video, "--weights", weights, "--export-dir", out, "--export-format", "mini_npz", "--fps", "5",
        "--process-res", "56", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    with np.load(out / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape[0] == 6  # 12 frames at 10 fps sampled at 5 fps


def test_auto_errors(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    folder = _scene_folder(tmp_path)
    out = tmp_path / "scene"
    code, output = run_cli("auto", folder, "--weights", weights, "--export-dir", out, "--export-format", "glb-bogus")
    assert_one_line_error(code, output, "bogus")
    assert not out.exists()
    code, output = run_cli("auto", folder, "--model", "dav2-small", "--export-dir", out)
    assert_one_line_error(code, output, "dav2-small")
    code, output = run_cli("images", folder, "--model", "da3-small", "--raw", "npy", "--outdir", out)
    assert_one_line_error(code, output, "--raw", "--export-format")
    code, output = run_cli("images", folder, "--model", "dav2-small", "--export-format", "glb", "--outdir", out)
    assert_one_line_error(code, output, "--export-format", "DA3")
    assert not out.exists()


def test_image_images_video_commands_run_da3_models(tmp_path, da3_small_folder):
    """The V2-style commands take a DA3 model (named by --model, or by the --model-dir folder's config)."""
    weights, _ = da3_small_folder
    folder = _scene_folder(tmp_path)
    Image.fromarray(scene_views()[0]).save(folder / "extra.jpg")
    common = ["--export-format", "mini_npz", "--process-res", "56", "--quiet", "--device", "cpu"]
    code, output = run_cli(
        "image", folder / "view0.png", "--model-dir", weights, "--export-dir", tmp_path / "one", *common
    )
    assert code == 0, output
    with np.load(tmp_path / "one" / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape == (1, 42, 56) and npz["extrinsics"].shape == (1, 3, 4)
    code, output = run_cli(
        "images", folder, "--model", "da3-small", "--weights", weights, "--image-extensions", "png",
        "--export-dir", tmp_path / "many", *common,
    )  # fmt: skip
    assert code == 0, output
    with np.load(tmp_path / "many" / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape[0] == 3  # the .jpg is filtered out
    video = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    code, output = run_cli(
        "video", video, "--weights", weights, "--fps", "2.5", "--export-dir", tmp_path / "vid", *common
    )
    assert code == 0, output
    with np.load(tmp_path / "vid" / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape[0] == 3  # 12 frames at 10 fps sampled at 2.5 fps


def test_auto_cleanup_empties_only_a_dedicated_export_dir(tmp_path, da3_small_folder, monkeypatch):
    weights, _ = da3_small_folder
    folder = _scene_folder(tmp_path)
    out = tmp_path / "scene"
    (out / "old").mkdir(parents=True)
    (out / "old" / "stale.txt").write_text("x")
    (out / "keep.txt").write_text("x")
    args = ["--weights", weights, "--export-format", "mini_npz", "--process-res", "56", "--quiet", "--device", "cpu"]
    code, output = run_cli("auto", folder, "--export-dir", out, *args)
    assert code == 0 and (out / "keep.txt").exists(), output  # without the flag nothing else is touched
    code, output = run_cli("auto", folder, "--export-dir", out, "--auto-cleanup", *args)
    assert code == 0, output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "exports", "exports/mini_npz", "exports/mini_npz/results.npz",
    ]  # fmt: skip
    monkeypatch.chdir(out)
    code, output = run_cli("auto", folder, "--export-dir", ".", "--auto-cleanup", *args)
    assert_one_line_error(code, output, "--auto-cleanup")
    assert (out / "exports" / "mini_npz" / "results.npz").exists()


def test_the_summary_line_names_what_the_maps_hold():
    from anydepth.jobs.scene import describe
    from anydepth.prediction import Prediction

    depth = np.linspace(0.5, 31.3, 2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    assert describe(Prediction(depth=depth, depth_kind="depth")) == "2 view(s) at 8x6, depth (up to scale) 0.5..31.3"
    assert describe(Prediction(depth=depth, depth_kind="metric")).endswith("metric depth (m) 0.5..31.3")
    assert describe(Prediction(depth=np.full((1, 2, 2), np.nan, np.float32), depth_kind="disparity")).endswith(
        "disparity no finite values"
    )
