"""Runtimes for exported artefacts (ONNX Runtime, OpenVINO, TorchScript / Neuron) behind the PyTorch pipelines.

The seam is the network: :class:`MonoDepthModel` and :class:`MultiViewModel` call ``self.net(...)``; here that
network is an :class:`ExportedNetwork`, an ``nn.Module`` without parameters that feeds the artefact and returns
what the PyTorch network returns. Preprocessing, batching, resizing back and DA3's post-processing are the
pipelines' own code, so both paths share them. The artefact's input size is static, so the mono pipeline resizes
every image to it (:meth:`ExportedMonoDepthModel.processing_size`).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from anydepth.deploy.manifest import Manifest, read_manifest
from anydepth.errors import InputError, MissingDependencyError, ShapeError, require
from anydepth.families import family_of, resolve
from anydepth.models.da3.network import DA3Output, fill_sky
from anydepth.pipelines.mono import MonoDepthModel
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.pipelines.preprocess import lower_bound_size
from anydepth.pipelines.video_depth import VideoDepthModel
from anydepth.presets import Preset, get_preset

logger = logging.getLogger(__name__)

BACKENDS = ("pytorch", "onnxruntime", "openvino", "torchscript")
# which artefact formats each runtime reads
READS = {"onnxruntime": ("onnx",), "openvino": ("openvino", "onnx"), "torchscript": ("torchscript", "neuron")}

# (B, ...) float32 CPU tensor -> the graph's outputs in manifest order
Runner = Callable[[Tensor], Sequence[Tensor]]


def onnxruntime_runner(path: Path, num_threads: Optional[int] = None) -> Runner:
    ort = require("onnxruntime", "deploy")
    options = ort.SessionOptions()
    # idle worker threads would otherwise spin for a while after each run, taking the CPU from the pipeline's
    # decoding and writing threads (and from anything else in the process)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: Tensor) -> List[Tensor]:
        outputs = session.run(None, {input_name: x.contiguous().numpy()})
        return [torch.from_numpy(o) for o in outputs]

    return run


FLOAT32_MODULES = {
    "dav2": ("depth_head",),
    "vda": ("head",),
    "da3": ("head", "cam_dec", "cam_enc", "gs_head", "gs_adapter"),
}
"""The modules of each family whose layers OpenVINO keeps in float32 when it runs the rest in bf16 (``head_precision
"fp32"``): the heads that the PyTorch precision policy keeps float32 (V2, Video Depth Anything), and for DA3 its
whole head and camera modules (PyTorch runs part of the DA3 head in bf16; OpenVINO keeps all of it float32). The
CPU plugin (2026.4) honours the mark on convolutions and matrix products, the bulk of a head's arithmetic; it still
runs transposed convolutions and resizes in bf16 (tests/deploy: the runtime precision of every layer)."""


def _mark_float32_layers(xml: str, modules: Sequence[str]) -> Tuple[str, int]:
    """The IR ``xml`` with OpenVINO's "precise" attribute (``ov::disable_fp16_compression``, the attribute its
    CPU plugin reads to keep a layer in its original precision under a bf16 or f16 inference hint) on every layer
    of ``modules``; returns the text and the number of layers marked. Layer names are the ONNX exporter's module
    paths (``/net/depth_head/...``) and parameter names (``net.depth_head....``)."""
    prefixes = tuple(f"/net/{m}/" for m in modules) + tuple(f"net.{m}." for m in modules)
    pattern = re.compile(r'^(\s*)<layer id="\d+" name="([^"]*)"[^>]*>\s*$')
    lines, marked = [], 0
    for line in xml.splitlines(keepends=True):
        lines.append(line)
        match = pattern.match(line)
        if match and match.group(2).startswith(prefixes):
            indent = match.group(1) + "\t"
            lines.append(f'{indent}<rt_info>\n{indent}\t<attribute name="precise" version="0" />\n{indent}</rt_info>\n')
            marked += 1
    return "".join(lines), marked


def openvino_compiled(
    path: Path, precision: str = "fp32", num_threads: Optional[int] = None, float32_modules: Sequence[str] = ()
) -> Any:
    """The artefact compiled by OpenVINO for the CPU. ``precision`` "bf16" runs the graph in bf16 (the CPU plugin's
    inference precision hint), except the layers of ``float32_modules`` (see :data:`FLOAT32_MODULES`), which stay
    float32."""
    ov = require("openvino", "deploy")
    # OpenVINO runs bf16 by default on CPUs that have it; f32 keeps parity with the PyTorch path
    config: Dict[str, str] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = str(int(num_threads))
    core = ov.Core()
    if precision != "bf16" or not float32_modules:
        return core.compile_model(str(path), "CPU", config)
    if path.suffix == ".xml":
        xml_text = path.read_text(encoding="utf-8")
        weights = np.fromfile(str(path.with_suffix(".bin")), dtype=np.uint8)
    else:  # an ONNX artefact: its IR, in memory, carries the marks
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ov.save_model(core.read_model(str(path)), str(Path(tmp) / "model.xml"), compress_to_fp16=False)
            xml_text = (Path(tmp) / "model.xml").read_text(encoding="utf-8")
            weights = np.fromfile(str(Path(tmp) / "model.bin"), dtype=np.uint8)
    xml, marked = _mark_float32_layers(xml_text, float32_modules)
    if not marked:
        raise InputError(f"{path}: no layer of {', '.join(float32_modules)} found to keep in float32")
    logger.info("OpenVINO bf16 with %d layers of %s in float32", marked, ", ".join(float32_modules))
    return core.compile_model(core.read_model(xml, ov.Tensor(weights)), "CPU", config)


def openvino_runner(
    path: Path, precision: str = "fp32", num_threads: Optional[int] = None, float32_modules: Sequence[str] = ()
) -> Runner:
    """OpenVINO on the CPU (see :func:`openvino_compiled`)."""
    compiled = openvino_compiled(path, precision, num_threads, float32_modules)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(x: Tensor) -> List[Tensor]:
        result = request.infer({0: x.contiguous().numpy()})
        # copies: the request reuses its output buffers at the next call
        return [torch.from_numpy(result[o].copy()) for o in outputs]

    return run


def torchscript_runner(path: Path, manifest: Manifest, device: torch.device) -> Runner:
    if manifest.format == "neuron":
        try:
            import torch_neuron  # noqa: F401  (registers the Neuron ops the artefact calls)
        except ImportError:
            from anydepth.deploy.export import NEURON_HINT

            raise MissingDependencyError(f"{path} was compiled for AWS Inferentia. {NEURON_HINT}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # newer torch deprecates TorchScript
        module = torch.jit.load(str(path), map_location=device).eval()

    def run(x: Tensor) -> List[Tensor]:
        with torch.no_grad():
            out = module(x.to(device))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().cpu() for o in out]

    return run


class ExportedNetwork(nn.Module):
    """An artefact as a network: checks the input against the manifest, pads to the static batch, runs it.

    Args:
        runner: calls the artefact on one batch.
        manifest: the artefact's manifest.
    """

    def __init__(self, runner: Runner, manifest: Manifest) -> None:
        super().__init__()
        self.runner = runner
        self.manifest = manifest

    def run(self, x: Tensor) -> List[Tensor]:
        """(B, ...) input -> the graph's outputs for B samples, in manifest order."""
        m = self.manifest
        expected = tuple(m.inputs[0].shape[1:])
        if tuple(x.shape[1:]) != expected:
            raise ShapeError(
                f"the exported {m.model} takes inputs of shape (B, {', '.join(str(s) for s in expected)}), got "
                f"{tuple(x.shape)}; export it again for this size (anydepth export --size HxW"
                f"{' --views S' if family_of(m.family).task == 'scene' else ''})"
            )
        x = x.detach().float().cpu()
        if m.dynamic_batch:
            return list(self.runner(x))
        outputs: List[List[Tensor]] = []
        for start in range(0, x.shape[0], m.batch):
            chunk = x[start : start + m.batch]
            n = chunk.shape[0]
            if n < m.batch:  # a static graph takes exactly its batch: repeat the last sample, drop its outputs
                chunk = torch.cat((chunk, chunk[-1:].expand(m.batch - n, *chunk.shape[1:])), dim=0)
            outputs.append([o[:n] for o in self.runner(chunk)])
        return [torch.cat(parts, dim=0) for parts in zip(*outputs)]


