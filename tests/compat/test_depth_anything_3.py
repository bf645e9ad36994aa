"""The DepthAnything3 facade: upstream constructor, from_pretrained (folder and hub cache), inference + exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

import anydepth
from anydepth.compat import DepthAnything3
from anydepth.errors import InputError, WeightsError
from tests.helpers.checkpoints import fake_hub_cache
from tests.helpers.inputs import scene_views

pytestmark = pytest.mark.torch113


def test_constructor_builds_the_named_architecture():
    model = DepthAnything3(model_name="da3-small")
    assert model.model_name == "da3-small" and model.precision == "auto"
    assert all(k.startswith("model.") for k in model.state_dict())  # the hub files' key layout
    with pytest.raises(InputError, match="da3-small"):
        DepthAnything3(model_name="da3-tiny")


def test_from_pretrained_folder_matches_native_and_exports(da3_small_folder, tmp_path):
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32").to("cpu")
    native = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    views = scene_views()
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


def test_free_poses_come_back_as_upstream_shapes_them(da3_small_folder):
    from tests.helpers.inputs import scene_cameras

    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    ext, K = scene_cameras()
    pinned = model.inference(scene_views(), extrinsics=ext, intrinsics=K, process_res=56)
    free = model.inference(scene_views(), extrinsics=ext, intrinsics=K, process_res=56, align_to_input_ext_scale=False)
    assert pinned.extrinsics.shape == (3, 3, 4) and free.extrinsics.shape == (3, 4, 4)
    np.testing.assert_array_equal(free.extrinsics[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (3, 1)))
    np.testing.assert_allclose(pinned.extrinsics, ext[:, :3], atol=1e-5)


def test_bad_export_format_is_refused_before_inference(da3_small_folder, tmp_path):
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    calls = []
    model.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match="glbx"):
        model.inference(scene_views(), process_res=56, export_dir=tmp_path, export_format="mini_npz-glbx")
    assert not calls and not any(tmp_path.iterdir())


def test_from_pretrained_hub_cache(da3_small_folder, tmp_path):
    folder, _ = da3_small_folder
    for name in ("config.json", "model.safetensors"):
        fake_hub_cache(tmp_path, "depth-anything/DA3-SMALL", name, folder / name)
    model = DepthAnything3.from_pretrained("depth-anything/DA3-SMALL", cache_dir=tmp_path, local_files_only=True)
    assert model.model_name == "da3-small"
    with pytest.raises(WeightsError, match="DA3-BASE"):
        DepthAnything3.from_pretrained("depth-anything/DA3-BASE", cache_dir=tmp_path, local_files_only=True)


def test_forward_on_tensors(da3_small_folder):
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    out = model(torch.randn(1, 2, 3, 28, 42))
    assert out.depth.shape == (1, 2, 28, 42) and out.extrinsics.shape == (1, 2, 3, 4)


def test_inference_visual_exports(da3_small_folder, tmp_path):
    folder, _ = da3_small_folder
    model = DepthAnything3.from_pretrained(folder, precision="fp32")
    with pytest.raises(InputError, match="export_feat_layers"):
        model.inference(scene_views(), process_res=56, export_dir=tmp_path, export_format="feat_vis")
    model.inference(
        scene_views(), process_res=56, export_dir=tmp_path, export_format="depth_vis-feat_vis", export_feat_layers=[3],
        feat_vis_fps=5, export_kwargs={"feat_vis": {"fps": 2}},  # as upstream, the argument wins
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "depth_vis").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert len(list((tmp_path / "feat_vis" / "feat_layer_3").glob("*.jpg"))) == 3
    import av

    with av.open(str(tmp_path / "feat_vis" / "feat_layer_3.mp4")) as video:
        assert video.streams.video[0].average_rate == 5


def test_sky_is_upstreams_boolean_mask(monkeypatch, tmp_path):
    """Upstream's ``Prediction.sky`` is the (N, H, W) bool ``sky >= 0.5``, so ``depth[pred.sky]`` is the sky; the
    sky head's score stays available as ``sky_score``."""
    import anydepth.compat.depth_anything_3 as facade
    from tests.helpers.inputs import photo_array
    from tests.helpers.networks import tiny_da3

    monkeypatch.setattr(facade, "build_da3_network", lambda name: tiny_da3(anyview=False, seed=2))  # mono + sky
    model = DepthAnything3(model_name="da3mono-large", precision="fp32")
    pred = model.inference([photo_array(60, 80)], process_res=56, export_dir=tmp_path, export_format="mini_npz-glb")
    assert pred.sky.dtype == np.bool_ and pred.sky.shape == pred.depth.shape == (1, 42, 56)
    assert pred.sky_score.dtype == np.float32 and pred.sky_score.max() > 1.0  # a score, not a probability
    np.testing.assert_array_equal(pred.sky, pred.sky_score >= 0.5)
    assert 0 < pred.sky.sum() < pred.sky.size  # both sky and ground in this draw
    sky_depth = pred.depth[pred.sky]  # upstream users' idiom
    assert sky_depth.shape == (int(pred.sky.sum()),)
    one = pred[0]
    assert one.sky.dtype == np.bool_ and one.sky_score.shape == (1, 42, 56)


