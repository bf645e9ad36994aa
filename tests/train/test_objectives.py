"""Each family's objective on its tiny network: a finite loss whose gradient reaches every part it trains (no
module blocks gradients), and predictions of the kind the evaluation expects."""

from __future__ import annotations

import pytest
import torch

from anydepth.errors import InputError
from anydepth.presets import get_preset
from anydepth.train import SyntheticSource, TrainingDataset, objective_for
from anydepth.train.objectives import DA3Objective
from tests.helpers.networks import random_net, tiny_config, tiny_da3, tiny_vda

SIZE = (42, 56)


@pytest.fixture(scope="module")
def source():
    return SyntheticSource(seed=1, scenes=2, views=4, width=72, height=54, kind="mixed")


def _batch(source, preset, objective, cameras=True, n=1):
    data = TrainingDataset(source, SIZE, preset.mean, preset.std, frames=objective.frames, clip=objective.clip)
    batch = data.batch(list(range(n)))
    if not cameras:
        batch.extrinsics = batch.intrinsics = None
    return batch


def _grads(net, objective, batch):
    net.train()
    loss, terms = objective.loss(net, batch)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    return terms, missing


CASES = [
    ("dav2-small", lambda: random_net(tiny_config()), "disparity", {"ssi_gm"}),
    ("dav2-metric-indoor-small", lambda: random_net(tiny_config(max_depth=20.0)), "metric", {"silog"}),
    ("da3mono-large", lambda: tiny_da3(anyview=False), "depth", {"ssi_gm"}),
    ("da3metric-large", lambda: tiny_da3(anyview=False), "metric", {"silog"}),
    ("da3-small", lambda: tiny_da3(anyview=True), "depth", {"depth", "ray", "camera"}),
    ("vda-small", lambda: tiny_vda(), "disparity", {"spatial", "tgm"}),
]


@pytest.mark.parametrize("name, make, kind, terms", CASES, ids=[c[0] for c in CASES])
def test_loss_reaches_every_trained_part(source, name, make, kind, terms):
    preset, net = get_preset(name), make()
    objective = objective_for(preset, net)
    batch = _batch(source, preset, objective)
    got, missing = _grads(net, objective, batch)
    assert set(got) == terms
    # parameters without a gradient: unused by design, upstream as here (the mask token; the first residual unit of
    # the deepest fusion block, which has no skip input; the aux ray levels whose outputs upstream drops; the sky
    # head; the camera encoder without pose conditioning)
    unused = ("mask_token", "output_conv1_aux.0", "output_conv1_aux.1", "output_conv1_aux.2", "sky_output", "cam_enc",
              "output_conv2_aux.0.0", "output_conv2_aux.1.0", "output_conv2_aux.2.0", "output_conv2_aux.0.5",
              "output_conv2_aux.1.5", "output_conv2_aux.2.5", "refinenet4.resConfUnit1")  # fmt: skip
    assert [n for n in missing if not any(u in n for u in unused)] == []
    with torch.no_grad():
        pred, pred_kind = objective.predict(net.eval(), batch)
    assert pred_kind == kind
    assert pred.shape == (batch.images.shape[0] * batch.images.shape[1], *SIZE)


def test_da3_anyview_trains_depth_alone_without_cameras_and_the_camera_encoder_when_conditioned(source):
    preset, net = get_preset("da3-small"), tiny_da3(anyview=True)
    objective = objective_for(preset, net)
    terms, _ = _grads(net, objective, _batch(source, preset, objective, cameras=False))
    assert set(terms) == {"depth"}
    net.zero_grad()
    conditioned = DA3Objective(condition_on_cameras=True)
    _, missing = _grads(net, conditioned, _batch(source, preset, conditioned))
    assert not [n for n in missing if n.startswith("cam_enc.")]


def test_da3_metric_needs_intrinsics(source):
    preset, net = get_preset("da3metric-large"), tiny_da3(anyview=False)
    objective = objective_for(preset, net)
    assert objective.needs_intrinsics
    with pytest.raises(InputError, match="intrinsics"):
        objective.loss(net, _batch(source, preset, objective, cameras=False))


def test_families_that_cannot_be_fine_tuned_say_so():
    from anydepth.models.da3.network import NestedDepthAnything3Net

    with pytest.raises(InputError, match="cannot be fine-tuned"):
        objective_for(get_preset("depthcrafter"), torch.nn.Linear(1, 1))
    nested = NestedDepthAnything3Net.__new__(NestedDepthAnything3Net)
    torch.nn.Module.__init__(nested)
    with pytest.raises(InputError, match="two networks"):
        objective_for(get_preset("da3nested-giant-large"), nested)


def test_from_scratch_relu_heads_start_alive():
    from anydepth.models.depth_anything_v2 import DepthAnythingV2Net
    from anydepth.models.video_depth_anything import VideoDepthAnythingNet

    torch.manual_seed(0)
    v2 = DepthAnythingV2Net(tiny_config())
    vda = VideoDepthAnythingNet(tiny_vda().cfg)
    x = torch.randn(2, 3, 42, 56)
    with torch.no_grad():
        assert (v2.eval()(x) > 0).float().mean() < 0.9  # PyTorch's initialisation clips many pixels to zero
        objective_for(get_preset("dav2-small"), v2).prepare_from_scratch(v2)
        objective_for(get_preset("vda-small"), vda).prepare_from_scratch(vda)
        assert (v2(x) > 0).all() and (vda.eval()(x[None]) > 0).all()
