"""Static-shape, tensor-in / tensor-out wrappers of the networks, and their exporters (ONNX, OpenVINO, TorchScript,
AWS Neuron).

A wrapper holds a copy of the network frozen to the input size (and the number of views of DA3 any-view models)
by the network's own static-shape hook, ``freeze_input_size``: what depends on the size (the bicubically
interpolated position embedding, the RoPE and UV tables) is computed once and kept as buffers, so the traced graph
holds neither bicubic resizing nor position-grid construction. The wrapper calls the network's own forward (DA3:
``predict``, the forward before its data-dependent sky filling) and returns a tuple of tensors, never a dict.
What the graph leaves out the runtime side adds back, with the same code as the PyTorch path
(:mod:`anydepth.deploy.backends`).

Adding a family: write a builder ``(net, preset, request) -> StaticExport`` and name it as the family's
``static_export`` in :data:`anydepth.families.FAMILIES`; the checks, exporters, manifest and CLI need nothing else.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from anydepth.deploy.manifest import Manifest, TensorSpec, manifest_path, write_manifest
from anydepth.errors import InputError, MissingDependencyError, require
from anydepth.families import family_of, resolve
from anydepth.layers.attention import set_fused_attention
from anydepth.layers.precision import PrecisionPolicy
from anydepth.presets import Preset, get_preset

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino", "torchscript", "neuron")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt", "neuron": ".pt"}
PATCH = 14
MAX_SIDE = 4094  # 292 patches; larger static graphs are a mistake more often than a wish
ONNX_OPSET = 17  # LayerNormalization is a single op from 17 on; torch 1.13 exports up to 17
NEURON_HINT = (
    "torch-neuron is not installed. It runs on AWS Inf1 with Python 3.9/3.10 and torch 1.13.1: "
    "pip install torch-neuron==1.13.1.* 'neuron-cc[tensorflow]' --extra-index-url=https://pip.repos.neuron.amazonaws.com"
)
# DA3 models that cannot be exported (nested: the metric alignment is a data-dependent least-squares fit)
_NOT_EXPORTABLE = {"da3nested-giant-large": "its metric alignment is data-dependent; export da3-giant and "
                   "da3metric-large separately"}  # fmt: skip
# too large for an Inf1 NeuronCore group (1.3 B+ parameters)
_NOT_FOR_NEURON = {"da3-giant", "da3nested-giant-large"}


@dataclass(frozen=True)
class ExportRequest:
    """What to export.

    Attributes:
        format: one of :data:`FORMATS`.
        height, width: static input size, multiples of 14.
        batch: static batch (with ``dynamic``: the example batch only).
        dynamic: dynamic batch axis (ONNX and OpenVINO only; height, width and views always stay fixed).
        views: views per scene of DA3 any-view models (1 for the other models).
        ref_view_strategy: DA3 reference-view rule traced into the graph (used with 3 views or more).
        opset: ONNX opset.
        neuron_compiler_args: passed to ``torch.neuron.trace``; the default keeps float32 (``--fast-math none``)
            so that outputs match the PyTorch path; drop it for the compiler's faster bf16 casting.
    """

    format: str
    height: int
    width: int
    batch: int = 1
    dynamic: bool = False
    views: int = 1
    ref_view_strategy: str = "saddle_balanced"
    opset: int = ONNX_OPSET
    neuron_compiler_args: Tuple[str, ...] = ("--fast-math", "none")

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width


def parse_size(text: str) -> Tuple[int, int]:
    """ "518x686" -> (518, 686) (height x width); "518" -> (518, 518)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×X,]\s*(\d+))?\s*", str(text))
    if not match:
        raise InputError(f"--size {text!r}: write HEIGHTxWIDTH, e.g. 518x518 or 378x504")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    return height, width