def test_metric_scale_and_flags_read_as_upstreams_prediction(monkeypatch):
    """Upstream's Prediction has ``is_metric`` (1 for the nested model), ``scale_factor`` (the nested model's
    metric scale) and ``gaussians``; the facade's does too."""
    import anydepth.compat.depth_anything_3 as facade
    from anydepth.models.da3.network import NestedDepthAnything3Net
    from tests.helpers.inputs import photo_array
    from tests.helpers.networks import tiny_da3
    from tests.helpers.random_weights import fill_

    nested = NestedDepthAnything3Net(tiny_da3(True).cfg, tiny_da3(False).cfg)
    monkeypatch.setattr(facade, "build_da3_network", lambda name: fill_(nested, seed=4).eval())
    model = DepthAnything3(model_name="da3nested-giant-large", precision="fp32")
    pred = model.inference([photo_array(60, 80, seed=i) for i in range(3)], process_res=56)
    assert pred.is_metric == 1 and pred.depth_kind == "metric"
    assert isinstance(pred.scale_factor, float) and pred.scale_factor > 0
    assert pred.gaussians is None  # no infer_gs
    assert pred[1].scale_factor == pred.scale_factor

    monkeypatch.setattr(facade, "build_da3_network", lambda name: tiny_da3(True))
    pred = DepthAnything3(model_name="da3-small", precision="fp32").inference([photo_array(60, 80)], process_res=56)
    assert pred.is_metric == 0 and pred.scale_factor is None and pred.sky is None


def test_metric_model_gives_metres_when_the_intrinsics_are_known(monkeypatch):
    """DA3METRIC's output is focal-normalised: metres = focal x output / 300. With intrinsics anydepth applies it
    (upstream ignores intrinsics without extrinsics and returns the raw output); without, the raw output."""
    import anydepth.compat.depth_anything_3 as facade
    from tests.helpers.inputs import photo_array
    from tests.helpers.networks import tiny_da3

    monkeypatch.setattr(facade, "build_da3_network", lambda name: tiny_da3(anyview=False, seed=3))
    model = DepthAnything3(model_name="da3metric-large", precision="fp32")
    view = photo_array(60, 80)
    raw = model.inference([view], process_res=56)
    assert raw.depth_kind == "depth" and raw.intrinsics is None and raw.is_metric == 0
    K = np.array([[[120.0, 0, 40], [0, 90.0, 30], [0, 0, 1]]], np.float32)
    metric = model.inference([view], intrinsics=K, process_res=56)
    assert metric.depth_kind == "metric" and metric.is_metric == 1
    scale = 56 / 80  # 80x60 -> 56x42
    np.testing.assert_allclose(metric.intrinsics[0, 0, 0], 120 * scale, rtol=1e-5)
    focal = (120 * scale + 90 * scale) / 2
    np.testing.assert_allclose(metric.depth, raw.depth * focal / 300, rtol=1e-4)
