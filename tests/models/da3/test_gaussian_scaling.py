"""The nested model's Gaussians are in metres like its depth and cameras: renders of them from the metric cameras
give the metric depth back (upstream leaves them in the any-view branch's units)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from anydepth.geometry.gaussians import render_gaussians
from anydepth.models.da3.gaussian_head import GaussianAdapterConfig, GaussianDPTConfig, scale_gaussians
from anydepth.models.da3.network import NestedDepthAnything3Net
from tests.helpers.networks import tiny_da3
from tests.helpers.random_weights import fill_
from tests.helpers.splats import pixel_gaussians, ray_cosines, side_by_side_cameras, wave_depth


def _rendered_depth(gaussians, extrinsics, intrinsics, h, w):
    g = gaussians
    out = render_gaussians(
        g.means[0], g.rotations[0], g.scales[0], g.opacities[0], g.harmonics[0], torch.from_numpy(extrinsics),
        torch.from_numpy(intrinsics), w, h,
    )  # fmt: skip
    return out.depth.numpy(), out.alpha.numpy()


def test_scaled_gaussians_render_the_metric_depth_from_the_metric_cameras():
    h, w, s = 24, 32, 3.0
    ext, K = side_by_side_cameras(1, h, w)
    # a gently waving wall facing the camera: a splat blends its neighbours front to back, which pulls steep depth
    # towards the nearer side; the adapter reads depth as the distance along the ray, hence the cosine
    depth = wave_depth(1, h, w, amplitude=0.05) / ray_cosines(K[0], h, w)[None]
    ext[0, :, 3] = [0.3, -0.1, 0.2]  # away from the origin, so that the scaling moves the camera
    gaussians = pixel_gaussians(depth, ext, K)
    metric_ext = ext.copy()
    metric_ext[:, :, 3] *= s  # what the nested model's alignment does to the cameras ...
    metric_depth = depth * s  # ... and to the depth
    expected = metric_depth * ray_cosines(K[0], h, w)[None]  # the adapter places Gaussians along the unit ray
    inner = (0, slice(2, -2), slice(2, -2))  # the borders see fewer neighbours

    rendered, alpha = _rendered_depth(scale_gaussians(gaussians, torch.tensor([s])), metric_ext, K, h, w)
    assert (alpha[inner] > 0.9).all()
    np.testing.assert_allclose(rendered[inner], expected[inner], rtol=0.01)

    # upstream's state: the cameras and depth in metres, the Gaussians not
    rendered, _ = _rendered_depth(gaussians, metric_ext, K, h, w)
    assert np.median(np.abs(rendered[inner] / expected[inner] - 1)) > 0.5


def test_nested_network_scales_its_gaussians_with_its_depth():
    anyview = replace(
        tiny_da3(True).cfg,
        gaussian_head=GaussianDPTConfig(dim_in=64, features=16, out_channels=(8, 16, 32, 32)),
        gaussian_adapter=GaussianAdapterConfig(),
    )
    net = fill_(NestedDepthAnything3Net(anyview, tiny_da3(False).cfg), seed=5).eval()
    images = torch.randn(1, 2, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        branch = net.da3(images, infer_gs=True)
        out = net(images, infer_gs=True)
    scale = out.metric_scale
    assert scale.shape == (1,) and float(scale) != 1.0
    torch.testing.assert_close(out.gaussians.means, branch.gaussians.means * scale, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.gaussians.scales, branch.gaussians.scales * scale, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(out.gaussians.rotations, branch.gaussians.rotations)
    torch.testing.assert_close(out.gaussians.opacities, branch.gaussians.opacities)


def test_a_similarity_of_gaussians_and_cameras_renders_the_same_image():
    """Turning, scaling and moving the Gaussians (anisotropic, turned, with view-dependent colour) and the cameras
    by one similarity gives the same colours and the depth times the scale: centres, axes, quaternions in
    (w, x, y, z) and the SH bands all move together."""
    from anydepth.geometry.sim3 import Sim3, apply_sim3_to_extrinsics
    from anydepth.models.da3.gaussian_head import Gaussians, transform_gaussians

    g = torch.Generator().manual_seed(4)
    n = 60
    gaussians = Gaussians(
        means=(torch.rand(1, n, 3, generator=g) - 0.5) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([0, 0, 3.0]),
        scales=0.05 + 0.2 * torch.rand(1, n, 3, generator=g),
        rotations=torch.nn.functional.normalize(torch.randn(1, n, 4, generator=g), dim=-1),
        harmonics=torch.randn(1, n, 3, 9, generator=g),
        opacities=0.3 + 0.6 * torch.rand(1, n, generator=g),
    )
    ext = torch.eye(4)[:3].repeat(2, 1, 1)
    ext[1, 0, 3] = -0.4
    K = torch.tensor([[40.0, 0, 24], [0, 40.0, 16], [0, 0, 1]]).repeat(2, 1, 1)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    rotation = rotation * torch.det(rotation)
    sim3 = Sim3(scale=torch.tensor(1.7), rotation=rotation, translation=torch.tensor([0.3, -2.0, 5.0]))
    moved = transform_gaussians(gaussians, sim3.scale.reshape(1), rotation[None], sim3.translation[None])
    moved_ext = apply_sim3_to_extrinsics(sim3, ext)

    def render(gs, cams):
        return render_gaussians(gs.means[0], gs.rotations[0], gs.scales[0], gs.opacities[0], gs.harmonics[0], cams,
                                K, 48, 32)  # fmt: skip

    before, after = render(gaussians, ext), render(moved, moved_ext)
    assert (before.alpha > 0.5).float().mean() > 0.3
    torch.testing.assert_close(after.colors, before.colors, atol=2e-4, rtol=0)
    torch.testing.assert_close(after.alpha, before.alpha, atol=2e-4, rtol=0)
    hit = before.alpha > 0.01
    torch.testing.assert_close(after.depth[hit], 1.7 * before.depth[hit], atol=1e-3, rtol=1e-4)
    # turning them as if they were stored scalar last would turn the splats the wrong way: the image changes
    as_xyzw = Gaussians(gaussians.means, gaussians.scales, gaussians.rotations[..., [3, 0, 1, 2]],
                        gaussians.harmonics, gaussians.opacities)  # fmt: skip
    wrong = transform_gaussians(gaussians, torch.ones(1), rotation[None])
    wrong.rotations = transform_gaussians(as_xyzw, torch.ones(1), rotation[None]).rotations[..., [1, 2, 3, 0]]
    unscaled = apply_sim3_to_extrinsics(Sim3(torch.tensor(1.0), rotation, torch.zeros(3)), ext)
    assert (render(wrong, unscaled).colors - before.colors).abs().max() > 0.05