class ExportedV2Net(ExportedNetwork):
    """Stands in for :class:`~anydepth.models.depth_anything_v2.DepthAnythingV2Net`: (B, 3, H, W) -> (B, H, W)."""

    def forward(self, images: Tensor) -> Tensor:
        return self.run(images)[0]


class ExportedDA3Net(ExportedNetwork):
    """Stands in for :class:`~anydepth.models.da3.network.DepthAnything3Net` at the export's size and views.

    Adds back what the graph (``DepthAnything3Net.predict``) leaves out, with the network's own code: the sky
    filling of mono/metric models (:func:`~anydepth.models.da3.network.fill_sky`).
    Pose conditioning, feature export, Gaussians and ray poses are not part of exported graphs.
    """

    @property
    def predicts_cameras(self) -> bool:
        return "extrinsics" in self.manifest.output_names

    def forward(
        self,
        images: Tensor,
        extrinsics: Optional[Tensor] = None,
        intrinsics: Optional[Tensor] = None,
        export_feat_layers: Sequence[int] = (),
        infer_gs: bool = False,
        use_ray_pose: bool = False,
        ref_view_strategy: str = "saddle_balanced",
        ray_decomposition: str = "qr",
        chunk_size: Optional[int] = None,
    ) -> DA3Output:
        m = self.manifest
        unsupported = {
            "pose conditioning (extrinsics)": extrinsics is not None,
            "export_feat_layers": bool(list(export_feat_layers)),
            "infer_gs": infer_gs,
            "use_ray_pose": use_ray_pose,
        }
        asked = [name for name, on in unsupported.items() if on]
        if asked:
            raise InputError(f"{', '.join(asked)}: not in exported graphs; use backend='pytorch' for it")
        if m.ref_view_strategy is not None and ref_view_strategy != m.ref_view_strategy:
            raise InputError(
                f"the export chose reference views with {m.ref_view_strategy!r}, not {ref_view_strategy!r}; "
                "re-export with --ref-view-strategy or use the exported strategy"
            )
        outputs = dict(zip(m.output_names, self.run(images)))
        out = DA3Output(
            depth=outputs["depth"],
            depth_conf=outputs.get("depth_conf"),
            extrinsics=outputs.get("extrinsics"),
            intrinsics=outputs.get("intrinsics"),
            sky=outputs.get("sky"),
        )
        return fill_sky(out)  # what DepthAnything3Net.forward does after the part the graph holds


