"""Exports (static wrappers, TorchScript / ONNX / OpenVINO, manifests, refusals) and their runtimes against the
PyTorch path. ONNX Runtime and OpenVINO tests skip where the `deploy` extra is not installed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import anydepth
from anydepth.deploy.backends import ExportedMonoDepthModel, ExportedMultiViewModel, load_exported_model
from anydepth.deploy.export import (
    ExportRequest,
    StaticDepthAnything3,
    StaticDepthAnythingV2,
    check_request,
    export_model,
    export_network,
    graph_op_kinds,
    parse_size,
)
from anydepth.deploy.manifest import Manifest, manifest_path, read_manifest
from anydepth.errors import InputError, MissingDependencyError, ShapeError, WeightsError
from anydepth.pipelines.da3_preprocess import preprocess_da3
from anydepth.pipelines.mono import MonoDepthModel
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.presets import get_preset
from tests.helpers.inputs import photo_array
from tests.helpers.networks import random_net, tiny_config, tiny_da3, tiny_vda
from tests.helpers.parity import p99_relative

pytestmark = pytest.mark.torch113

RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino", "torchscript": "torchscript"}


def _needs(fmt):
    """Skip unless the packages that export and run ``fmt`` are installed."""
    if fmt in ("onnx", "openvino"):
        pytest.importorskip("onnx", reason="onnx not installed: pip install 'anydepth[deploy]'")
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'anydepth[deploy]'")
    if fmt == "openvino":
        pytest.importorskip("openvino", reason="openvino not installed: pip install 'anydepth[deploy]'")


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "model, request_kwargs, needle",
    [
        ("dav2-small", dict(format="onnx", height=500, width=518), "500 is not a positive multiple of 14"),
        ("dav2-small", dict(format="onnx", height=518, width=0), "not a positive multiple of 14"),
        ("dav2-small", dict(format="tensorrt", height=518, width=518), "unknown export format"),
        ("dav2-small", dict(format="neuron", height=518, width=518, dynamic=True), "fixed at compile time"),
        ("dav2-small", dict(format="torchscript", height=518, width=518, dynamic=True), "fixed at compile time"),
        ("dav2-small", dict(format="onnx", height=518, width=518, batch=0), "batch must be at least 1"),
        ("dav2-small", dict(format="onnx", height=518, width=518, views=2), "one image at a time"),
        ("da3mono-large", dict(format="onnx", height=518, width=518, views=3), "one image at a time"),
        ("da3nested-giant-large", dict(format="onnx", height=504, width=504), "cannot be exported"),
        ("da3nested-giant-large", dict(format="neuron", height=504, width=504), "cannot be exported"),
        ("da3-giant", dict(format="neuron", height=504, width=504), "too large for AWS Inferentia"),
        ("da3-small", dict(format="onnx", height=504, width=504, views=4, ref_view_strategy="best"), "strategy"),
        ("dav2-small", dict(format="onnx", height=8190, width=518), "not supported"),
    ],
)
def test_requests_a_target_cannot_take_are_refused(model, request_kwargs, needle):
    with pytest.raises(InputError) as info:
        check_request(get_preset(model), ExportRequest(**request_kwargs))
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_refusals_come_before_any_weights_are_read(tmp_path):
    missing = tmp_path / "nowhere.pth"  # would fail with a WeightsError if it were read
    with pytest.raises(InputError, match="multiple of 14"):
        export_model("dav2-small", ExportRequest("torchscript", 100, 140), tmp_path / "m.pt", weights=missing)
    with pytest.raises(InputError, match=r"ends in \.onnx"):
        export_model("dav2-small", ExportRequest("onnx", 140, 140), tmp_path / "m.pt", weights=missing)


def test_neuron_export_without_torch_neuron_says_how_to_get_it(tmp_path):
    pytest.importorskip("torch")
    try:
        import torch_neuron  # noqa: F401

        pytest.skip("torch-neuron is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingDependencyError, match=r"pip install torch-neuron==1\.13\.1.*pip\.repos\.neuron"):
        export_network(random_net(tiny_config()), "dav2-small", ExportRequest("neuron", 42, 56), tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace in the stand-in, on torch >= 2.9
def test_neuron_export_calls_torch_neuron_trace_and_runs_with_the_torchscript_backend(tmp_path, monkeypatch):
    """torch-neuron stood in for by a module whose trace is torch.jit.trace (no Inf1 here)."""
    import sys
    import types

    calls = []

    def fake_trace(module, example_inputs, compiler_args):
        calls.append((tuple(example_inputs[0].shape), list(compiler_args)))
        with torch.no_grad():
            return torch.jit.trace(module, example_inputs[0], check_trace=False)

    monkeypatch.setitem(sys.modules, "torch_neuron", types.SimpleNamespace(__version__="1.13.1.2.9.0"))
    monkeypatch.setattr(torch, "neuron", types.SimpleNamespace(trace=fake_trace), raising=False)
    net = random_net(tiny_config())
    result = export_network(net, "dav2-small", ExportRequest("neuron", 42, 56, batch=2), tmp_path / "m.pt")
    assert calls == [((2, 3, 42, 56), ["--fast-math", "none"])]  # static shape, float32 kept
    assert result.manifest.format == "neuron" and result.manifest.exporter["torch_neuron"] == "1.13.1.2.9.0"
    model = load_exported_model("dav2-small", result.path, "torchscript")
    x = torch.randn(3, 3, 42, 56)
    with torch.no_grad():
        assert p99_relative(model.net(x), net(x)) <= 1e-3
    monkeypatch.delitem(sys.modules, "torch_neuron")
    monkeypatch.setattr("builtins.__import__", _refuse_import("torch_neuron"))
    with pytest.raises(MissingDependencyError, match="compiled for AWS Inferentia"):
        load_exported_model("dav2-small", result.path, "torchscript")


def _refuse_import(name):
    import builtins

    real = builtins.__import__

    def guarded(module, *args, **kwargs):
        if module == name:
            raise ImportError(f"No module named {name!r}")
        return real(module, *args, **kwargs)

    return guarded


def test_parse_size():
    assert parse_size("518x686") == (518, 686)
    assert parse_size("518") == (518, 518)
    assert parse_size("378 x 504") == (378, 504)
    with pytest.raises(InputError, match="HEIGHTxWIDTH"):
        parse_size("big")


# ---------------------------------------------------------------------------------- static wrappers, TorchScript


@torch.no_grad()
def test_v2_wrapper_holds_the_interpolated_position_embedding_and_matches_the_network():
    net = random_net(tiny_config())
    static = StaticDepthAnythingV2(net, 42, 56)
    frozen = static.net.pretrained.frozen_pos_embed
    torch.testing.assert_close(frozen, net.pretrained.interpolate_pos_encoding(3, 4), rtol=0, atol=0)
    x = torch.randn(2, 3, 42, 56, generator=torch.Generator().manual_seed(5))
    # summation order may differ by an ulp between the two graphs; values near zero need an absolute floor
    torch.testing.assert_close(static(x), net(x), rtol=1e-5, atol=1e-5)
    assert net.pretrained.frozen_grid is None  # the network itself is untouched
    assert "frozen_pos_embed" not in static.net.state_dict()  # a buffer, not a checkpoint entry


@pytest.mark.parametrize("anyview", [True, False])
@torch.no_grad()
def test_da3_wrapper_matches_the_network_before_post_processing(anyview):
    net = tiny_da3(anyview)
    S = 4 if anyview else 1
    static = StaticDepthAnything3(net, 28, 42, S, "saddle_balanced")
    x = torch.randn(1, S, 3, 28, 42, generator=torch.Generator().manual_seed(3))
    outputs = static(x)
    reference = net(x)
    if anyview:
        depth, conf, extrinsics, intrinsics = outputs
        torch.testing.assert_close(conf, reference.depth_conf, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(extrinsics, reference.extrinsics, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(intrinsics, reference.intrinsics, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(depth, reference.depth, rtol=1e-5, atol=1e-5)
    else:
        from anydepth.geometry.depth_alignment import fill_sky_with_far_depth

        depth, sky = outputs
        torch.testing.assert_close(sky, reference.sky, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fill_sky_with_far_depth(depth, sky), reference.depth, rtol=1e-5, atol=1e-5)
    frozen = {"net.backbone.pretrained.frozen_pos_embed"} | (
        {"net.backbone.rope_local_cos", "net.backbone.rope_global_sin", "net.head.uv_embed_0"} if anyview else set()
    )
    assert {n for n, _ in static.named_buffers()} >= frozen
    assert net.backbone.frozen_input is None  # the network itself is untouched


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_export_has_no_bicubic_and_a_manifest_with_the_checksum(tmp_path):
    net = random_net(tiny_config(max_depth=20.0))
    result = export_network(net, "dav2-metric-indoor-small", ExportRequest("torchscript", 42, 56, batch=2), tmp_path)
    assert result.path == tmp_path / "dav2-metric-indoor-small_42x56.pt"
    kinds = graph_op_kinds(result.path)
    assert not [k for k in kinds if "bicubic" in k or "cartesian_prod" in k], kinds
    data = json.loads(manifest_path(result.path).read_text())
    assert data["files"] == {result.path.name: hashlib.sha256(result.path.read_bytes()).hexdigest()}
    assert (data["model"], data["format"], data["height"], data["width"], data["batch"]) == (
        "dav2-metric-indoor-small", "torchscript", 42, 56, 2,
    )  # fmt: skip
    assert data["depth_kind"] == "metric" and data["max_depth"] == 20.0
    assert data["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and data["preprocessing"]["color"] == "RGB"
    assert data["inputs"] == [{"name": "images", "shape": [2, 3, 42, 56], "dtype": "float32"}]
    assert data["exporter"]["torch"] == torch.__version__
    assert not list(tmp_path.glob(".*")), "temporary files left behind"

    loaded = torch.jit.load(str(result.path))
    x = torch.randn(2, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-5, atol=1e-5)

    # a changed artefact no longer matches its manifest
    result.path.write_bytes(result.path.read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="does not match its manifest"):
        read_manifest(result.path)
    read_manifest(result.path, verify=False)


def test_a_manifest_round_trips_and_a_foreign_json_is_refused(tmp_path):
    result = export_network(random_net(tiny_config()), "dav2-small", ExportRequest("torchscript", 42, 42), tmp_path)
    _, manifest = read_manifest(manifest_path(result.path))  # the manifest's path works as well as the artefact's
    assert manifest == result.manifest
    assert isinstance(manifest, Manifest) and manifest.size == (42, 42)
    manifest_path(result.path).write_text('{"hello": 1}')
    with pytest.raises(InputError, match="manifest version 0"):
        read_manifest(result.path)
    result.path.with_name("lonely.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="no manifest beside it"):
        read_manifest(result.path.with_name("lonely.pt"))


# ------------------------------------------------------------------------------ every format, every runtime


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "openvino"])
def test_v2_backend_matches_the_pytorch_pipeline(fmt, tmp_path):
    _needs(fmt)
    net = random_net(tiny_config())
    images = [photo_array(30, 40, seed=i) for i in range(3)]  # lower-bound 42 -> 42x56, the export size
    result = export_network(net, "dav2-small", ExportRequest(fmt, 42, 56, batch=2), tmp_path)
    if fmt == "onnx":
        assert not [k for k in graph_op_kinds(result.path) if "cubic" in k], "bicubic resize in the ONNX graph"
    exported = load_exported_model("dav2-small", result.path, RUNTIMES[fmt], device="cpu", precision="fp32")
    assert isinstance(exported, ExportedMonoDepthModel)
    reference = MonoDepthModel(net, get_preset("dav2-small"), torch.device("cpu"), "fp32")
    # three images through a static batch of two: the second batch is padded
    got = exported.infer(images, input_size=42, batch_size=4)
    want = reference.infer(images, input_size=42, batch_size=4)
    assert got.depth.shape == want.depth.shape == (3, 30, 40)
    assert p99_relative(got.depth, want.depth) <= 1e-3
    assert got.depth_kind == want.depth_kind == "disparity"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_swiglu_and_metric_heads_export(fmt, tmp_path):
    """The giant encoder's SwiGLU blocks and the metric head's sigmoid x max_depth, at a non-square size."""
    _needs(fmt)
    net = random_net(tiny_config(max_depth=80.0, ffn="swiglu"))
    result = export_network(net, "dav2-metric-outdoor-small", ExportRequest(fmt, 56, 42), tmp_path)
    exported = load_exported_model("dav2-metric-outdoor-small", result.path, RUNTIMES[fmt])
    x = torch.randn(1, 3, 56, 42)
    with torch.no_grad():
        got, want = exported.net(x), net(x)
    assert p99_relative(got, want) <= 1e-3 and float(got.max()) <= 80.0


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_dynamic_batch(fmt, tmp_path):
    _needs(fmt)
    net = random_net(tiny_config())
    result = export_network(net, "dav2-small", ExportRequest(fmt, 42, 42, batch=1, dynamic=True), tmp_path)
    assert result.manifest.inputs[0].shape == (None, 3, 42, 42)
    exported = load_exported_model("dav2-small", result.path, RUNTIMES[fmt], precision="fp32")
    x = torch.randn(3, 3, 42, 42)
    with torch.no_grad():
        assert p99_relative(exported.net(x), net(x)) <= 1e-3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "openvino"])
@pytest.mark.parametrize("anyview", [True, False])
def test_da3_backend_matches_the_pytorch_pipeline(fmt, anyview, tmp_path):
    _needs(fmt)
    net = tiny_da3(anyview)
    name = "da3-small" if anyview else "da3mono-large"
    views = [photo_array(60, 80, seed=i) for i in range(4 if anyview else 1)]
    H, W = preprocess_da3(views, process_res=56).size
    result = export_network(net, name, ExportRequest(fmt, H, W, views=len(views)), tmp_path)
    exported = load_exported_model(name, result.path, RUNTIMES[fmt], precision="fp32")
    assert isinstance(exported, ExportedMultiViewModel)
    reference = MultiViewModel(net, get_preset(name), torch.device("cpu"), "fp32")
    got = exported.infer(views)  # process_res defaults to the export's longer side
    want = reference.infer(views, process_res=56)
    assert got.depth.shape == want.depth.shape == (len(views), H, W)
    assert p99_relative(got.depth, want.depth) <= 1e-3
    if anyview:
        assert p99_relative(got.conf, want.conf) <= 1e-3
        np.testing.assert_allclose(got.extrinsics, want.extrinsics, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.intrinsics, want.intrinsics, rtol=1e-4, atol=1e-4)
        with pytest.raises(InputError, match="not in exported graphs"):
            exported.infer(views, use_ray_pose=True)
    else:
        assert p99_relative(got.sky_score, want.sky_score) <= 1e-3
        assert got.sky.dtype == want.sky.dtype == np.bool_ and (got.sky == want.sky).mean() > 0.999
    with pytest.raises(ShapeError, match="export it again for this size"):
        exported.infer(views, process_res=112)


def test_real_vits_matches_the_pytorch_path_through_load_model(vits_weights, tmp_path):
    """The official dav2-small architecture (random weights in the .pth layout) at a small size, every runtime."""
    image = photo_array(100, 130)  # lower-bound 140 -> 140x182
    pytorch = anydepth.load_model("dav2-small", weights=vits_weights, device="cpu", precision="fp32")
    want = pytorch.infer(image, input_size=140).depth
    for fmt in ["torchscript", "onnx", "openvino"]:
        try:
            _needs(fmt)
        except pytest.skip.Exception:
            continue
        result = export_model("dav2-small", ExportRequest(fmt, 140, 182), tmp_path, weights=vits_weights)
        model = anydepth.load_model("dav2-small", weights=result.path, backend=RUNTIMES[fmt], precision="fp32")
        got = model.infer(image, input_size=140).depth
        assert p99_relative(got, want) <= 1e-3, fmt


def test_backend_refuses_wrong_models_formats_and_precisions(tmp_path):
    result = export_network(random_net(tiny_config()), "dav2-small", ExportRequest("torchscript", 42, 42), tmp_path)
    with pytest.raises(InputError, match="export of dav2-small, not dav2-base; pass --model dav2-small"):
        load_exported_model("dav2-base", result.path, "torchscript")
    with pytest.raises(InputError, match="use --backend torchscript"):
        load_exported_model("dav2-small", result.path, "onnxruntime")
    with pytest.raises(InputError, match="unknown backend"):
        load_exported_model("dav2-small", result.path, "tensorrt")
    with pytest.raises(InputError, match="pass its path as weights"):
        anydepth.load_model("dav2-small", backend="torchscript")
    with pytest.raises(InputError, match="not available with backend"):
        load_exported_model("dav2-small", result.path, "torchscript", precision="bf16")
    with pytest.raises(InputError, match="no such exported model"):
        load_exported_model("dav2-small", tmp_path / "missing.onnx", "onnxruntime")


# ------------------------------------------------------------------------------ Video Depth Anything


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_vda_export_runs_windows_like_the_pytorch_pipeline(fmt, tmp_path):
    from anydepth.deploy.backends import ExportedVideoDepthModel
    from anydepth.pipelines.video_depth import VideoDepthModel

    _needs(fmt)
    net = tiny_vda()
    result = export_network(net, "vda-small", ExportRequest(fmt, 28, 42), tmp_path)
    assert result.manifest.inputs[0].shape == (1, 32, 3, 28, 42) and result.manifest.family == "vda"
    exported = load_exported_model("vda-small", result.path, RUNTIMES[fmt], device="cpu")
    assert isinstance(exported, ExportedVideoDepthModel)
    clip = torch.randn(1, 32, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert p99_relative(exported.net(clip), net(clip)) <= 1e-3
    # 40 frames (two windows, the second padded) at a size whose processing size is the export size
    rng = np.random.RandomState(0)
    frames = [(rng.rand(20, 30, 3) * 255).astype(np.uint8) for _ in range(40)]
    reference = VideoDepthModel(net, get_preset("vda-small"), torch.device("cpu"), "fp32")
    want = np.stack(list(reference.infer_frames(frames, input_size=28)))
    got = np.stack(list(exported.infer_frames(frames)))
    assert got.shape == want.shape == (40, 20, 30)
    assert p99_relative(got, want) <= 1e-3
    with pytest.raises(InputError, match="streaming"):
        list(exported.infer_frames(frames[:2], mode="streaming"))


# ------------------------------------------------------------------------------ OpenVINO's bf16 and the heads


def test_float32_marks_land_on_the_heads_layers_only():
    from anydepth.deploy.backends import _mark_float32_layers

    xml = (
        '<net>\n\t<layers>\n'
        '\t\t<layer id="0" name="/net/blocks.0/mlp/fc1/MatMul" type="MatMul" version="opset1">\n\t\t</layer>\n'
        '\t\t<layer id="1" name="/net/depth_head/layer1_rn/Conv" type="Convolution" version="opset1">\n'
        '\t\t\t<data strides="1, 1" />\n\t\t</layer>\n'
        '\t\t<layer id="2" name="net.depth_head.projects.0.weight" type="Const" version="opset1">\n\t\t</layer>\n'
        '\t\t<layer id="3" name="/net/depth_headless/Conv" type="Convolution" version="opset1">\n\t\t</layer>\n'
        '\t</layers>\n</net>\n'
    )  # fmt: skip
    marked_xml, marked = _mark_float32_layers(xml, ["depth_head"])
    assert marked == 2
    import xml.etree.ElementTree as ET

    layers = {layer.get("id"): layer for layer in ET.fromstring(marked_xml).iter("layer")}
    precise = {i for i, layer in layers.items() if layer.find("rt_info/attribute[@name='precise']") is not None}
    assert precise == {"1", "2"}
    assert layers["1"].find("data").get("strides") == "1, 1"  # the layer's own content is untouched


def _runtime_conv_precisions(compiled, module="depth_head"):
    """{(in the module?, layer type): {runtime precisions}} of the convolutions and matmuls OpenVINO runs."""
    found = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected", "MatMul"):
            key = (module in info["originalLayersNames"].astype(str), kind)
            found.setdefault(key, set()).add(info["runtimePrecision"].astype(str))
    return found


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_openvino_bf16_keeps_the_head_in_float32_unless_asked(fmt, tmp_path, monkeypatch):
    _needs("openvino")
    ov = pytest.importorskip("openvino")
    from anydepth.deploy import backends

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no native bf16: OpenVINO runs float32 whatever the hint")
    result = export_network(random_net(tiny_config()), "dav2-small", ExportRequest(fmt, 42, 56), tmp_path)
    mixed = _runtime_conv_precisions(backends.openvino_compiled(result.path, "bf16", 1, ["depth_head"]))
    assert mixed[(True, "Convolution")] == {"f32"}  # every convolution of the head
    assert mixed[(False, "FullyConnected")] == {"bf16"}  # the backbone's linear layers
    whole = _runtime_conv_precisions(backends.openvino_compiled(result.path, "bf16", 1))
    assert whole[(True, "Convolution")] == {"bf16"}
    # load_exported_model: "auto" is bf16 here (as the PyTorch path's), heads float32 unless head_precision says
    calls = []
    real = backends.openvino_runner
    monkeypatch.setattr(backends, "openvino_runner", lambda *a: calls.append(a[1:]) or real(*a))
    monkeypatch.setattr("anydepth.pipelines.runtime.auto_picks_cpu_bf16", lambda: True)
    load_exported_model("dav2-small", result.path, "openvino")
    load_exported_model("dav2-small", result.path, "openvino", precision="bf16", head_precision="bf16")
    load_exported_model("dav2-small", result.path, "openvino", precision="fp32")
    assert calls == [("bf16", None, ("depth_head",)), ("bf16", None, ()), ("fp32", None, ("depth_head",))]
    with pytest.raises(InputError, match="head_precision 'fp16'"):
        load_exported_model("dav2-small", result.path, "openvino", head_precision="fp16")


@pytest.mark.parametrize("name", ["da3-small", "da3mono-large", "vda-small"])
def test_openvino_bf16_finds_the_heads_of_every_family(name, tmp_path, caplog):
    """The float32 marks land on each family's head (a family whose module names the marks missed would refuse)."""
    _needs("openvino")
    import logging

    if name == "vda-small":
        net, request = tiny_vda(), ExportRequest("openvino", 28, 42)
    else:
        net, request = (
            tiny_da3(name == "da3-small"),
            ExportRequest("openvino", 42, 56, views=2 if name == "da3-small" else 1),
        )
    result = export_network(net, name, request, tmp_path)
    with caplog.at_level(logging.INFO, logger="anydepth.deploy.backends"):
        load_exported_model(name, result.path, "openvino", precision="bf16")
    marked = [r.getMessage() for r in caplog.records if "in float32" in r.getMessage()]
    assert len(marked) == 1 and int(marked[0].split()[3]) > 10, marked
