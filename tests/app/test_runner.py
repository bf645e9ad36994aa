"""The web app's run function on tiny random models (DA3 scene and V2 images), its guards, and `anydepth app`."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from anydepth.app.runner import AppSettings, RunOptions, model_choices, run_job
from anydepth.errors import AnyDepthError
from anydepth.web.models import ModelCache
from tests.helpers.inputs import scene_views, write_video


@pytest.fixture(scope="module")
def cache():
    return ModelCache()


@pytest.fixture()
def uploads(tmp_path):
    """Two views as a browser would upload them, with names that must not be used as given."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    paths = []
    for index, (view, name) in enumerate(zip(scene_views(2), ["../../evil name.png", "<b>x</b>.png"])):
        (folder / str(index)).mkdir()
        path = folder / str(index) / name.replace("/", "_")
        Image.fromarray(view).save(path)
        paths.append(path)
    return paths


def _settings(tmp_path, weights, model="da3-small", **kw):
    return AppSettings(
        model=model, weights=str(weights), device="cpu", precision="fp32", work_dir=tmp_path / "runs", **kw
    )


def test_da3_run_gives_depth_images_a_readable_glb_and_a_zip(tmp_path, da3_small_folder, cache, uploads):
    trimesh = pytest.importorskip("trimesh")
    weights, _ = da3_small_folder
    settings = _settings(tmp_path, weights)
    options = RunOptions(model="da3-small", process_res=112, export_formats=["ply", "mini_npz"], show_cameras=True)
    result = run_job(settings, cache, uploads, options)

    assert [p.name for p in result.depth_images] == ["0000.jpg", "0001.jpg"]
    for path in result.depth_images:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape[0] > 10 and pixels.std() > 5
    scene = trimesh.load(result.glb)  # an independent reader
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert len(clouds) == 1 and len(clouds[0].vertices) > 100
    assert sum(name.startswith("camera_") for name in scene.geometry) == 2  # one frustum per view
    with zipfile.ZipFile(result.zip) as archive:
        names = set(archive.namelist())
    assert {"scene.glb", "scene.ply", "depth_vis/0000.jpg", "exports/mini_npz/results.npz"} <= names
    inputs = sorted(p.name for p in (result.run_dir / "inputs").iterdir())
    assert [name[:5] for name in inputs] == ["0000_", "0001_"]  # numbered, sanitised copies in the run folder
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) and ".." not in name for name in inputs), inputs
    assert result.run_dir.parent == settings.work_dir and "2 view(s)" in result.summary


def test_video_is_sampled_into_views(tmp_path, da3_small_folder, cache):
    weights, _ = da3_small_folder
    settings = _settings(tmp_path, weights, max_frames=3)
    clip = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    result = run_job(settings, cache, [clip], RunOptions(model="da3-small", process_res=56, fps=5))
    assert len(result.depth_images) == 3 and result.glb.is_file()


def test_v2_run_gives_per_image_depth(tmp_path, vits_weights, cache, uploads):
    settings = _settings(tmp_path, vits_weights, model="dav2-small")
    result = run_job(settings, cache, uploads, RunOptions(model="dav2-small", process_res=56, export_formats=["png16"]))
    assert result.glb is None and len(result.depth_images) == 2
    with Image.open(result.depth_images[0]) as image:
        assert np.asarray(image.convert("RGB")).std() > 5
    with zipfile.ZipFile(result.zip) as archive:
        assert any(name.endswith("_depth16.png") for name in archive.namelist())


def test_bad_uploads_are_refused_with_one_line(tmp_path, da3_small_folder, cache, uploads):
    weights, _ = da3_small_folder
    settings = _settings(tmp_path, weights, max_files=2, max_upload_bytes=10**6)
    options = RunOptions(model="da3-small", process_res=56)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png")
    clip = write_video(tmp_path / "clip.mp4", frames=4, fps=10)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x00" * (10**6 + 1))
    cases = [
        ([], "upload one or more"),
        ([uploads[0]] * 3, "at most 2"),
        ([big], "limit"),
        ([text], "unsupported file type"),
        ([fake], "not a readable image"),
        ([clip, uploads[0]], "not both"),
    ]
    for files, needle in cases:
        with pytest.raises(AnyDepthError, match=needle) as error:
            run_job(settings, cache, files, options)
        assert "\n" not in str(error.value) and str(tmp_path) not in str(error.value)
    with pytest.raises(AnyDepthError, match="not offered"):
        run_job(settings, cache, uploads, RunOptions(model="vda-small"))
    with pytest.raises(AnyDepthError, match="not offered"):
        run_job(settings, cache, uploads, RunOptions(model="da3-small", process_res=56, export_formats=["../x"]))


def test_old_runs_are_removed(tmp_path, da3_small_folder, cache, uploads):
    weights, _ = da3_small_folder
    settings = _settings(tmp_path, weights, keep_runs=2)
    # a --work-dir may hold other folders: the app removes only its own runs
    mine = settings.work_dir / "my-project"
    (mine / "data").mkdir(parents=True)
    runs = [run_job(settings, cache, uploads[:1], RunOptions(model="da3-small", process_res=56)) for _ in range(3)]
    assert sorted(settings.work_dir.iterdir()) == sorted([mine, *(r.run_dir for r in runs[1:])])
    assert (mine / "data").is_dir()


def test_model_choices():
    choices = model_choices("da3-small")
    assert "da3-small" in choices and "dav2-small" in choices and "vda-small" not in choices
    assert model_choices("dav2-giant")[0] == "dav2-giant"


def test_create_app_builds_blocks(tmp_path, da3_small_folder, cache):
    gr = pytest.importorskip("gradio")
    from anydepth.app.ui import create_app

    weights, _ = da3_small_folder
    blocks = create_app(_settings(tmp_path, weights), cache)
    assert isinstance(blocks, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    assert {"inputs", "run", "depth", "scene", "download", "summary"} <= ids


def test_app_command_binds_loopback_by_default(tmp_path, monkeypatch, da3_small_folder):
    pytest.importorskip("gradio")
    import anydepth.app.ui as ui
    from tests.helpers.cli import run_cli

    weights, _ = da3_small_folder
    launched = {}
    monkeypatch.setattr(ui, "launch", lambda settings, **kw: launched.update(settings=settings, **kw))
    code, output = run_cli("app", "--weights", weights, "--work-dir", tmp_path / "w", "--max-files", "3")
    assert code == 0, output
    assert launched["host"] == "127.0.0.1" and launched["port"] == 7860
    assert launched["settings"].max_files == 3 and launched["settings"].weights == str(weights)
    code, output = run_cli("app", "--model", "no-such-model")
    assert code == 1 and "no-such-model" in output and "Traceback" not in output
