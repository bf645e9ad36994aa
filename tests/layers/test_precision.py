"""The precision policy: applied once to a network, it configures the mixed regions and keeps the float32 ones; its
``fast_paths=False`` and the process switch force the same plain twins; exports undo a pipeline's policy."""

from __future__ import annotations

import pytest
import torch

from anydepth.layers.linear import Linear
from anydepth.layers.precision import PrecisionPolicy, fast_paths
from anydepth.models.dinov2 import Block, PatchEmbed
from tests.helpers.networks import random_net, tiny_config, tiny_da3

pytestmark = pytest.mark.torch113

needs_cpu_bf16 = pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")
BF16 = PrecisionPolicy.for_precision("bf16")


def test_policies_of_the_precisions():
    assert PrecisionPolicy.for_precision("fp32") == PrecisionPolicy()
    assert BF16.compute_dtype == torch.bfloat16 and BF16.mixed and BF16.head_dtype == torch.bfloat16
    fp16 = PrecisionPolicy.for_precision("fp16")
    assert fp16.mixed and fp16.head_dtype is None  # the DA3 heads stay float32 under fp16
    assert PrecisionPolicy.for_precision("bf16", mixed_head=False).head_dtype is None
    assert not PrecisionPolicy.reference().fast_paths and not PrecisionPolicy.reference().mixed
    assert BF16.float32() == PrecisionPolicy() and not PrecisionPolicy(fast_paths=False).float32().fast_paths
    with pytest.raises(ValueError, match="unknown precision"):
        PrecisionPolicy.for_precision("auto")  # the pipelines resolve it first
    with pytest.raises(ValueError, match="compute_dtype"):
        PrecisionPolicy(compute_dtype=torch.float64)


def test_apply_configures_the_mixed_regions_and_keeps_the_float32_ones():
    net = tiny_da3(anyview=True)
    assert BF16.apply(net) is net and net.precision_policy == BF16
    backbone = net.backbone
    assert backbone.compute_dtype == torch.bfloat16 and backbone.partial_global_rope
    assert all(isinstance(m, Block) and m.fused_residual for m in backbone.pretrained.blocks)
    assert backbone.pretrained.patch_embed.keep_float32
    linears = [m for m in backbone.modules() if isinstance(m, Linear)]
    assert linears and all(m.compute_dtype == torch.bfloat16 for m in linears)
    assert net.head.reassembly_dtype == torch.bfloat16
    # the camera encoder's blocks run in a float32 region: the float32 form of the policy
    camera_blocks = [m for m in net.cam_enc.modules() if isinstance(m, Block)]
    assert camera_blocks and not any(m.fused_residual for m in camera_blocks)
    assert all(m.compute_dtype is None for m in net.cam_enc.modules() if isinstance(m, Linear))
    # another policy replaces it; the same one again does nothing
    PrecisionPolicy().apply(net)
    assert backbone.compute_dtype is None and net.head.reassembly_dtype is None
    assert not any(isinstance(m, Block) and m.fused_residual for m in net.modules())
    assert not backbone.pretrained.patch_embed.keep_float32

    v2 = BF16.apply(random_net(tiny_config()))
    assert v2.pretrained.compute_dtype == torch.bfloat16
    assert not any(getattr(m, "compute_dtype", None) for m in v2.depth_head.modules())  # float32 head


def _run_da3(net, policy, x):
    policy.apply(net)
    with torch.inference_mode(), policy.autocast(x.device):
        out = net(x)
    return out.depth, out.depth_conf, out.extrinsics


@needs_cpu_bf16
@pytest.mark.precision
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_policy_and_the_process_switch_force_the_same_plain_twins(precision, fast_paths_on):
    """Every fast path obeys both switches: any path that one of them missed would make the two runs differ."""
    net = tiny_da3(anyview=True)
    x = torch.randn(1, 3, 3, 28, 42, generator=torch.Generator().manual_seed(4))
    fast = _run_da3(net, PrecisionPolicy.for_precision(precision), x)
    by_policy = _run_da3(net, PrecisionPolicy.for_precision(precision, fast_paths=False), x)
    with fast_paths(False):
        by_process = _run_da3(net, PrecisionPolicy.for_precision(precision), x)
    for a, b in zip(by_policy, by_process):
        assert torch.equal(a, b)
    if precision == "bf16":  # and the switches changed something: fast paths ran in the first run
        assert not torch.equal(fast[0], by_policy[0])


@needs_cpu_bf16
@pytest.mark.precision
def test_a_configured_network_gives_the_policy_numbers_however_it_is_called():
    """The mixed regions enter the policy's autocast themselves: a bare call equals the pipeline's call."""
    net = BF16.apply(random_net(tiny_config()))
    x = torch.randn(1, 3, 42, 56, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        bare = net(x)
        with BF16.autocast(x.device):
            wrapped = net(x)
        reference = PrecisionPolicy().apply(net)(x)
    assert bare.dtype == torch.float32
    assert torch.equal(bare, wrapped) and not torch.equal(bare, reference)


@needs_cpu_bf16
@pytest.mark.precision
def test_patch_embedding_region_follows_the_policy():
    embed = BF16.apply(PatchEmbed(14, 8).eval())
    x = torch.randn(1, 3, 28, 28)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert embed(x).dtype == torch.float32
        assert PrecisionPolicy.for_precision("bf16", float32_patch_embed=False).apply(embed)(x).dtype == torch.bfloat16


@torch.no_grad()
def test_an_export_undoes_the_policy_a_pipeline_set():
    from anydepth.deploy.export import StaticDepthAnythingV2

    net = random_net(tiny_config())
    x = torch.randn(1, 3, 42, 56, generator=torch.Generator().manual_seed(6))
    reference = net(x)
    BF16.apply(net)  # as MonoDepthModel(net, ..., "bf16") does
    static = StaticDepthAnythingV2(net, 42, 56)
    assert static.net.precision_policy == PrecisionPolicy(fast_paths=False)
    torch.testing.assert_close(static(x), reference, rtol=1e-5, atol=1e-5)
    assert net.precision_policy == BF16  # the network itself keeps its policy
