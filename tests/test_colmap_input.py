"""COLMAP datasets as input: cameras read back in our convention, and `anydepth colmap` conditions on them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from anydepth.export.colmap import export_colmap
from anydepth.io.colmap import is_colmap_dataset, read_colmap_views
from anydepth.prediction import Prediction
from test_cli import _assert_one_line_error, _run
from test_da3_loading import da3_small_folder  # noqa: F401  (module fixture)
from test_da3_pipeline import _cameras, _views


def _dataset(tmp_path):
    """images/ + sparse/0/ written by pycolmap (through our exporter) for three 60x80 views with known cameras."""
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    paths = []
    for i, view in enumerate(_views()):
        paths.append(root / "images" / f"view{i}.png")
        Image.fromarray(view).save(paths[-1])
    ext, K = _cameras()
    depth = np.full((3, 60, 80), 4.0, np.float32)
    pred = Prediction(depth=depth, depth_kind="depth", extrinsics=ext[:, :3], intrinsics=K,
                      processed_images=np.stack(_views()))  # fmt: skip
    export_colmap(pred, root / "sparse" / "0", image_paths=[str(p) for p in paths])
    return root, ext, K


def test_read_colmap_views_round_trip(tmp_path):
    root, ext, K = _dataset(tmp_path)
    assert is_colmap_dataset(root) and not is_colmap_dataset(root / "images")
    views = read_colmap_views(root)
    assert [p.name for p in views.image_paths] == ["view0.png", "view1.png", "view2.png"]
    np.testing.assert_allclose(views.extrinsics, ext, atol=1e-5)
    np.testing.assert_allclose(views.intrinsics, K, atol=1e-4)


def test_colmap_command_conditions_on_the_dataset(tmp_path, da3_small_folder):  # noqa: F811
    weights, _ = da3_small_folder
    root, ext, K = _dataset(tmp_path)
    out = tmp_path / "out"
    code, output = _run(
        "colmap", root, "--weights", weights, "--export-dir", out, "--export-format", "mini_npz",
        "--process-res", "56", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    with np.load(out / "exports" / "mini_npz" / "results.npz") as npz:
        np.testing.assert_allclose(npz["extrinsics"], ext[:, :3], atol=1e-4)  # reported in the dataset's frame
        np.testing.assert_allclose(npz["intrinsics"][:, 0, 0], K[:, 0, 0] * 56 / 80, rtol=1e-4)
    code, output = _run("colmap", root / "images", "--weights", weights, "--export-dir", tmp_path / "x")
    _assert_one_line_error(code, output, "sparse")
