"""DA3 under bf16: backbone, reassembly and main map in bf16; patch embedding, fusion and logits in float32; depth
within 1% of float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anydepth
from anydepth.layers.precision import PrecisionPolicy, active_autocast_dtype, reassembly_precision
from anydepth.models.da3.heads import DPTSkyConfig, DPTSkyHead, DualDPTHead
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.presets import get_preset
from tests.helpers.random_weights import fill_

needs_cpu_bf16 = pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 needs torch >= 2.0")
pytestmark = [pytest.mark.precision, pytest.mark.torch113]


def _views(n=3, h=120, w=160):
    rng = np.random.RandomState(1)
    yy, xx = np.mgrid[0:h, 0:w]
    return [
        np.clip(np.stack([xx * 1.5 + 10 * i, yy * 2, (xx + yy)], -1) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(
            np.uint8
        )
        for i in range(n)
    ]


def _conv_dtypes(head: torch.nn.Module) -> dict:
    """Record the input dtype of every convolution of ``head`` by module name, on the next forward."""
    seen, handles = {}, []
    for name, module in head.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hook = lambda m, args, out, name=name: seen.__setitem__(name, out.dtype)  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    return seen, handles


@needs_cpu_bf16
@pytest.mark.parametrize("n_views, height, width, process_res", [(3, 120, 160, 154), (4, 480, 640, 504)])
def test_bf16_depth_within_one_percent_of_fp32(da3_small_folder, n_views, height, width, process_res):
    """At a small size and at the benchmark's size (4 x 640x480 at 504, where a bf16 fusion measured 1.29%)."""
    folder, _ = da3_small_folder
    fp32 = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    bf16 = MultiViewModel(fp32.net, fp32.preset, fp32.device, "bf16")
    views = _views(n_views, height, width)
    a, b = fp32.infer(views, process_res=process_res), bf16.infer(views, process_res=process_res)
    assert b.depth.dtype == np.float32 and b.depth.shape == a.depth.shape
    relative = np.abs(a.depth - b.depth) / np.abs(a.depth)
    print(f"mean relative depth error {relative.mean():.4%}")
    assert relative.mean() <= 0.01
    assert np.corrcoef(a.depth.ravel(), b.depth.ravel())[0, 1] > 0.999
    assert (np.abs(a.conf - b.conf) / a.conf).mean() <= 0.01
    # and bf16 really ran: the maps differ from float32
    assert relative.max() > 0


@needs_cpu_bf16
def test_bf16_depth_within_one_percent_on_the_hardest_weights_found():
    """Of eight random-weight draws (benchmarks/RESULTS.md), seed 0 and the fixture's seed 11 (the test above)
    moved furthest from float32 under this policy: 0.80% and 0.83%. Seed 0 read 0.93% under the previous policy
    (bf16 patch embedding). Its depths span e^-6..e^-2, where one logit error is a large relative error."""
    preset = get_preset("da3-small")
    net = fill_(anydepth.build_network(preset), 0).eval()
    cpu = torch.device("cpu")
    views = _views(4, 480, 640)
    a = MultiViewModel(net, preset, cpu, "fp32").infer(views, process_res=504).depth
    b = MultiViewModel(net, preset, cpu, "bf16").infer(views, process_res=504).depth
    relative = np.abs(a - b) / a
    print(f"mean relative depth error {relative.mean():.4%}")
    assert 0 < relative.mean() <= 0.01


@needs_cpu_bf16
def test_reassembly_and_main_map_run_in_bf16_fusion_and_logits_in_float32(da3_small_folder):
    folder, _ = da3_small_folder
    model = anydepth.load_model("da3-small", weights=folder, device="cpu", precision="fp32")
    head = model.net.head
    assert isinstance(head, DualDPTHead)
    x = torch.from_numpy(np.stack(_views(2, 56, 70))).permute(0, 3, 1, 2)[None].float() / 255
    for mixed in (False, True):
        policy = PrecisionPolicy.for_precision("bf16" if mixed else "fp32")
        policy.apply(model.net)
        seen, handles = _conv_dtypes(head)
        try:
            with torch.inference_mode(), policy.autocast(x.device):
                model.net(x, use_ray_pose=True)
        finally:
            for h in handles:
                h.remove()
        low = torch.bfloat16 if mixed else torch.float32
        for name in (
            "projects.0",
            "resize_layers.0",
            "resize_layers.3",
            "scratch.layer1_rn",
            "scratch.layer4_rn",
            "scratch.output_conv1",
            "scratch.output_conv2.0",
        ):
            assert seen[name] == low, name
        # the fusion, and the conv that gives the logits
        for name in (
            "scratch.refinenet4.resConfUnit2.conv1",
            "scratch.refinenet1.resConfUnit2.conv2",
            "scratch.refinenet1.out_conv",
            "scratch.output_conv2.2",
        ):
            assert seen[name] == torch.float32, name
        # the ray branch (camera solve) stays float32 end to end
        assert seen["scratch.refinenet1_aux.out_conv"] == torch.float32
        assert seen["scratch.output_conv2_aux.3.5"] == torch.float32


@needs_cpu_bf16
def test_sky_head_reassembly_precision():
    torch.manual_seed(0)
    head = DPTSkyHead(DPTSkyConfig(dim_in=32, features=16, out_channels=(8, 16, 16, 16))).eval()
    tokens = [(torch.randn(1, 2, 12, 32), torch.randn(1, 2, 32)) for _ in range(4)]
    with torch.inference_mode():
        ref = head(tokens, 42, 56)
        mixed = PrecisionPolicy.for_precision("bf16").apply(head)(tokens, 42, 56)
    assert mixed.depth.dtype == torch.float32 and mixed.sky.dtype == torch.float32
    assert not torch.equal(ref.depth, mixed.depth)  # the reassembly did run in bf16
    torch.testing.assert_close(mixed.depth, ref.depth, rtol=0.05, atol=0)


def test_reassembly_precision_is_a_no_op_for_float32():
    cpu = torch.device("cpu")
    for dtype in (None, torch.float32):
        with reassembly_precision(cpu, dtype):
            assert active_autocast_dtype(cpu) is None
    with reassembly_precision(cpu, torch.bfloat16):
        assert active_autocast_dtype(cpu) == torch.bfloat16


@needs_cpu_bf16
def test_bf16_queries_and_keys_reach_attention_in_bf16(monkeypatch):
    """The RoPE tables of a mixed-precision backbone are built in its compute dtype: float32 tables promoted the
    rotated queries and keys to float32, which autocast then cast back to bf16 for SDPA (two passes per layer)."""
    import importlib

    attention_module = importlib.import_module("anydepth.layers.attention")
    preset = get_preset("da3-small")
    net = fill_(anydepth.build_network(preset), 0).eval()
    seen = []
    plain = attention_module.attention

    def recording(q, k, v, fused=True):
        seen.append((q.dtype, k.dtype, v.dtype))
        return plain(q, k, v, fused)

    monkeypatch.setattr(attention_module, "attention", recording)
    MultiViewModel(net, preset, torch.device("cpu"), "bf16").infer(_views(3), process_res=154)
    assert len(seen) == len(net.backbone.pretrained.blocks) and set(seen) == {(torch.bfloat16,) * 3}
    seen.clear()
    MultiViewModel(net, preset, torch.device("cpu"), "fp32").infer(_views(3), process_res=154)
    assert set(seen) == {(torch.float32,) * 3}
