"""Exported models against the PyTorch path on this CPU: latency ratio, parity and artefact size per backend.

Fills the preset's network with deterministic random weights (``tests/helpers/random_weights.py``; they cost the same as
the official ones), exports it at one size with ``anydepth.deploy`` and times, per backend, the network call on
one preprocessed input and an end-to-end ``infer`` of 640x480 images whose processing size is the export size.
Backends are timed round-robin (median of ``--repeats`` rounds), so that load from other work on the machine
hits every backend alike. Parity is the relative error of the depth against PyTorch fp32 (p99 over the pixels,
and the mean, the precision policy's budget): on the random 640x480 images, or with ``--weights`` (trained
weights) and ``--images`` (a folder of photos) on real ones. Backends: ``onnxruntime``, ``openvino`` (fp32),
``openvino-bf16`` (bf16, heads float32: ``head_precision="fp32"``), ``openvino-bf16-all`` (the whole graph in
bf16), ``torchscript``::

    PYTHONPATH=src python benchmarks/deploy_latency.py --model dav2-small --size 518x686
    PYTHONPATH=src python benchmarks/deploy_latency.py --model da3-small --size 378x504 --views 4
    PYTHONPATH=src python benchmarks/deploy_latency.py --model anydepth-nano --size 98x126 \
        --weights src/anydepth/builtin/anydepth-nano.safetensors --images heldout --pattern "*/images/*.png"
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np
import torch
from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "torchscript": "torchscript"}


def p99_relative(actual: np.ndarray, expected: np.ndarray) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.quantile(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-12), 0.99))


def mean_relative(actual: np.ndarray, expected: np.ndarray) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.mean(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-12)))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dav2-small")
    parser.add_argument("--size", default="518x686", help="export size HEIGHTxWIDTH")
    parser.add_argument("--views", type=int, default=1, help="DA3 any-view: views per scene")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="onnxruntime,openvino,openvino-bf16,openvino-bf16-all,torchscript")
    parser.add_argument("--weights", default=None, help="trained weights (default: random ones)")
    parser.add_argument("--images", type=Path, default=None, help="folder of photos for the errors (V2 models)")
    parser.add_argument("--pattern", default="**/*", help="glob of the photos under --images")
    parser.add_argument("--max-images", type=int, default=32, help="the first N photos in name order")
    args = parser.parse_args()

    from tests.helpers.random_weights import fill_

    from anydepth.api import build_network
    from anydepth.deploy.backends import load_exported_model
    from anydepth.deploy.export import ExportRequest, export_network, parse_size
    from anydepth.families import load_network_weights
    from anydepth.io.images import read_image
    from anydepth.pipelines.mono import MonoDepthModel
    from anydepth.pipelines.multiview import MultiViewModel
    from anydepth.pipelines.runtime import resolve_precision
    from anydepth.presets import get_preset

    torch.set_num_threads(args.threads)
    preset = get_preset(args.model)
    H, W = parse_size(args.size)
    S = args.views
    if args.weights:
        net = load_network_weights(build_network(preset, init=False), preset, Path(args.weights)).eval()
    else:
        net = fill_(build_network(preset), seed=0).eval()
    da3 = preset.family == "da3"
    cpu = torch.device("cpu")
    x = torch.randn(1, S, 3, H, W) if da3 else torch.randn(1, 3, H, W)
    # a 640x480 image (or S of them) whose processing size is the export size when the aspect ratios agree
    rng = np.random.RandomState(0)
    images = [(rng.rand(480, 640, 3) * 255).astype(np.uint8) for _ in range(S)]
    photos = [images[0]]
    if args.images is not None:
        files = sorted(f for f in args.images.glob(args.pattern) if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        photos = [read_image(f) for f in files[: args.max_images]]
        images = photos[:S]

    def pipeline(model_net, precision):
        cls = MultiViewModel if da3 else MonoDepthModel
        return cls(model_net, preset, cpu, precision)

    def infer(model, image=None):
        if da3:
            return model.infer(images, process_res=max(H, W)).depth
        return model.infer(images[0] if image is None else image, input_size=min(H, W)).depth

    def errors_of(model, wanted):
        if da3:
            got = infer(model)
            return p99_relative(got, wanted[0]), mean_relative(got, wanted[0])
        got = [infer(model, photo) for photo in photos]
        p99 = p99_relative(np.concatenate([g.ravel() for g in got]), np.concatenate([w.ravel() for w in wanted]))
        return p99, float(np.mean([mean_relative(g, w) for g, w in zip(got, wanted)]))

    def network_call(model):
        def run():
            model.precision_policy.apply(model.net)  # the pipelines share one network: each sets its own policy
            with torch.inference_mode(), model.precision_policy.autocast(cpu):
                return model.net(x)

        return run

    # (name, model, artefact MiB); timed round-robin below, so that load from other work hits every backend alike
    candidates = [("pytorch fp32", pipeline(net, "fp32"), None)]
    auto = resolve_precision("auto", cpu)
    if auto != "fp32":
        candidates.append((f"pytorch {auto} (auto)", pipeline(net, auto), None))
    with tempfile.TemporaryDirectory() as tmp:
        exported = {}
        for backend in args.backends.split(","):
            runtime = backend.split("-")[0]
            fmt = FORMATS[runtime]
            if fmt not in exported:
                start = time.perf_counter()
                exported[fmt] = export_network(net, preset, ExportRequest(fmt, H, W, views=S), Path(tmp) / fmt)
                print(f"exported {fmt} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            result = exported[fmt]
            size_mb = sum(f.stat().st_size for f in result.files) / 2**20
            precision = "bf16" if "bf16" in backend else "fp32"
            head = "bf16" if backend.endswith("-all") else "fp32"
            model = load_exported_model(
                preset.name, result.path, runtime, precision=precision, num_threads=args.threads, head_precision=head
            )
            label = f"{runtime} {precision}" + ("" if precision == "fp32" else f", head {head}")
            candidates.append((label, model, size_mb))

        reference = candidates[0][1]
        wanted = [infer(reference)] if da3 else [infer(reference, photo) for photo in photos]
        errors = [errors_of(model, wanted) for _, model, _ in candidates]  # also the warm-up
        calls = [network_call(model) for _, model, _ in candidates]
        for call in calls:
            call()
        network: List[List[float]] = [[] for _ in candidates]
        end_to_end: List[List[float]] = [[] for _ in candidates]
        for _ in range(args.repeats):
            for i, (call, (_, model, _)) in enumerate(zip(calls, candidates)):
                network[i].append(seconds(call))
                end_to_end[i].append(seconds(functools.partial(infer, model)))

    what = f"{S} views of " if da3 else ""
    weights = args.weights or "random weights"
    on = f"{len(photos)} images of {args.images}" if args.images else "random images"
    print(f"{preset.name} ({weights}), {what}{H}x{W}, {args.threads} threads, torch {torch.__version__}, "
          f"median of {args.repeats} round-robin rounds; errors on {on}; CPU: {cpu_model()}")  # fmt: skip
    print("| backend | network s | vs pytorch fp32 | end-to-end s | vs pytorch fp32 | p99 rel. error | mean rel. error "
          "| artefact MiB |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    base, base_e2e = statistics.median(network[0]), statistics.median(end_to_end[0])
    for (name, _, size_mb), net_s, e2e_s, (p99, mean) in zip(candidates, network, end_to_end, errors):
        net_m, e2e_m = statistics.median(net_s), statistics.median(e2e_s)
        size = "-" if size_mb is None else f"{size_mb:.1f}"
        print(f"| {name} | {net_m:.3f} | {base / net_m:.2f}x | {e2e_m:.3f} | {base_e2e / e2e_m:.2f}x | {p99:.1e} | "
              f"{mean:.2%} | {size} |")  # fmt: skip


if __name__ == "__main__":
    main()