class ExportedVDANet(ExportedNetwork):
    """Stands in for :class:`~anydepth.models.video_depth_anything.VideoDepthAnythingNet` on whole windows:
    (B, T, 3, H, W) -> (B, T, H, W). The streaming mode's cached temporal states are not part of the graph."""

    def forward(self, clips: Tensor) -> Tensor:
        return self.run(clips)[0]

    def forward_stream(self, *args: object, **kwargs: object) -> None:
        raise InputError("streaming mode is not in exported graphs; use mode='windowed' or backend='pytorch'")


class ExportedVideoDepthModel(VideoDepthModel):
    """A :class:`~anydepth.pipelines.video_depth.VideoDepthModel` whose windows run in an exported artefact:
    frames are resized to the export size, and windows are cut and joined exactly as on the PyTorch path."""

    def __init__(self, net: ExportedVDANet, preset: Preset, device: torch.device, backend: str) -> None:
        super().__init__(net, preset, device, "fp32")  # type: ignore[arg-type]
        self.backend = backend
        self._runner.fixed_size = net.manifest.size

    @property
    def manifest(self) -> Manifest:
        return self.net.manifest  # type: ignore[return-value]

    def __repr__(self) -> str:
        m = self.manifest
        return f"ExportedVideoDepthModel({m.model!r}, backend={self.backend!r}, {m.height}x{m.width})"


