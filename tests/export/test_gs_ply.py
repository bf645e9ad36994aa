"""3D Gaussians end to end: a small DA3 network with a GS head, the pose scale, and the gs_ply export read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData

from anydepth.errors import InputError
from anydepth.export.formats import export, parse_export_format
from anydepth.export.gs_ply import gaussian_property_names
from anydepth.jobs import SceneOptions, run_scene
from anydepth.models.da3.gaussian_head import GaussianAdapterConfig, GaussianDPTConfig
from anydepth.models.da3.network import (
    DA3_CONFIGS,
    DA3NetConfig,
    DepthAnything3Net,
    gaussian_pose_scales,
)
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.presets import get_preset
from tests.helpers.inputs import scene_cameras, scene_views
from tests.helpers.random_weights import randomize_


@pytest.fixture(scope="module")
def gs_model():
    """da3-small with a GS head sized for its width: the giant's architecture at a testable size."""
    small = DA3_CONFIGS["da3-small"]
    cfg = DA3NetConfig(
        backbone=small.backbone,
        head=small.head,
        camera_decoder=small.camera_decoder,
        camera_encoder=small.camera_encoder,
        gaussian_head=GaussianDPTConfig(dim_in=768, features=32, out_channels=(24, 48, 96, 96)),
        gaussian_adapter=GaussianAdapterConfig(),
    )
    net = randomize_(DepthAnything3Net(cfg), seed=3).eval()
    return MultiViewModel(net, get_preset("da3-giant"), torch.device("cpu"), "fp32")


def test_gs_ply_holds_the_selected_gaussians(gs_model, tmp_path):
    pred = gs_model.infer(scene_views(), process_res=56, infer_gs=True)
    gaussians = pred.aux["gaussians"]
    assert gaussians.means.shape == (1, 3 * 42 * 56, 3) and pred.aux["gaussians_hw"] == (42, 56)
    written = export(pred, tmp_path, "gs_ply-mini_npz", prune_by_depth_percent=0.9)
    ply = PlyData.read(str(written["gs_ply"][0]))
    vertex = ply["vertex"]
    assert tuple(p.name for p in vertex.properties) == gaussian_property_names(0)
    # expected selection: the 1-px border (int(8/256*42) = 1, int(8/256*56) = 1) and the farthest 10% per view
    depth = torch.from_numpy(pred.depth)
    keep = torch.zeros_like(depth, dtype=torch.bool)
    keep[:, 1:-1, 1:-1] = True
    keep &= depth <= torch.quantile(depth.reshape(3, -1), 0.9, dim=1)[:, None, None]
    keep = keep.reshape(-1).numpy() & (gaussians.scales[0] > 0).all(-1).numpy()  # invalid ones are dropped
    assert len(vertex) == keep.sum() > 0
    means = gaussians.means[0].numpy()[keep]
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), means)
    opacity = gaussians.opacities[0].double().numpy()[keep]
    np.testing.assert_allclose(vertex["opacity"], np.log(opacity / (1 - opacity)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vertex["scale_0"], np.log(gaussians.scales[0, :, 0].numpy()[keep]), rtol=1e-6)
    np.testing.assert_array_equal(vertex["f_dc_2"], gaussians.harmonics[0, :, 2, 0].numpy()[keep])
    np.testing.assert_array_equal(vertex["nx"], 0.0)
    rot = np.stack([vertex[f"rot_{i}"] for i in range(4)], 1)
    np.testing.assert_allclose(np.linalg.norm(rot, axis=1), 1.0, rtol=1e-5)
    # every other view, all SH bands, no pruning
    path = export(pred, tmp_path / "b", "gs_ply", gs_views_interval=2, prune_by_depth_percent=None,
                  prune_border=False, sh_dc_only=False)["gs_ply"][0]  # fmt: skip
    full = PlyData.read(str(path))["vertex"]
    d_sh = gaussians.harmonics.shape[-1]
    valid = (gaussians.scales[0] > 0).all(-1).reshape(3, -1)[::2]
    assert len(full) == int(valid.sum()) and len(full.properties) == 17 + 3 * (d_sh - 1)
    assert np.isfinite(np.stack([full[p.name] for p in full.properties])).all()


def test_gaussian_pose_scales():
    ext, _ = scene_cameras(4)
    predicted = torch.from_numpy(ext)[None]
    assert gaussian_pose_scales(predicted, predicted.clone()) is None
    for factor, expected in ((2.0, 2.0), (0.5, 0.5), (5.0, 3.0), (0.1, 1 / 3)):
        given = predicted.clone()
        given[..., :3, 3] *= factor  # the same cameras in other units: the centres scale by the factor
        np.testing.assert_allclose(gaussian_pose_scales(predicted, given).numpy(), [expected], rtol=1e-5)


def test_known_cameras_rescale_the_gaussians(gs_model, monkeypatch):
    import anydepth.models.da3.network as network

    seen = []

    def spy(predicted, given):
        seen.append(network.gaussian_pose_scales.__wrapped__(predicted, given))
        return seen[-1]

    spy.__wrapped__ = network.gaussian_pose_scales
    monkeypatch.setattr(network, "gaussian_pose_scales", spy)
    ext, K = scene_cameras()
    free = gs_model.infer(scene_views(), process_res=56, infer_gs=True)
    posed = gs_model.infer(scene_views(), extrinsics=ext, intrinsics=K, process_res=56, infer_gs=True)
    assert len(seen) == 1 and seen[0].shape == (1,) and 1 / 3 <= float(seen[0]) <= 3  # only the posed run
    for gaussians in (free.aux["gaussians"], posed.aux["gaussians"]):
        assert torch.isfinite(gaussians.means).all() and gaussians.means.shape == (1, 3 * 42 * 56, 3)
        norms = gaussians.rotations[0].norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


def test_gs_ply_needs_gaussians(gs_model, tmp_path):
    with pytest.raises(InputError, match="infer_gs"):
        parse_export_format("mini_npz-gs_ply", has_gaussians=False)
    with pytest.raises(InputError, match="rasteriser"):
        parse_export_format("gs_video")
    pred = gs_model.infer(scene_views(), process_res=56)
    with pytest.raises(InputError, match="infer_gs"):
        export(pred, tmp_path, "gs_ply")
    assert not (tmp_path / "gs_ply").exists()


def test_scene_job_turns_gaussians_on_for_gs_ply(gs_model, tmp_path):
    views = scene_views()
    pred = run_scene(gs_model, views, SceneOptions(export_dir=tmp_path, export_format="gs_ply", process_res=56))
    assert "gaussians" in pred.aux and (tmp_path / "gs_ply" / "0000.ply").is_file()
