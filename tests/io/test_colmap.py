"""COLMAP datasets as input: cameras read back in our convention, and `anydepth colmap` conditions on them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anydepth.errors import InputError
from anydepth.export.colmap import export_colmap
from anydepth.io.colmap import colmap_model_dir, is_colmap_dataset, read_colmap_views
from anydepth.prediction import Prediction
from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.inputs import scene_cameras, scene_views


def _dataset(tmp_path):
    """images/ + sparse/0/ written by pycolmap (through our exporter) for three 60x80 views with known cameras."""
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    paths = []
    for i, view in enumerate(scene_views()):
        paths.append(root / "images" / f"view{i}.png")
        Image.fromarray(view).save(paths[-1])
    ext, K = scene_cameras()
    depth = np.full((3, 60, 80), 4.0, np.float32)
    pred = Prediction(depth=depth, depth_kind="depth", extrinsics=ext[:, :3], intrinsics=K,
                      processed_images=np.stack(scene_views()))  # fmt: skip
    export_colmap(pred, root / "sparse" / "0", image_paths=[str(p) for p in paths])
    return root, ext, K


def test_read_colmap_views_round_trip(tmp_path):
    root, ext, K = _dataset(tmp_path)
    assert is_colmap_dataset(root) and not is_colmap_dataset(root / "images")
    views = read_colmap_views(root)
    assert [p.name for p in views.image_paths] == ["view0.png", "view1.png", "view2.png"]
    np.testing.assert_allclose(views.extrinsics, ext, atol=1e-5)
    np.testing.assert_allclose(views.intrinsics, K, atol=1e-4)


def test_colmap_command_conditions_on_the_dataset(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    root, ext, K = _dataset(tmp_path)
    out = tmp_path / "out"
    code, output = run_cli(
        "colmap", root, "--weights", weights, "--export-dir", out, "--export-format", "mini_npz",
        "--process-res", "56", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    with np.load(out / "exports" / "mini_npz" / "results.npz") as npz:
        np.testing.assert_allclose(npz["extrinsics"], ext[:, :3], atol=1e-4)  # reported in the dataset's frame
        np.testing.assert_allclose(npz["intrinsics"][:, 0, 0], K[:, 0, 0] * 56 / 80, rtol=1e-4)
    code, output = run_cli("colmap", root / "images", "--weights", weights, "--export-dir", tmp_path / "x")
    assert_one_line_error(code, output, "sparse")


def _move_model(root, to, text=False):
    """Move the dataset's model from sparse/0/ to ``root/to`` (as COLMAP's text files when ``text``)."""
    import shutil

    import pycolmap

    source, target = root / "sparse" / "0", root / to
    model = pycolmap.Reconstruction(str(source))
    shutil.rmtree(source)
    target.mkdir(parents=True, exist_ok=True)
    if text:
        model.write_text(str(target))
        assert (target / "cameras.txt").is_file() and not (target / "cameras.bin").exists()
    else:
        model.write(str(target))
    return target


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_sparse_subdir_has_upstreams_meaning(tmp_path, text):
    """``--sparse-subdir 0`` is ``sparse/0/`` and "" is ``sparse/``, as in upstream's ``da3 colmap``; a path
    relative to the dataset ("sparse/0") still works where it names one model."""
    root, ext, _ = _dataset(tmp_path)
    model = root / "sparse" / "0"
    if text:
        model = _move_model(root, "sparse/0", text=True)
    for value in ("0", "sparse/0", "", "/0/"):
        assert colmap_model_dir(root, value) == model, value
        np.testing.assert_allclose(read_colmap_views(root, value).extrinsics, ext, atol=1e-5)
    assert colmap_model_dir(root, "1") is None and not is_colmap_dataset(root, "1")
    with pytest.raises(InputError, match=r"sparse/1/ or 1/"):
        read_colmap_views(root, "1")

    model = _move_model(root, "sparse", text=text)  # upstream's default: the model right in sparse/
    assert colmap_model_dir(root, "") == model and colmap_model_dir(root, "0") is None


def test_a_sparse_subdir_naming_two_models_is_refused(tmp_path):
    root, _, _ = _dataset(tmp_path)
    import shutil

    shutil.copytree(root / "sparse" / "0", root / "0")  # dataset/0/ and dataset/sparse/0/
    with pytest.raises(InputError, match="names two COLMAP models"):
        colmap_model_dir(root, "0")


def test_colmap_command_with_upstreams_sparse_subdir(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    root, ext, _ = _dataset(tmp_path)
    common = ["--weights", weights, "--export-format", "mini_npz", "--process-res", "56", "--quiet"]
    code, output = run_cli("colmap", root, "--sparse-subdir", "0", "--export-dir", tmp_path / "a", *common)
    assert code == 0, output
    with np.load(tmp_path / "a" / "exports" / "mini_npz" / "results.npz") as npz:
        np.testing.assert_allclose(npz["extrinsics"], ext[:, :3], atol=1e-4)
    code, output = run_cli("colmap", root, "--sparse-subdir", "2", "--export-dir", tmp_path / "b", *common)
    assert_one_line_error(code, output, "sparse/2/")