class ExportedMonoDepthModel(MonoDepthModel):
    """:class:`MonoDepthModel` on an exported V2 artefact; every image is resized to the artefact's size.

    Images whose usual processing size (shorter side ``input_size``, multiples of 14) is the artefact's give the
    PyTorch path's output; others are resized to it without keeping their aspect ratio.
    """

    def __init__(self, net: ExportedV2Net, preset: Preset, device: torch.device, backend: str) -> None:
        super().__init__(net, preset, device, "fp32")
        self.backend = backend
        self._warned = False

    @property
    def manifest(self) -> Manifest:
        return self.net.manifest

    def __repr__(self) -> str:
        m = self.manifest
        return f"ExportedMonoDepthModel({m.model!r}, backend={self.backend!r}, size={m.height}x{m.width})"

    def processing_size(self, height: int, width: int, input_size: int) -> Tuple[int, int]:
        fixed = self.manifest.size
        if not self._warned and lower_bound_size(height, width, input_size) != fixed:
            logger.warning(
                "%s: a %dx%d image is resized to the export size %dx%d (aspect ratio not kept); export at %dx%d "
                "for the PyTorch path's result",
                self.manifest.model, height, width, *fixed, *lower_bound_size(height, width, input_size),
            )  # fmt: skip
            self._warned = True
        return fixed