def _nearest_multiples(n: int) -> str:
    low = max(PATCH, n // PATCH * PATCH)
    return f"{low} or {low + PATCH}" if low != n else str(n)


def check_request(preset: Preset, request: ExportRequest) -> None:
    """Refuse, before any work, a request that the model or the target cannot take (one-line InputError)."""
    fmt = request.format
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not family_of(preset).exportable:
        raise InputError(f"{preset.name}: export of {family_of(preset).title} models is not available yet")
    if preset.name in _NOT_EXPORTABLE or preset.arch in _NOT_EXPORTABLE:
        reason = _NOT_EXPORTABLE.get(preset.name) or _NOT_EXPORTABLE[str(preset.arch)]
        raise InputError(f"{preset.name} cannot be exported: {reason}")
    H, W = request.size
    for side, name in ((H, "height"), (W, "width")):
        if side <= 0 or side % PATCH:
            raise InputError(
                f"--size {H}x{W}: the {name} {side} is not a positive multiple of {PATCH} (the patch size); "
                f"use {_nearest_multiples(max(side, 1))}"
            )
        if side > MAX_SIDE:
            raise InputError(f"--size {H}x{W}: sides above {MAX_SIDE} are not supported")
    if request.batch < 1:
        raise InputError(f"--batch {request.batch}: the batch must be at least 1")
    if request.dynamic and fmt not in ("onnx", "openvino"):
        raise InputError(
            f"--dynamic: {fmt} artefacts have every shape fixed at compile time; drop --dynamic (runtimes pad "
            "smaller batches) or export to onnx / openvino"
        )
    anyview = _is_anyview(preset)
    if request.views < 1:
        raise InputError(f"--views {request.views}: at least one view")
    if request.views != 1 and not anyview:
        raise InputError(f"--views {request.views}: {preset.name} takes one image at a time; drop --views")
    if fmt == "neuron" and (preset.name in _NOT_FOR_NEURON or preset.arch in _NOT_FOR_NEURON):
        raise InputError(f"{preset.name} is too large for AWS Inferentia (Inf1); export it to onnx or openvino")
    if anyview:
        from anydepth.models.da3.reference_view import check_strategy

        check_strategy(request.ref_view_strategy)


def require_exporter(fmt: str) -> None:
    """Check that the packages the format needs are importable (before weights are loaded)."""
    if fmt in ("onnx", "openvino"):
        require("onnx", "deploy")
    if fmt == "openvino":
        require("openvino", "deploy")
    if fmt == "neuron":
        try:
            import torch_neuron  # noqa: F401
        except ImportError:
            raise MissingDependencyError(NEURON_HINT) from None


def _is_anyview(preset: Preset) -> bool:
    return family_of(preset).takes_views(preset)


# ----------------------------------------------------------------------------------------------------- wrappers


@dataclass
class StaticExport:
    """A wrapper ready to trace, with what the manifest says about it."""

    module: nn.Module
    example: Tensor
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    preprocessing: Dict[str, object]
    extra: Dict[str, object] = field(default_factory=dict)


def _export_copy(net: nn.Module, fused_attention: bool = False) -> nn.Module:
    """A float32 CPU eval copy under the float32 precision policy, by default with the reference paths (the
    explicit attention, softmax(q k^T) v in plain ops, among them).

    ONNX and Neuron get the explicit path (torch 1.13 has no SDPA, and it exports everywhere); a TorchScript
    trace on torch >= 2 may keep SDPA, which is faster and traces, but then needs torch >= 2 to load. The other
    fast paths step aside under tracing anyway; the policy also undoes whatever precision a pipeline had set on
    the network.
    """
    net = copy.deepcopy(net).float().cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    PrecisionPolicy(fast_paths=fused_attention).apply(net)
    return set_fused_attention(net, fused_attention)


class StaticDepthAnythingV2(nn.Module):
    """Depth Anything V2 at one input size: (B, 3, H, W) normalised images -> (B, H, W) disparity or metres.

    A copy of the network frozen to the size (:meth:`DepthAnythingV2Net.freeze_input_size`): the position
    embedding for the H/14 x W/14 grid is interpolated once and kept as a buffer, and the network's own forward
    runs.
    """

    def __init__(self, net: nn.Module, height: int, width: int, fused_attention: bool = False) -> None:
        super().__init__()
        self.net = _export_copy(net, fused_attention)
        self.height, self.width = int(height), int(width)
        self.net.freeze_input_size(self.height, self.width)

    def forward(self, images: Tensor) -> Tensor:  # images: (B, 3, H, W)
        return self.net(images)


class StaticDepthAnything3(nn.Module):
    """A DA3 network at one input size and number of views, without the data-dependent post-processing.

    Any-view models: (B, S, 3, H, W) -> depth (B, S, H, W), depth_conf (B, S, H, W), extrinsics (B, S, 3, 4)
    world-to-camera, intrinsics (B, S, 3, 3). Mono / metric models: -> depth (B, S, H, W) before the sky is
    filled, sky (B, S, H, W). The network is a copy frozen to the size
    (:meth:`DepthAnything3Net.freeze_input_size`: position embedding, RoPE and UV tables as buffers), and the
    graph is its own :meth:`DepthAnything3Net.predict`; the runtime fills the sky with
    :func:`~anydepth.models.da3.network.fill_sky`, as the eager forward does.
    """

    def __init__(
        self,
        net: nn.Module,
        height: int,
        width: int,
        views: int,
        ref_view_strategy: str,
        fused_attention: bool = False,
    ) -> None:
        super().__init__()
        self.net = _export_copy(net, fused_attention)
        # not part of the exported graph (pose conditioning, Gaussians): a TorchScript artefact would carry them
        for unused in ("cam_enc", "gs_head", "gs_adapter"):
            setattr(self.net, unused, None)
        self.height, self.width, self.views = int(height), int(width), int(views)
        self.ref_view_strategy = ref_view_strategy
        self.net.freeze_input_size(self.height, self.width, self.views)

    @property
    def predicts_cameras(self) -> bool:
        return bool(self.net.predicts_cameras)

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:  # images: (B, S, 3, H, W)
        out = self.net.predict(images, ref_view_strategy=self.ref_view_strategy)
        if self.predicts_cameras:
            return out.depth, out.depth_conf, out.extrinsics, out.intrinsics
        return out.depth, out.sky


def _image_preprocessing(preset: Preset, resize: str, layout: str) -> Dict[str, object]:
    """The manifest's preprocessing; ``layout`` is the input's: images (NCHW), views of one scene (NSCHW) or
    frames of one window (NTCHW)."""
    return {
        "color": "RGB",
        "scale": "1/255",
        "mean": list(preset.mean),
        "std": list(preset.std),
        "layout": layout,
        "resize": resize,
    }


def wrap_v2(net: nn.Module, preset: Preset, request: ExportRequest) -> StaticExport:
    H, W = request.size
    B = None if request.dynamic else request.batch
    resize = (
        f"to exactly {H}x{W} with cv2 INTER_CUBIC (images whose lower-bound {preset.input_size} resize, snapped "
        f"to multiples of 14, gives {H}x{W} match the PyTorch path exactly); outputs resized back to the image "
        "bilinearly with align_corners=True"
    )
    return StaticExport(
        module=StaticDepthAnythingV2(net, H, W, fused_attention=request.format == "torchscript"),
        example=torch.randn(request.batch, 3, H, W, generator=torch.Generator().manual_seed(0)),
        inputs=[TensorSpec("images", (B, 3, H, W))],
        outputs=[TensorSpec("depth", (B, H, W))],
        preprocessing=_image_preprocessing(preset, resize, "NCHW"),
    )


def wrap_da3(net: nn.Module, preset: Preset, request: ExportRequest) -> StaticExport:
    H, W = request.size
    S = request.views
    B = None if request.dynamic else request.batch
    module = StaticDepthAnything3(net, H, W, S, request.ref_view_strategy, request.format == "torchscript")
    maps = (B, S, H, W)
    if module.predicts_cameras:
        outputs = [
            TensorSpec("depth", maps),
            TensorSpec("depth_conf", maps),
            TensorSpec("extrinsics", (B, S, 3, 4)),
            TensorSpec("intrinsics", (B, S, 3, 3)),
        ]
    else:
        outputs = [TensorSpec("depth", maps), TensorSpec("sky", maps)]
    resize = (
        f"DA3 process_res {max(H, W)} with upper_bound_resize (long side; cv2 INTER_CUBIC up, INTER_AREA down), "
        f"sides snapped to multiples of 14, giving {H}x{W}"
    )
    return StaticExport(
        module=module,
        example=torch.randn(request.batch, S, 3, H, W, generator=torch.Generator().manual_seed(0)),
        inputs=[TensorSpec("images", (B, S, 3, H, W))],
        outputs=outputs,
        preprocessing=_image_preprocessing(preset, resize, "NSCHW"),
        extra={"ref_view_strategy": request.ref_view_strategy if S >= 3 else None},
    )


class StaticVideoDepthAnything(StaticDepthAnythingV2):
    """Video Depth Anything on windows of a fixed length at one frame size: (B, T, 3, H, W) normalised frames ->
    (B, T, H, W) depth. The position embedding is fixed as for V2; the temporal positions are a buffer already.
    The windows, their overlap and the scale-and-shift joining stay outside the graph (the runtime's pipeline).
    The forward is V2's: the network itself takes the (B, T, 3, H, W) clips."""


def wrap_vda(net: nn.Module, preset: Preset, request: ExportRequest) -> StaticExport:
    from anydepth.pipelines.video_depth import OVERLAP, WINDOW

    H, W = request.size
    B = None if request.dynamic else request.batch
    resize = (
        f"each frame to exactly {H}x{W} with cv2 INTER_CUBIC (frames whose Video Depth Anything resize gives "
        f"{H}x{W} match the PyTorch path exactly); windows of {WINDOW} frames, {OVERLAP} shared with the previous "
        "window, joined by a scale and shift per window outside the graph; outputs resized back bilinearly"
    )
    return StaticExport(
        module=StaticVideoDepthAnything(net, H, W, fused_attention=request.format == "torchscript"),
        example=torch.randn(request.batch, WINDOW, 3, H, W, generator=torch.Generator().manual_seed(0)),
        inputs=[TensorSpec("frames", (B, WINDOW, 3, H, W))],
        outputs=[TensorSpec("depth", (B, WINDOW, H, W))],
        preprocessing=_image_preprocessing(preset, resize, "NTCHW"),
    )


def wrap_network(net: nn.Module, preset: Preset, request: ExportRequest) -> StaticExport:
    """The static wrapper of ``net`` for ``request`` (checked first)."""
    check_request(preset, request)
    return resolve(family_of(preset).static_export)(net, preset, request)


# ---------------------------------------------------------------------------------------------------- exporters


def _trace(module: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        # shapes are static by design: the tracer's warnings about Python ints are expected here
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # newer torch deprecates tracing; torch 1.13 needs it
        return torch.jit.trace(module, example, check_trace=False)


def _export_torchscript(static: StaticExport, request: ExportRequest, path: Path) -> None:
    _trace(static.module, static.example).save(str(path))


def _export_neuron(static: StaticExport, request: ExportRequest, path: Path) -> None:
    require_exporter("neuron")
    import torch_neuron  # noqa: F401  (registers torch.neuron)

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # static shapes by design, as in _trace
        compiled = torch.neuron.trace(
            static.module, example_inputs=[static.example], compiler_args=list(request.neuron_compiler_args)
        )
    compiled.save(str(path))


def _export_onnx(static: StaticExport, request: ExportRequest, path: Path) -> None:
    import inspect

    input_names = [t.name for t in static.inputs]
    output_names = [t.name for t in static.outputs]
    kwargs = {}
    if request.dynamic:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in input_names + output_names}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: the one torch 1.13 has, no onnxscript needed
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")  # torch 1.13, harmless
        torch.onnx.export(
            static.module,
            (static.example,),
            str(path),
            input_names=input_names,
            output_names=output_names,
            opset_version=request.opset,
            do_constant_folding=True,
            **kwargs,
        )


def _export_openvino(static: StaticExport, request: ExportRequest, path: Path) -> None:
    ov = _import_openvino()
    with tempfile.TemporaryDirectory(dir=str(path.parent)) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        _export_onnx(static, request, onnx_path)
        model = ov.convert_model(str(onnx_path))
        # float32 weights: OpenVINO would halve them by default, which breaks parity with the PyTorch path
        ov.save_model(model, str(path), compress_to_fp16=False)


def _import_openvino():
    require("openvino", "deploy")
    import openvino

    return openvino


EXPORTERS: Dict[str, Callable[[StaticExport, ExportRequest, Path], None]] = {
    "onnx": _export_onnx,
    "openvino": _export_openvino,
    "torchscript": _export_torchscript,
    "neuron": _export_neuron,
}


def output_path(output: Union[str, Path], fmt: str, model: str, size: Tuple[int, int]) -> Path:
    """The artefact path: ``output`` itself, or ``output/<model>_<H>x<W><suffix>`` for a folder."""
    output = Path(output)
    suffix = SUFFIXES[fmt]
    if output.is_dir() or str(output).endswith(os.sep) or not output.suffix:
        return output / f"{model}_{size[0]}x{size[1]}{suffix}"
    if output.suffix != suffix:
        raise InputError(f"--output {output}: a {fmt} artefact ends in {suffix}")
    return output


@dataclass
class ExportResult:
    """An exported artefact and its manifest."""

    path: Path
    manifest_path: Path
    manifest: Manifest

    @property
    def files(self) -> List[Path]:
        return [self.path.parent / name for name in self.manifest.files]


def export_network(
    net: nn.Module, preset: Union[str, Preset], request: ExportRequest, output: Union[str, Path]
) -> ExportResult:
    """Export a loaded network for ``preset`` and write its manifest beside it.

    Args:
        net: the network (any device; exported as a float32 CPU copy).
        preset: the preset the network belongs to (name or :class:`~anydepth.presets.Preset`).
        request: format, size, batch, views.
        output: artefact path, or a folder to put ``<model>_<H>x<W>.<ext>`` in.

    Returns:
        the artefact path, the manifest path and the manifest.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    check_request(preset, request)
    require_exporter(request.format)
    path = output_path(output, request.format, preset.name, request.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    static = resolve(family_of(preset).static_export)(net, preset, request)
    logger.info("exporting %s to %s (%s, %dx%d)", preset.name, path, request.format, *request.size)
    # written under a temporary name in the same folder, then renamed: never a half-written artefact
    with tempfile.TemporaryDirectory(dir=str(path.parent), prefix=".anydepth-export-") as tmp:
        staged = Path(tmp) / path.name
        EXPORTERS[request.format](static, request, staged)
        manifest = Manifest(
            model=preset.name,
            family=preset.family,
            format=request.format,
            height=request.height,
            width=request.width,
            batch=request.batch,
            dynamic_batch=request.dynamic,
            views=request.views,
            depth_kind=preset.depth_kind,
            inputs=static.inputs,
            outputs=static.outputs,
            preprocessing=static.preprocessing,
            max_depth=preset.max_depth,
            ref_view_strategy=static.extra.get("ref_view_strategy"),  # type: ignore[arg-type]
            exporter=_versions(request),
        )
        write_manifest(manifest, staged)
        for name in [*manifest.files, manifest_path(staged).name]:
            os.replace(Path(tmp) / name, path.parent / name)
    return ExportResult(path=path, manifest_path=manifest_path(path), manifest=manifest)


def _versions(request: ExportRequest) -> Dict[str, str]:
    import anydepth

    versions = {"anydepth": anydepth.__version__, "torch": torch.__version__}
    if request.format in ("onnx", "openvino"):
        versions["onnx_opset"] = str(request.opset)
    if request.format == "openvino":
        versions["openvino"] = str(_import_openvino().__version__)
    if request.format == "neuron":
        import torch_neuron

        versions["torch_neuron"] = str(getattr(torch_neuron, "__version__", "unknown"))
        versions["neuron_compiler_args"] = " ".join(request.neuron_compiler_args)
    return versions


def export_model(
    name: str,
    request: ExportRequest,
    output: Union[str, Path],
    weights: Optional[Union[str, Path]] = None,
    revision: Optional[str] = None,
) -> ExportResult:
    """Load a preset's weights and export it (the ``anydepth export`` command).

    Everything that can be refused (size, format, model, missing exporter) is refused before weights load.
    """
    from anydepth.families import load_network

    preset = get_preset(name)
    check_request(preset, request)
    output_path(output, request.format, preset.name, request.size)
    require_exporter(request.format)
    net = load_network(name, weights=weights, device="cpu", revision=revision)
    return export_network(net, preset, request, output)


def graph_op_kinds(artefact: Union[str, Path]) -> Sequence[str]:
    """The operator kinds of a TorchScript or ONNX artefact (for checks: no bicubic resize, no cartesian_prod)."""
    artefact = Path(artefact)
    if artefact.suffix == ".onnx":
        import onnx

        model = onnx.load(str(artefact))
        kinds = []
        for node in model.graph.node:
            kind = node.op_type
            if kind == "Resize":
                modes = [a.s.decode() for a in node.attribute if a.name == "mode"]
                kind = f"Resize[{modes[0] if modes else 'nearest'}]"
            kinds.append(kind)
        return sorted(set(kinds))
    module = torch.jit.load(str(artefact))
    return sorted({node.kind() for node in module.inlined_graph.nodes()})
