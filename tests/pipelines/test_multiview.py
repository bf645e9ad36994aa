"""The DA3 pipeline: preprocessing + network + pose alignment, through load_model, and exports of its result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

import anydepth
from anydepth.errors import InputError
from anydepth.export.formats import export
from anydepth.pipelines.da3_preprocess import preprocess_da3
from anydepth.pipelines.multiview import MultiViewModel
from tests.helpers.inputs import scene_cameras, scene_views

pytestmark = pytest.mark.torch113


@pytest.fixture(scope="module")
def model(da3_small_folder):
    folder, _ = da3_small_folder
    m = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    assert isinstance(m, MultiViewModel)
    return m


def test_infer_matches_the_network_on_preprocessed_views(model):
    views = scene_views()
    pred = model.infer(views, process_res=56)
    assert pred.depth.shape == (3, 42, 56) and pred.depth_kind == "depth"
    assert pred.conf.shape == (3, 42, 56) and pred.extrinsics.shape == (3, 3, 4) and pred.intrinsics.shape == (3, 3, 3)
    assert pred.processed_images.shape == (3, 42, 56, 3) and pred.processed_images.dtype == np.uint8
    x = preprocess_da3(views, process_res=56).images[None]
    with torch.no_grad():
        ref = model.net(x, ray_decomposition="qr")
    np.testing.assert_array_equal(pred.depth, ref.depth[0].numpy())
    np.testing.assert_array_equal(pred.extrinsics, ref.extrinsics[0].numpy())


def test_pose_conditioning_reports_the_given_cameras(model):
    views = scene_views()
    ext, K = scene_cameras()
    pred = model.infer(views, extrinsics=ext, intrinsics=K, process_res=56)
    np.testing.assert_allclose(pred.extrinsics, ext[:, :3], atol=1e-5)
    expected_K = K.copy()
    expected_K[:, 0] *= 56 / 80
    expected_K[:, 1] *= 42 / 60
    np.testing.assert_allclose(pred.intrinsics, expected_K, rtol=1e-5)
    free = model.infer(views, extrinsics=ext, intrinsics=K, process_res=56, align_to_input_ext_scale=False)
    assert free.extrinsics.shape == (3, 3, 4)
    with pytest.raises(InputError, match="intrinsics"):
        model.infer(views, extrinsics=ext)


def test_output_at_input_resolution(model):
    views = scene_views()
    processed = model.infer(views, process_res=56)
    full = model.infer(views, process_res=56, output="input")
    assert full.depth.shape == (3, 60, 80) and full.conf.shape == (3, 60, 80)
    assert full.processed_images.shape == (3, 60, 80, 3)  # colours at the maps' size, for the exporters
    np.testing.assert_allclose(full.intrinsics[:, 0], processed.intrinsics[:, 0] * 80 / 56, rtol=1e-5)
    np.testing.assert_allclose(full.intrinsics[:, 1], processed.intrinsics[:, 1] * 60 / 42, rtol=1e-5)
    mixed = [*scene_views(2), scene_views(1, 50, 90)[0]]
    with pytest.raises(InputError, match="output='processed'"):
        model.infer(mixed, process_res=56, output="input")


def test_input_resolution_prediction_exports(model, tmp_path):
    full = model.infer(scene_views(), process_res=56, output="input")
    export(full, tmp_path, "ply", num_max_points=10**6)
    from plyfile import PlyData

    vertices = PlyData.read(str(tmp_path / "scene.ply"))["vertex"]
    assert 0 < vertices.count <= 3 * 60 * 80


def test_prediction_exports_read_back(model, tmp_path):
    pred = model.infer(scene_views(), process_res=56, export_feat_layers=[3])
    assert pred.aux["feat_layer_3"].shape == (3, 3, 4, 384)
    export(pred, tmp_path, "mini_npz-glb-ply", num_max_points=500)
    with np.load(tmp_path / "exports" / "mini_npz" / "results.npz") as npz:
        assert npz["depth"].shape == (3, 42, 56)
        assert npz["extrinsics"].shape == (3, 3, 4)
    scene = trimesh.load(tmp_path / "scene.glb")
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert clouds and 0 < len(clouds[0].vertices) <= 500


def test_infer_holds_one_full_size_view_at_a_time(model, tmp_path):
    import tracemalloc

    from PIL import Image

    height, width = 480, 640
    yy, xx = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"v{i}.jpg")
        view = np.stack([xx * 255 // width, yy * 255 // height, (xx + 20 * i) % 256], -1).astype(np.uint8)
        Image.fromarray(view).save(paths[-1], quality=95)
    tracemalloc.start()
    try:
        pred = model.infer(paths, process_res=56)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pred.depth.shape == (6, 42, 56)
    assert peak < 2.5 * height * width * 3  # not 6 views at full size
    reduced = model.infer(paths, process_res=56, reduce_on_decode=True)  # decoded at an eighth: 60x80
    assert reduced.depth.shape == pred.depth.shape and reduced.intrinsics.shape == pred.intrinsics.shape
    assert np.abs(reduced.processed_images.astype(int) - pred.processed_images.astype(int)).mean() < 2