class ExportedMultiViewModel(MultiViewModel):
    """:class:`MultiViewModel` on an exported DA3 artefact (a fixed number of views at a fixed size).

    ``process_res`` defaults to the artefact's longer side, so images of the export's aspect ratio need no option.
    """

    def __init__(self, net: ExportedDA3Net, preset: Preset, device: torch.device, backend: str) -> None:
        super().__init__(net, preset, device, "fp32")
        self.backend = backend

    @property
    def manifest(self) -> Manifest:
        return self.net.manifest

    def __repr__(self) -> str:
        m = self.manifest
        return f"ExportedMultiViewModel({m.model!r}, backend={self.backend!r}, {m.views} x {m.height}x{m.width})"

    def infer(self, images, **kwargs):  # type: ignore[override]
        kwargs.setdefault("process_res", max(self.manifest.size))
        return super().infer(images, **kwargs)

    infer.__doc__ = MultiViewModel.infer.__doc__


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def load_exported_model(
    name: str,
    artefact: Optional[Union[str, Path]],
    backend: str,
    device: Union[str, torch.device] = "auto",
    precision: str = "auto",
    num_threads: Optional[int] = None,
    verify: bool = True,
    head_precision: str = "fp32",
) -> Union[ExportedMonoDepthModel, ExportedMultiViewModel, ExportedVideoDepthModel]:
    """A model that runs an exported artefact with the PyTorch path's pre- and post-processing.

    Args:
        name: the preset the artefact was exported from (checked against its manifest).
        artefact: the artefact (``.onnx``, ``.xml``, ``.pt``) or its manifest (``<artefact>.json``).
        backend: "onnxruntime" (ONNX), "openvino" (OpenVINO IR or ONNX), "torchscript" (TorchScript or Neuron).
        device: "auto"/"cpu"; TorchScript artefacts may also run on "cuda".
        precision: "fp32"; "bf16" for OpenVINO on CPUs with native bf16; "auto": OpenVINO picks bf16 where the
            PyTorch path's "auto" does (native bf16 matmuls, measured faster), float32 elsewhere; the other
            runtimes, float32.
        num_threads: CPU threads of the runtime (its default when None).
        verify: check the artefact's sha256 against the manifest.
        head_precision: OpenVINO under bf16: "fp32" keeps the heads (and DA3's camera modules) in float32, as
            the PyTorch precision policy does (:data:`FLOAT32_MODULES`); "bf16" runs the whole graph in bf16,
            faster, but the heads' rounding then reaches the depth (measure it on your weights).
    """
    from anydepth.pipelines.runtime import resolve_device, tune_allocator

    check_backend(backend)
    if backend == "pytorch":
        raise InputError("backend 'pytorch' runs the weights themselves: use anydepth.load_model")
    if artefact is None:
        raise InputError(f"backend {backend!r} runs an exported model: pass its path as weights (--weights)")
    preset = get_preset(name)
    if precision not in ("auto", "fp32", "bf16") or (precision == "bf16" and backend != "openvino"):
        raise InputError(f"precision {precision!r} is not available with backend {backend!r}; use fp32")
    if head_precision not in ("fp32", "bf16"):
        raise InputError(f"head_precision {head_precision!r}: use fp32 or bf16")
    path, manifest = read_manifest(artefact, verify=verify)
    if manifest.model != preset.name:
        raise InputError(f"{path} is an export of {manifest.model}, not {preset.name}; pass --model {manifest.model}")
    if manifest.format not in READS[backend]:
        readers = [b for b, formats in READS.items() if manifest.format in formats]
        raise InputError(
            f"{path} is a {manifest.format} artefact; backend {backend!r} reads {', '.join(READS[backend])} "
            f"(use --backend {readers[0]})"
        )
    dev = torch.device("cpu") if str(device) == "auto" else resolve_device(device)
    if dev.type != "cpu" and backend != "torchscript":
        raise InputError(f"backend {backend!r} runs on the CPU here; use --device cpu")
    if backend == "onnxruntime":
        runner = onnxruntime_runner(path, num_threads)
    elif backend == "openvino":
        if precision == "auto":
            from anydepth.pipelines.runtime import auto_picks_cpu_bf16

            precision = "bf16" if auto_picks_cpu_bf16() else "fp32"
        float32_modules = FLOAT32_MODULES.get(manifest.family, ()) if head_precision == "fp32" else ()
        runner = openvino_runner(path, precision, num_threads, float32_modules)
    else:
        runner = torchscript_runner(path, manifest, dev)
    logger.info("running %s from %s with %s", manifest.model, path, backend)
    family = family_of(manifest.family)
    if family.exported_runtime is None:
        raise InputError(f"{path}: {manifest.family} models have no exported runtime")
    if dev.type == "cpu" and family.task in ("image", "scene"):
        tune_allocator("keep")  # repeated inference at one size, as anydepth.load_model
    return resolve(family.exported_runtime)(runner, manifest, preset, dev, backend)


# the family table's exported runtimes (anydepth.families.FAMILIES)
def exported_v2_model(
    runner: Runner, manifest: Manifest, preset: Preset, device: torch.device, backend: str
) -> ExportedMonoDepthModel:
    return ExportedMonoDepthModel(ExportedV2Net(runner, manifest), preset, device, backend)


def exported_da3_model(
    runner: Runner, manifest: Manifest, preset: Preset, device: torch.device, backend: str
) -> ExportedMultiViewModel:
    return ExportedMultiViewModel(ExportedDA3Net(runner, manifest), preset, device, backend)


def exported_vda_model(
    runner: Runner, manifest: Manifest, preset: Preset, device: torch.device, backend: str
) -> ExportedVideoDepthModel:
    return ExportedVideoDepthModel(ExportedVDANet(runner, manifest), preset, device, backend)
