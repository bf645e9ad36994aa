"""The DepthAnything3 facade: upstream constructor, from_pretrained (folder and hub cache), inference + exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

import anydepth
from anydepth.compat import DepthAnything3
from anydepth.errors import InputError, WeightsError
from test_da3_loading import da3_small_folder  # noqa: F401  (module fixture)
from test_da3_pipeline import _views
from test_hub_and_api import _fake_hub_cache


def test_constructor_builds_the_named_architecture():
    model = DepthAnything3(model_name="da3-small")
    assert model.model_name == "da3-small" and model.precision == "auto"
    assert all(k.startswith("model.") for k in model.state_dict())  # the hub files' key layout
    with pytest.raises(InputError, match="da3-small"):
        DepthAnything3(model_name="da3-tiny")


def test_from_pretrained_folder_matches_native_and_exports(da3_small_folder, tmp_path):  # noqa: F811
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32").to("cpu")
    native = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    views = _views()
    keep = [v.copy() for v in views]
    pred = model.inference(views, process_res=56, export_dir=tmp_path, export_format="mini_npz-glb", num_max_points=300)
    assert all(np.array_equal(a, b) for a, b in zip(views, keep))
    ref = native.infer(views, process_res=56, ray_decomposition="ql")
    np.testing.assert_array_equal(pred.depth, ref.depth)
    np.testing.assert_array_equal(pred.extrinsics, ref.extrinsics)
    with np.load(tmp_path / "exports" / "mini_npz" / "results.npz") as npz:
        np.testing.assert_allclose(npz["depth"], pred.depth, atol=1e-7)
    scene = trimesh.load(tmp_path / "scene.glb")
    points = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert points and len(points[0].vertices) <= 300


def test_free_poses_come_back_as_upstream_shapes_them(da3_small_folder):  # noqa: F811
    from test_da3_pipeline import _cameras

    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    ext, K = _cameras()
    pinned = model.inference(_views(), extrinsics=ext, intrinsics=K, process_res=56)
    free = model.inference(_views(), extrinsics=ext, intrinsics=K, process_res=56, align_to_input_ext_scale=False)
    assert pinned.extrinsics.shape == (3, 3, 4) and free.extrinsics.shape == (3, 4, 4)
    np.testing.assert_array_equal(free.extrinsics[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (3, 1)))
    np.testing.assert_allclose(pinned.extrinsics, ext[:, :3], atol=1e-5)


def test_bad_export_format_is_refused_before_inference(da3_small_folder, tmp_path):  # noqa: F811
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    calls = []
    model.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match="glbx"):
        model.inference(_views(), process_res=56, export_dir=tmp_path, export_format="mini_npz-glbx")
    assert not calls and not any(tmp_path.iterdir())


def test_from_pretrained_hub_cache(da3_small_folder, tmp_path):  # noqa: F811
    folder, _ = da3_small_folder
    for name in ("config.json", "model.safetensors"):
        _fake_hub_cache(tmp_path, "depth-anything/DA3-SMALL", name, folder / name)
    model = DepthAnything3.from_pretrained("depth-anything/DA3-SMALL", cache_dir=tmp_path, local_files_only=True)
    assert model.model_name == "da3-small"
    with pytest.raises(WeightsError, match="DA3-BASE"):
        DepthAnything3.from_pretrained("depth-anything/DA3-BASE", cache_dir=tmp_path, local_files_only=True)


def test_forward_on_tensors(da3_small_folder):  # noqa: F811
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    out = model(torch.randn(1, 2, 3, 28, 42))
    assert out.depth.shape == (1, 2, 28, 42) and out.extrinsics.shape == (1, 2, 3, 4)


def test_inference_visual_exports(da3_small_folder, tmp_path):  # noqa: F811
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    with pytest.raises(InputError, match="export_feat_layers"):
        model.inference(_views(), process_res=56, export_dir=tmp_path, export_format="feat_vis")
    model.inference(
        _views(), process_res=56, export_dir=tmp_path, export_format="depth_vis-feat_vis", export_feat_layers=[3],
        feat_vis_fps=5,
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "depth_vis").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert len(list((tmp_path / "feat_vis" / "feat_layer_3").glob("*.jpg"))) == 3
    assert (tmp_path / "feat_vis" / "feat_layer_3.mp4").is_file()


def test_sky_is_upstreams_boolean_mask(monkeypatch, tmp_path):
    """Upstream's ``Prediction.sky`` is the (N, H, W) bool ``sky >= 0.5``, so ``depth[pred.sky]`` is the sky; the
    sky head's score stays available as ``sky_score``."""
    import anydepth.compat.depth_anything_3 as facade
    from test_deploy import _photo, _tiny_da3

    monkeypatch.setattr(facade, "build_da3_network", lambda name: _tiny_da3(anyview=False, seed=2))  # mono + sky
    model = DepthAnything3(model_name="da3mono-large", precision="fp32")
    pred = model.inference([_photo(60, 80)], process_res=56, export_dir=tmp_path, export_format="mini_npz-glb")
    assert pred.sky.dtype == np.bool_ and pred.sky.shape == pred.depth.shape == (1, 42, 56)
    assert pred.sky_score.dtype == np.float32 and pred.sky_score.max() > 1.0  # a score, not a probability
    np.testing.assert_array_equal(pred.sky, pred.sky_score >= 0.5)
    assert 0 < pred.sky.sum() < pred.sky.size  # both sky and ground in this draw
    sky_depth = pred.depth[pred.sky]  # upstream users' idiom
    assert sky_depth.shape == (int(pred.sky.sum()),)
    one = pred[0]
    assert one.sky.dtype == np.bool_ and one.sky_score.shape == (1, 42, 56)
