"""Checkpoint reading, the transformers key table and strict loading, on synthetic state dicts."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from anydepth.checkpoints import (
    convert_hf_to_v2,
    detect_v2_layout,
    hf_to_v2_key_table,
    load_strict,
    read_state_dict,
)
from anydepth.errors import WeightsError
from anydepth.models.depth_anything_v2 import DepthAnythingV2Net
from tests.helpers.checkpoints import to_hf
from tests.helpers.networks import random_net, tiny_config

pytestmark = pytest.mark.torch113


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_hf_layout_round_trip(ffn):
    net = random_net(tiny_config(ffn=ffn))
    sd = net.state_dict()
    hf = to_hf(sd, depth=4)
    assert len(hf) == len(sd) + 4 * 2 * 2  # qkv weight+bias become three tensors each
    assert detect_v2_layout(hf) == "hf"
    back = convert_hf_to_v2(hf, depth=4, swiglu=ffn == "swiglu")
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    fresh = DepthAnythingV2Net(tiny_config(ffn=ffn))
    load_strict(fresh, back)
    x = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), net(x))


def test_hf_fusion_stage_is_reversed():
    table = dict(hf_to_v2_key_table(12))
    assert table["neck.fusion_stage.layers.0.projection"] == "depth_head.scratch.refinenet4.out_conv"
    assert table["neck.fusion_stage.layers.3.residual_layer1.convolution2"] == (
        "depth_head.scratch.refinenet1.resConfUnit1.conv2"
    )
    assert "neck.reassemble_stage.layers.2.resize" not in table


def test_hf_leftover_key_is_named():
    hf = to_hf(random_net(tiny_config()).state_dict(), depth=4)
    hf["neck.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"neck\.extra\.weight"):
        convert_hf_to_v2(hf, depth=4)
    del hf["neck.extra.weight"]
    del hf["backbone.encoder.layer.1.attention.attention.key.bias"]
    with pytest.raises(WeightsError, match="layer 1"):
        convert_hf_to_v2(hf, depth=4)


def test_read_formats(tmp_path):
    sd = random_net(tiny_config()).state_dict()
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("wrapped.pth", "w.safetensors"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(sd)
        assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_read_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pth: cannot read weights"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(tmp_path / "evil.pth")


def test_strict_loading_lists_missing_unexpected_and_shapes():
    net = DepthAnythingV2Net(tiny_config())
    sd = dict(random_net(tiny_config()).state_dict())
    sd.pop("pretrained.norm.weight")
    sd["depth_head.bogus"] = torch.zeros(1)
    sd["pretrained.cls_token"] = torch.zeros(1, 1, 7)
    with pytest.raises(WeightsError) as info:
        load_strict(net, sd, source="ckpt.pth")
    msg = str(info.value)
    assert "ckpt.pth" in msg
    assert "missing keys: pretrained.norm.weight" in msg
    assert "unexpected keys: depth_head.bogus" in msg
    assert "pretrained.cls_token (1, 1, 7) vs (1, 1, 32)" in msg
    assert "\n" not in msg


def test_skip_random_init_draws_nothing_in_its_thread_only():
    import threading

    from anydepth.checkpoints import skip_random_init

    original = torch.nn.init.kaiming_uniform_
    torch.manual_seed(0)
    before = torch.get_rng_state()
    other = {}
    with skip_random_init():
        DepthAnythingV2Net(tiny_config())  # Linear, Conv and the DINOv2 tables: nothing drawn
        assert torch.equal(torch.get_rng_state(), before)
        thread = threading.Thread(target=lambda: other.update(w=torch.nn.Linear(64, 64).weight.detach().clone()))
        thread.start()
        thread.join()
    assert torch.nn.init.kaiming_uniform_ is original  # torch.nn.init is as it was once every context closed
    bound = 1 / 8  # a Linear built by another thread meanwhile is initialised as always: U(-1/sqrt(64), 1/sqrt(64))
    assert other["w"].abs().max() <= bound and other["w"].std() > 0.5 * bound / 3**0.5


def test_strict_loading_takes_the_checkpoints_tensors_in_the_modules_dtype(tmp_path):
    from anydepth.checkpoints import _ASSIGN, skip_random_init

    sd = random_net(tiny_config()).state_dict()
    half = {k: v.half() for k, v in sd.items()}
    key = "depth_head.scratch.output_conv2.2.weight"
    with skip_random_init():
        fresh = DepthAnythingV2Net(tiny_config())
    load_strict(fresh, half, assign=True)
    for k, v in fresh.state_dict().items():
        assert v.dtype == sd[k].dtype and torch.equal(v, half[k].float()), k
    # without assign, the caller's tensors stay the caller's (a state dict of another network shares its storage)
    shared = dict(sd)
    shared["depth_head.scratch.output_conv2.0.bias"] = torch.zeros_like(sd["depth_head.scratch.output_conv2.0.bias"])
    shared["depth_head.scratch.output_conv2.2.bias"] = torch.zeros(1)
    tied = DepthAnythingV2Net(tiny_config())
    value = sd[key].clone()
    shared[key] = value
    load_strict(tied, shared)
    with torch.no_grad():
        tied.depth_head.scratch.output_conv2[2].weight.add_(1.0)
    assert torch.equal(value, sd[key])  # the caller's tensor is not the module's when it is written to
    if _ASSIGN:
        tensor = torch.arange(4.0)
        module = torch.nn.Module()
        module.a, module.b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
        load_strict(module, {"a": tensor, "b": tensor}, assign=True)  # one tensor, two keys: two weights
        with torch.no_grad():
            module.a.add_(1.0)
        assert torch.equal(module.b, torch.arange(4.0))


def test_legacy_pickle_format_still_reads(tmp_path):
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    legacy = tmp_path / "legacy.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)  # torch < 1.6 files cannot be mapped
    current = tmp_path / "current.pth"
    torch.save(sd, current)
    assert torch.equal(read_state_dict(legacy)["w"], sd["w"])
    assert torch.equal(read_state_dict(current)["w"], sd["w"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_taken_from_a_mapped_file_train_without_touching_it(tmp_path, suffix):
    """The loaded tensors may be the file's mapped pages: writing to them (an optimizer step) changes the network,
    never the file."""
    from anydepth.checkpoints import skip_random_init

    sd = {k: v.contiguous() for k, v in random_net(tiny_config()).state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file(sd, str(path))
    before = path.read_bytes()
    with skip_random_init():
        net = DepthAnythingV2Net(tiny_config())
    load_strict(net, read_state_dict(path), assign=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    key = "depth_head.scratch.output_conv2.2.weight"
    assert torch.equal(net.state_dict()[key], sd[key] + 1.0)
    assert path.read_bytes() == before
