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
from anydepth.models.da3.network import (
    gaussian_pose_scales,
)
from tests.helpers.inputs import scene_cameras, scene_views


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


def test_ply_header_is_what_3dgs_viewers_read(gs_model, tmp_path):
    """The graphdeco layout that SuperSplat, antimatter15/splat, gsplat's viewer and nerfstudio read: binary little
    endian, one "vertex" element of float properties in this order, names spelled as they look them up."""
    pred = gs_model.infer(scene_views(), process_res=56, infer_gs=True)
    for sh_dc_only, rest in ((True, 0), (False, 24)):  # DA3-GIANT: SH degree 2, 8 rest coefficients per channel
        path = export(pred, tmp_path / str(rest), "gs_ply", sh_dc_only=sh_dc_only)["gs_ply"][0]
        raw = path.read_bytes()
        header = raw[: raw.index(b"end_header\n") + len(b"end_header\n")].decode("ascii").splitlines()
        expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        expected += [f"f_rest_{i}" for i in range(rest)]
        expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
        elements = [line for line in header if line.startswith("element")]
        assert len(elements) == 1 and elements[0].startswith("element vertex ")
        assert [line for line in header if line.startswith("property")] == [f"property float {n}" for n in expected]
        count = int(elements[0].split()[-1])
        assert len(raw) - len("\n".join(header)) - 1 == count * 4 * len(expected)  # nothing else in the file
        vertex = PlyData.read(str(path))["vertex"]
        assert len(vertex) == count and all(vertex.data.dtype[n].str == "<f4" for n in expected)


def test_opacity_and_size_pruning(gs_model, tmp_path):
    pred = gs_model.infer(scene_views(), process_res=56, infer_gs=True)
    gaussians = pred.aux["gaussians"]
    base = dict(prune_by_depth_percent=None, prune_border=False)
    everything = PlyData.read(str(export(pred, tmp_path / "a", "gs_ply", **base)["gs_ply"][0]))["vertex"]
    valid = (gaussians.scales[0] > 0).all(-1).numpy()
    assert len(everything) == valid.sum()
    opacity = gaussians.opacities[0].numpy()
    path = export(pred, tmp_path / "b", "gs_ply", min_opacity=0.5, **base)["gs_ply"][0]
    opaque = PlyData.read(str(path))["vertex"]
    assert len(opaque) == (valid & (opacity >= 0.5)).sum() and 0 < len(opaque) < len(everything)
    assert (opaque["opacity"] >= np.log(0.5 / 0.5) - 1e-5).all()  # logit(0.5) = 0
    path = export(pred, tmp_path / "c", "gs_ply", max_size_percent=0.9, **base)["gs_ply"][0]
    small = PlyData.read(str(path))["vertex"]
    size = gaussians.scales[0].amax(-1).numpy()
    limit = np.quantile(size[valid], 0.9)
    assert len(small) == (valid & (size <= limit)).sum()
    assert np.exp(np.stack([small[f"scale_{i}"] for i in range(3)], 1)).max() <= limit * (1 + 1e-5)
    for bad, needle in (({"min_opacity": 1.5}, "min_opacity"), ({"max_size_percent": 0.0}, "max_size_percent")):
        with pytest.raises(InputError, match=needle):
            export(pred, tmp_path / "d", "gs_ply", **bad)
    assert not (tmp_path / "d").exists()


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
    with pytest.raises(InputError, match="'gs_video' needs 3D Gaussians"):
        parse_export_format("gs_video", has_gaussians=False)
    pred = gs_model.infer(scene_views(), process_res=56)
    with pytest.raises(InputError, match="infer_gs"):
        export(pred, tmp_path, "gs_ply")
    assert not (tmp_path / "gs_ply").exists()


def test_scene_job_turns_gaussians_on_for_gs_ply(gs_model, tmp_path):
    views = scene_views()
    pred = run_scene(gs_model, views, SceneOptions(export_dir=tmp_path, export_format="gs_ply", process_res=56))
    assert "gaussians" in pred.aux and (tmp_path / "gs_ply" / "0000.ply").is_file()


def test_posed_gaussians_sit_on_the_reported_cameras(gs_model, monkeypatch):
    """With given cameras, the Gaussians are reported in the given frame like the depth: from each reported camera
    they are as far, relative to the network's own camera, as the reported depth is relative to the network's
    (two views, so the fitted similarity carries the camera centres exactly). Upstream keeps them in the
    network's frame, off the cameras it reports."""
    captured = []
    forward = gs_model.net.forward

    def spy(*args, **kwargs):
        captured.append(forward(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(gs_model.net, "forward", spy)
    ext, K = scene_cameras(2)
    ext[:, :3, 3] *= 4.0  # the given world in other units than the network's
    pred = gs_model.infer(scene_views(2), extrinsics=ext, intrinsics=K, process_res=56, infer_gs=True)
    out = captured[-1]
    S, H, W = pred.depth.shape
    ratio = pred.depth / out.depth[0].numpy()  # reported over network depth: 1 / the fitted scale
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-4)

    def distances(means, w2c):
        centres = -np.einsum("sji,sj->si", w2c[:, :3, :3], w2c[:, :3, 3])
        return np.linalg.norm(means.reshape(S, H * W, 3) - centres[:, None], axis=-1)

    network = out.gaussians.means[0].numpy()
    if out.gaussian_pose_scale is not None:
        network = network / float(out.gaussian_pose_scale)
    reported = distances(pred.gaussians.means[0].numpy(), pred.extrinsics)
    own = distances(network, out.extrinsics[0].numpy())
    np.testing.assert_allclose(reported / own, ratio.flat[0], rtol=1e-3)
    scales = pred.gaussians.scales[0].numpy() / (out.gaussians.scales[0].numpy() / float(out.gaussian_pose_scale or 1))
    np.testing.assert_allclose(scales, ratio.flat[0], rtol=1e-4)
