"""Network modules on tiny configs: shapes, determinism, batching, attention paths, heads."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from anydepth.layers import HAS_SDPA, attention, set_fused_attention
from anydepth.layers.mlp import swiglu_hidden_features
from anydepth.layers.precision import PrecisionPolicy
from anydepth.models.depth_anything_v2 import DepthAnythingV2Config, DepthAnythingV2Net
from anydepth.models.dinov2 import DinoVisionTransformer, PatchEmbed
from tests.helpers.networks import random_net, tiny_config

pytestmark = pytest.mark.torch113


def _images(b=2, h=56, w=84, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g)


@torch.no_grad()
def test_output_shape_and_range():
    net = random_net(tiny_config())
    out = net(_images(2, 56, 84))
    assert out.shape == (2, 56, 84)
    assert out.dtype == torch.float32
    assert (out >= 0).all()  # relative head ends in ReLU
    assert out.std() > 0


@torch.no_grad()
def test_metric_head_is_bounded_by_max_depth():
    net = random_net(tiny_config(max_depth=20.0))
    out = net(_images(1, 42, 42))
    assert out.min() > 0 and out.max() < 20.0
    assert out.std() > 0


@torch.no_grad()
def test_deterministic_and_batched_equals_single():
    net = random_net(tiny_config())
    x = _images(3, 42, 56)
    a, b = net(x), net(x)
    assert torch.equal(a, b)
    singles = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(a, singles, rtol=1e-5, atol=1e-5)  # convolution algorithms may differ by batch size


@pytest.mark.precision
@pytest.mark.skipif(not HAS_SDPA, reason="needs scaled_dot_product_attention")
@torch.no_grad()
def test_fused_attention_matches_explicit_path():
    q, k, v = torch.randn(3, 2, 4, 7, 8).unbind(0)
    torch.testing.assert_close(attention(q, k, v, fused=True), attention(q, k, v, fused=False), rtol=1e-5, atol=1e-6)
    net = random_net(tiny_config(ffn="swiglu"))
    x = _images(1, 56, 70)
    fused = net(x)
    set_fused_attention(net, False)
    assert not any(getattr(m, "fused", False) for m in net.modules())
    explicit = net(x)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)


def test_explicit_attention_is_hand_computable():
    # one query attending to two keys with scores 0 and log(3) -> weights 1/4 and 3/4
    d = 4
    q = torch.zeros(1, 1, 1, d)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 2, d)
    k[0, 0, 1, 0] = torch.log(torch.tensor(3.0)) * d**0.5
    v = torch.tensor([[[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]]])
    out = attention(q, k, v, fused=False)
    torch.testing.assert_close(out[0, 0, 0, :2], torch.tensor([0.25, 0.75]))


def test_swiglu_hidden_width_of_giant():
    # DINOv2-giant: 1536 * 4 * 2/3 = 4096 hidden units
    assert swiglu_hidden_features(1536) == 4096
    net = DepthAnythingV2Net(tiny_config(ffn="swiglu"))
    assert net.pretrained.blocks[0].mlp.w12.weight.shape == (2 * swiglu_hidden_features(32), 32)


@torch.no_grad()
def test_position_embedding_resize():
    vit = random_net(tiny_config()).pretrained
    n = vit.cfg.pos_grid
    assert vit.interpolate_pos_encoding(n, n) is vit.pos_embed  # the stored grid is used as is
    pos = vit.interpolate_pos_encoding(3, 8)
    assert pos.shape == (1, 1 + 3 * 8, 32)
    torch.testing.assert_close(pos[:, 0], vit.pos_embed[:, 0])  # class position untouched
    # DINOv2's formula: bicubic with scale (grid + 0.1) / stored grid, not a resize to the size
    grid = vit.pos_embed[:, 1:].reshape(1, n, n, 32).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=(3.1 / n, 8.1 / n), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 24, 32))
    by_size = F.interpolate(grid, size=(3, 8), mode="bicubic", align_corners=False)
    assert not torch.allclose(ref, by_size)


def test_resized_position_embedding_is_cached_until_the_weights_change():
    from anydepth.models.dinov2 import resize_pos_embed

    vit = random_net(tiny_config()).pretrained
    with torch.inference_mode():
        first = vit.interpolate_pos_encoding(3, 8)
        assert vit.interpolate_pos_encoding(3, 8) is first  # reused while nothing changed
        assert vit.interpolate_pos_encoding(4, 8) is not first
    torch.testing.assert_close(first, resize_pos_embed(vit.pos_embed, 3, 8, 0.1), rtol=0, atol=0)
    # new weights (load_state_dict writes in place) are picked up
    state = vit.state_dict()
    state["pos_embed"] = state["pos_embed"] * 2
    vit.load_state_dict(state)
    with torch.no_grad():
        again = vit.interpolate_pos_encoding(3, 8)
    assert again is not first
    torch.testing.assert_close(again[:, 1:], first[:, 1:] * 2)
    # with grad enabled nothing comes from the cache, frozen embedding or not
    vit.pos_embed.requires_grad_(False)
    with torch.enable_grad():
        assert vit.interpolate_pos_encoding(3, 8) is not again
    vit.pos_embed.requires_grad_(True)
    with torch.enable_grad():
        trained = vit.interpolate_pos_encoding(3, 8)
    assert trained.requires_grad and trained is not again


def test_patch_multiple_is_checked():
    vit = DinoVisionTransformer(tiny_config().encoder)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vit.prepare_tokens(torch.zeros(1, 3, 50, 56))


@torch.no_grad()
def test_intermediate_layers_are_normed_and_split():
    vit = random_net(tiny_config()).pretrained
    feats = vit.get_intermediate_layers(_images(2, 28, 42), (0, 3))
    assert len(feats) == 2
    patches, cls = feats[1]
    assert patches.shape == (2, 2 * 3, 32) and cls.shape == (2, 32)
    with pytest.raises(ValueError):
        vit.get_intermediate_layers(_images(1, 28, 28), (9,))


@pytest.mark.parametrize(
    "encoder,params_m",
    [("vits", 24.8), ("vitb", 97.5), ("vitl", 335.3), ("vitg", 1258.1)],
)
def test_official_sizes_match_published_parameter_counts(encoder, params_m):
    from anydepth.presets import PRESETS

    if not hasattr(torch.device("cpu"), "__enter__"):
        pytest.skip("building on the meta device needs torch >= 2.0")
    with torch.device("meta"):
        net = DepthAnythingV2Net(DepthAnythingV2Config.from_encoder(encoder))
    count = sum(p.numel() for p in net.parameters()) / 1e6
    assert abs(count - params_m) < 0.1
    preset = next(p for p in PRESETS.values() if p.encoder == encoder)
    assert abs(preset.params - count) < 0.1


@pytest.mark.parametrize("n", [1, 3])
def test_token_map_is_channels_last_with_canonical_strides(n):
    from anydepth.layers.dpt_blocks import token_map

    tokens = torch.randn(n, 4 * 5, 8)
    got = token_map(tokens, 4, 5)
    torch.testing.assert_close(got, tokens.transpose(1, 2).reshape(n, 8, 4, 5), rtol=0, atol=0)
    # canonical NHWC strides, also at n = 1, where oneDNN otherwise falls back to NCHW for every later conv
    assert got.stride() == (4 * 5 * 8, 1, 5 * 8, 8)
    conv = torch.nn.Conv2d(8, 6, 3, padding=1)
    with torch.no_grad():
        assert conv(got).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.precision
@pytest.mark.parametrize("grad", [False, True])
def test_fused_convolutions_equal_the_separate_operations(grad, fast_paths_on):
    from anydepth.layers.dpt_blocks import OutputBranch, ResidualConvUnit, conv_add, conv_relu

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 10, 12).contiguous(memory_format=torch.channels_last)
    other = torch.randn(2, 8, 10, 12)
    # The same arithmetic; equal to the last bit where oneDNN runs the plain and the fused convolution with one
    # kernel (so far on every CPU tried), within float32 rounding where it picks another kernel for the post-op.
    close = {"rtol": 1e-5, "atol": 1e-6}
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(conv_relu(conv, x), F.relu(conv(x)), **close)
        torch.testing.assert_close(conv_add(conv, x, other), conv(x) + other, **close)
        unit = ResidualConvUnit(8)
        reference = unit.conv2(F.relu(unit.conv1(F.relu(x)))) + x
        torch.testing.assert_close(unit(x), reference, **close)
        branch = OutputBranch(8, 4, 2)
        torch.testing.assert_close(branch(x), branch[2](F.relu(branch[0](x))), **close)
    assert set(branch.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # the official keys


@pytest.mark.precision
@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 autocast needs torch >= 2.0")
def test_output_branch_on_a_bf16_map_gives_float32_logits():
    from anydepth.layers.dpt_blocks import OutputBranch

    torch.manual_seed(0)
    branch = OutputBranch(8, 4, 2).eval()
    x = torch.randn(2, 8, 6, 7)
    with torch.inference_mode():
        reference = branch(x)
        mixed = branch(x.bfloat16())
        # what the mixed path computes: the 3x3 conv in bf16, then the logits in float32 from its rounded output
        hidden = F.conv2d(x.bfloat16(), branch[0].weight.bfloat16(), branch[0].bias.bfloat16(), padding=1).relu()
        expected = branch[2](hidden.float())
    assert mixed.dtype == torch.float32 and mixed.shape == (2, 2, 6, 7)
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(mixed, reference)
    torch.testing.assert_close(mixed, reference, rtol=0.05, atol=0.05)


@pytest.mark.precision
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_branch_takes_an_added_map_into_its_first_convolution(dtype, fast_paths_on):
    from anydepth.layers import dpt_blocks

    if dtype == torch.bfloat16 and int(torch.__version__.split(".")[0]) < 2:
        pytest.skip("CPU bf16 autocast needs torch >= 2.0")
    torch.manual_seed(0)
    branch = dpt_blocks.OutputBranch(8, 4, 2).eval()
    x = torch.randn(3, 8, 9, 11).contiguous(memory_format=torch.channels_last).to(dtype)
    extra = torch.randn(8, 9, 11).to(dtype)

    def mean_relative(a, b):
        return float((a - b).abs().mean() / b.abs().mean())

    for scale in (1.0, 2.0):
        if scale != 1.0:  # new weights (load_state_dict bumps their versions): the cached conv(extra) follows
            branch.load_state_dict({k: v * scale for k, v in branch.state_dict().items()})
        with torch.inference_mode():
            added = branch(x.clone().add_(extra))  # the addition over the whole map, then the branch
            exact = branch(x.float() + extra.float())
            got = branch.forward_plus(x.clone(), extra)
        assert got.dtype == torch.float32 and got.shape == (3, 2, 9, 11)
        fused = dpt_blocks._FUSED_CONV is not None and (dtype == torch.float32 or dpt_blocks._bf16_conv_supported())
        assert (branch._plus_cache is not None) == fused
        if dtype == torch.float32:
            torch.testing.assert_close(got, added, rtol=1e-5, atol=1e-5)
        else:  # bf16 rounds x + extra once less: as close to float32 as the addition over the map, or closer
            assert mean_relative(got, exact) < 1.25 * mean_relative(added, exact) < 0.02
    with torch.enable_grad():  # the plain path: the same numbers
        plain = branch.forward_plus(x.float().clone(), extra.float())
    torch.testing.assert_close(plain, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.precision
@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="CPU bf16 autocast needs torch >= 2.0")
def test_patch_embedding_stays_float32_under_bf16_as_a_matmul(fast_paths_on):
    torch.manual_seed(0)
    embed = PatchEmbed(14, 64).eval()
    unconfigured = copy.deepcopy(embed)
    PrecisionPolicy.for_precision("bf16").apply(embed)
    x = torch.randn(2, 3, 28, 42)
    calls = []
    fast_path = embed._patch_matmul
    embed._patch_matmul = lambda *args: calls.append(1) or fast_path(*args)
    seen = []
    with torch.inference_mode():
        reference = unconfigured(x)  # float32: the convolution
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = embed(x)
            handle = embed.proj.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
            hooked = embed(x)  # hooks must see the conv run: no matmul path
            handle.remove()
            odd = embed(torch.randn(1, 3, 30, 42))  # not a multiple of the patch: the convolution floors it
            # what autocast would do: the convolution with bf16 weights and inputs
            bf16_weights = F.conv2d(x.bfloat16(), embed.proj.weight.bfloat16(), embed.proj.bias.bfloat16(), stride=14)
            bf16_weights = bf16_weights.flatten(2).transpose(1, 2)
    assert len(calls) == 1
    assert fast.shape == hooked.shape == reference.shape == (2, 6, 64)
    # the weights' precision, not autocast's, inside and out: bf16 weights moved DA3 depth by about 1%
    assert fast.dtype == hooked.dtype == odd.dtype == torch.float32 and seen == [torch.float32]
    assert odd.shape == (1, 6, 64)
    torch.testing.assert_close(hooked, reference, rtol=0, atol=0)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)  # the same products, summed in another order
    assert (bf16_weights.float() - reference).abs().max() > 100 * (fast - reference).abs().max()
    # without the policy's float32 region, autocast's convolution with bf16 weights
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = PrecisionPolicy.for_precision("bf16", float32_patch_embed=False).apply(unconfigured)(x)
    torch.testing.assert_close(rounded, bf16_weights, rtol=0, atol=0)
