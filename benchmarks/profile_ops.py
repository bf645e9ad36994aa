"""Where a model's CPU time goes, by kind of operation: the account of the gap between its achieved throughput and
the matmul peak that the speed issue asks for.

Runs one model's default path as ``speed.py`` times it (DA3-small's ``load_model(...).infer`` on 4 views of 640x480
at process_res 504, Depth Anything V2 vits' on one image at 518, or Video Depth Anything vits' compat
``infer_video_depth`` on one 32-frame window at input 280) on deterministic random weights under
``torch.profiler``, and prints, per kind of operation (matrix products, attention, convolutions, normalisation,
elementwise, layout copies and casts, resampling, the rest):

- its share of the profiled time, and milliseconds per call;
- its FLOPs and achieved GFLOP/s where it does arithmetic (``FlopCounterMode``, with the fused oneDNN kernels and
  CPU flash attention counted as ``speed.py`` counts them);
- what the whole call would take if the matrix products and attention ran at 60% of the measured bf16 (or float32)
  matmul peak and everything else were as measured: the bound that the rest sets.

The profiler adds a few microseconds to every operation; the shares are read from the profiled call, the total from
an unprofiled one. The CPU's name and measured peaks are printed with the table::

    PYTHONPATH=src python benchmarks/profile_ops.py [--model da3-small|dav2-small] [--precision auto] [--top 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import count_flops_by_op, cpu_model, matmul_peak_gflops, synthetic_views  # noqa: E402

# kind of an operation by its profiler name (first match wins); names cover aten, mkldnn and our fused kernels
_ELEMENTWISE = (
    "add", "mul", "div", "sub", "gelu", "relu", "silu", "sigmoid", "tanh", "exp", "clamp", "where", "sqrt", "pow",
    "addcmul", "softmax", "neg", "cos", "sin", "norm", "mean", "sum",
)  # fmt: skip
_KINDS: List[Tuple[str, Tuple[str, ...]]] = [
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("resampling", ("upsample", "interpolate", "grid_sampler", "resize")),  # before the products: "bilinear"
    ("matrix products", ("linear", "addmm", "aten::mm", "bmm", "matmul", "baddbmm")),
    ("convolutions", ("conv", "mkldnn_convolution")),
    ("normalisation", ("layer_norm", "group_norm", "batch_norm", "native_layer_norm")),
    ("layout copies and casts", ("copy_", "contiguous", "clone", "aten::to", "_to_copy", "cat", "stack", "permute")),
    ("elementwise", _ELEMENTWISE),
]
_ARITHMETIC = ("attention", "matrix products", "convolutions")


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in _KINDS:
        if any(key in low for key in keys):
            return kind
    return "the rest"


def _model_call(model_name: str, precision: str) -> Callable[[], object]:
    """The default call of the model (``speed.py``'s), on random weights."""
    import numpy as np
    import torch
    from tests.helpers.random_weights import fill_

    import anydepth
    from anydepth.pipelines.runtime import resolve_precision, tune_allocator
    from anydepth.presets import get_preset

    torch.manual_seed(0)
    views = [v.astype(np.uint8) for v in synthetic_views(4, 480, 640)]
    if model_name == "vda-small":  # the compat facade's infer_video_depth on one 32-frame window at input 280
        from tests.helpers.random_weights import random_state_dict

        from anydepth.compat import VideoDepthAnything

        frames = np.stack([np.roll(views[i % 4], 7 * i, axis=1) for i in range(32)])
        vda = VideoDepthAnything(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
        state = vda.state_dict()
        filled = random_state_dict({k: tuple(v.shape) for k, v in state.items()}, 0)
        filled.update({k: v for k, v in state.items() if k.endswith("pos_encoder.pe")})  # sinusoid tables
        vda.load_state_dict(filled)
        vda.eval()
        fp32 = precision == "fp32"
        return lambda: vda.infer_video_depth(frames, 30, input_size=280, device="cpu", fp32=fp32)
    preset = get_preset(model_name)
    net = fill_(anydepth.build_network(preset)).eval()
    dev = torch.device("cpu")
    tune_allocator("keep")
    concrete = resolve_precision(precision, dev)
    if model_name.startswith("da3"):
        from anydepth.pipelines.multiview import MultiViewModel

        model = MultiViewModel(net, preset, dev, concrete)
        return lambda: model.infer(views, process_res=504)
    from anydepth.pipelines.mono import MonoDepthModel

    mono = MonoDepthModel(net, preset, dev, concrete)
    return lambda: mono.infer(views[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("da3-small", "dav2-small", "vda-small"), default="da3-small")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=5, help="unprofiled calls timed (median)")
    parser.add_argument("--top", type=int, default=12, help="single operations listed after the kinds")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from anydepth.pipelines.runtime import resolve_precision

    call = _model_call(args.model, args.precision)
    concrete = resolve_precision(args.precision, torch.device("cpu"))
    call()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    total = statistics.median(times)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    self_us: Dict[str, float] = defaultdict(float)
    calls: Dict[str, int] = defaultdict(int)
    for event in prof.key_averages():
        self_us[event.key] += event.self_cpu_time_total
        calls[event.key] += event.count
    profiled = sum(self_us.values())
    flops = count_flops_by_op(call) or {}
    peak_name = "bfloat16" if concrete == "bf16" else "float32"
    peaks = {"float32": matmul_peak_gflops("float32"), "bfloat16": matmul_peak_gflops("bfloat16")}
    peak = peaks[peak_name]

    by_kind: Dict[str, float] = defaultdict(float)
    for key, us in self_us.items():
        by_kind[kind_of(key)] += us
    flops_by_kind: Dict[str, int] = defaultdict(int)
    for key, n in flops.items():
        flops_by_kind[kind_of(key)] += n

    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak measured "
          f"here: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")  # fmt: skip
    print(f"{args.model}, precision {args.precision} ({concrete}): {total:.3f} s per call (median of {args.repeats},"
          f" unprofiled); {sum(flops.values()) / 1e9:.0f} GFLOP; shares from one profiled call\n")  # fmt: skip
    print("| kind | share | ms | GFLOP | GFLOP/s | share of the peak |")
    print("|---|--:|--:|--:|--:|--:|")
    bound = 0.0
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        seconds = total * us / profiled
        gflop = flops_by_kind.get(kind, 0) / 1e9
        rate = f"{gflop / seconds:.0f}" if gflop else ""
        share = f"{100 * gflop / seconds / peak:.0f}%" if gflop else ""
        print(f"| {kind} | {100 * us / profiled:.1f}% | {1000 * seconds:.0f} | {gflop:.1f} | {rate} | {share} |")
        bound += gflop / (0.6 * peak) if kind in _ARITHMETIC and gflop else seconds
    print(f"\nwith the products, attention and convolutions at 60% of the {peak_name} peak and the rest as measured: "
          f"{bound:.3f} s ({total / bound:.2f}x the speed of now)\n")  # fmt: skip
    print(f"| top {args.top} operations | kind | share | calls | ms |")
    print("|---|---|--:|--:|--:|")
    for key, us in sorted(self_us.items(), key=lambda kv: -kv[1])[: args.top]:
        ms = total * us / profiled * 1000
        print(f"| `{key}` | {kind_of(key)} | {100 * us / profiled:.1f}% | {calls[key]} | {ms:.0f} |")


if __name__ == "__main__":
    main()
