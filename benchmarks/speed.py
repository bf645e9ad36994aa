"""Speed against upstream, side by side in one run: DA3-small on 4 views, Depth Anything V2 vits ``infer_image``
and (with ``--vda-upstream``) Video Depth Anything vits ``infer_video_depth``.

Every configuration runs in its own child process (upstream's in its side virtualenv, made by
``../shared/upstream/make-upstream-env.sh DIR``) on the same inputs and the same deterministic random weights
(``tests/helpers/random_weights.py``; they cost what the official ones cost). The rounds alternate between the sides so
that other load on the machine hits both alike. Prints a Markdown table: median seconds over the rounds, the
speed-up against upstream's default API (the median of each round's ratio, with their range), images/s, the
children's peak RSS, and the achieved GFLOP/s of the network against this machine's measured matmul peak::

    PYTHONPATH=src python benchmarks/speed.py --upstream-python /path/to/upvenv/bin/python \
        [--vda-upstream /path/to/Video-Depth-Anything]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from _common import cpu_model, matmul_peak_gflops

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = r"""
import json, resource, statistics, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/benchmarks")
from tests.helpers.random_weights import fill_, random_state_dict
from _common import synthetic_views
torch.manual_seed(0)
views = [v.astype(np.uint8) for v in synthetic_views({views}, {height}, {width})]

def timed(fn):
    fn()  # warm-up: first-call allocations, oneDNN kernel selection
    times = []
    for _ in range({repeats}):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)

def count_flops(fn):  # our children only: benchmarks/_common.py counts (upstream's children never call this)
    from _common import count_flops_by_op
    counts = count_flops_by_op(fn)
    return None if counts is None else sum(counts.values())

def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def report(seconds, flops=None, rss=None):  # rss: the peak before the FLOP count, which is not inference
    print(json.dumps({{"s": seconds, "rss_mib": rss if rss is not None else peak_rss_mib(), "flops": flops}}))
"""

# children: (label, side, body); bodies end with report(...)
_DA3_UPSTREAM = r"""
from depth_anything_3.api import DepthAnything3
api = DepthAnything3(model_name="da3-small")
api.model.load_state_dict(random_state_dict({k: tuple(v.shape) for k, v in api.model.state_dict().items()}, 0))
api.eval()
report(timed(lambda: api.inference([v.copy() for v in views], process_res=504)))
"""

_DA3_UPSTREAM_FP32 = (
    r"""
import contextlib
torch.autocast = lambda *args, **kwargs: contextlib.nullcontext()  # float32 end to end, as the parity fixtures
"""
    + _DA3_UPSTREAM
)

_DA3_OURS = r"""
import anydepth
from anydepth.pipelines.multiview import MultiViewModel
from anydepth.pipelines.runtime import resolve_precision, tune_allocator
from anydepth.presets import get_preset
preset = get_preset("da3-small")
net = fill_(anydepth.build_network(preset)).eval()
dev = torch.device("cpu")
tune_allocator("keep")
model = MultiViewModel(net, preset, dev, resolve_precision({precision!r}, dev))  # what load_model("da3-small") builds
from anydepth.pipelines.da3_preprocess import preprocess_da3
x = preprocess_da3(views, process_res=504).images[None]
seconds = timed(lambda: model.infer(views, process_res=504))
rss = peak_rss_mib()
report(seconds, count_flops(lambda: net(x)), rss)
"""

_V2_UPSTREAM = r"""
from depth_anything_v2.dpt import DepthAnythingV2
model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
model.load_state_dict(random_state_dict({k: v.shape for k, v in model.state_dict().items()}, 0))
model.eval()
image = views[0][..., ::-1].copy()
report(timed(lambda: model.infer_image(image, 518)))
"""

_V2_OURS = r"""
from anydepth.compat import DepthAnythingV2
model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384], precision={precision!r})
model.load_state_dict(random_state_dict({k: v.shape for k, v in model.state_dict().items()}, 0))
model.eval()
image = views[0][..., ::-1].copy()
x, _ = model.image2tensor(image, 518)
with torch.inference_mode():
    seconds = timed(lambda: model.infer_image(image, 518))
rss = peak_rss_mib()
report(seconds, count_flops(lambda: model(x)), rss)
"""

_V2_NATIVE = r"""
import anydepth
from anydepth.pipelines.mono import MonoDepthModel
from anydepth.pipelines.runtime import resolve_precision, tune_allocator
from anydepth.presets import get_preset
preset = get_preset("dav2-small")
net = fill_(anydepth.build_network(preset)).eval()
dev = torch.device("cpu")
tune_allocator("keep")
model = MonoDepthModel(net, preset, dev, resolve_precision("auto", dev))  # what load_model("dav2-small") builds
report(timed(lambda: model.infer(views[0])))
"""

# Video Depth Anything: upstream is not on PyPI; --vda-upstream names a checkout of its repository
_VDA_FRAMES = r"""
frames = np.stack([np.roll(views[i % len(views)], 7 * i, axis=1) for i in range({frames})])  # T x H x W x 3 RGB
"""

_VDA_UPSTREAM = (
    _VDA_FRAMES
    + r"""
sys.path.insert(0, {vda_upstream!r})
from video_depth_anything.video_depth import VideoDepthAnything
model = VideoDepthAnything(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
state = model.state_dict()
filled = random_state_dict({k: tuple(v.shape) for k, v in state.items()}, 0)
filled.update({k: v for k, v in state.items() if k.endswith("pos_encoder.pe")})  # sinusoid tables, as shipped
model.load_state_dict(filled)
model.eval()
fp32 = {precision!r} == "fp32"
report(timed(lambda: model.infer_video_depth(frames, 30, input_size={input_size}, device="cpu", fp32=fp32)))
"""
)

_VDA_OURS = (
    _VDA_FRAMES
    + r"""
from anydepth.compat import VideoDepthAnything
model = VideoDepthAnything(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
state = model.state_dict()
filled = random_state_dict({k: tuple(v.shape) for k, v in state.items()}, 0)
filled.update({k: v for k, v in state.items() if k.endswith("pos_encoder.pe")})
model.load_state_dict(filled)
model.eval()
fp32 = {precision!r} == "fp32"
report(timed(lambda: model.infer_video_depth(frames, 30, input_size={input_size}, device="cpu", fp32=fp32)))
"""
)


def _run_child(python: str, body: str, fmt: Dict[str, object]) -> Dict[str, float]:
    code = _PRELUDE.format(**fmt) + body
    for name in ("precision", "vda_upstream", "frames", "input_size"):  # the bodies' own placeholders
        code = code.replace(f"{{{name}!r}}", repr(fmt.get(name, "auto"))).replace(f"{{{name}}}", str(fmt.get(name)))
    env = {"PYTHONPATH": str(ROOT / "src")} if python == sys.executable else {}
    import os

    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-python", required=True, help="python of the upstream side environment")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per child (median)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians over rounds, speed-ups paired by round"
    )
    parser.add_argument("--only", choices=("da3", "v2", "vda"), default=None)
    parser.add_argument(
        "--no-upstream-default",
        action="store_true",
        help="leave out upstream's default run (DA3's fp16 autocast takes minutes per call where oneDNN is held to "
        "AVX2); the speed-ups are then against upstream's float32 run",
    )
    parser.add_argument(
        "--vda-upstream",
        type=Path,
        default=None,
        help="checkout of DepthAnything/Video-Depth-Anything (the vda suite runs only with it)",
    )
    parser.add_argument("--vda-frames", type=int, default=54, help="frames of the vda suite (54 = two windows)")
    parser.add_argument("--vda-input-size", type=int, default=280, help="input_size of the vda suite")
    args = parser.parse_args()

    import torch

    peaks = {"float32": matmul_peak_gflops("float32"), "bfloat16": matmul_peak_gflops("bfloat16")}
    sys.path.insert(0, str(ROOT / "src"))
    from anydepth.pipelines.runtime import auto_picks_cpu_bf16

    auto_peak = "bfloat16" if auto_picks_cpu_bf16() else "float32"  # what "auto" runs here, as the children see it
    common = {
        "root": str(ROOT),
        "height": 480,
        "width": 640,
        "repeats": args.repeats,
        "vda_upstream": str(args.vda_upstream),
        "frames": args.vda_frames,
        "input_size": args.vda_input_size,
    }
    suites = {
        "da3": (
            "DA3-small, 4 views of 640x480, process_res 504",
            4,
            [
                ("upstream `DepthAnything3.inference` (default: fp16 autocast on CPU)", args.upstream_python,
                 _DA3_UPSTREAM, None),
                ("anydepth `load_model('da3-small').infer` (default: precision auto)", sys.executable, _DA3_OURS,
                 "auto"),
                ("upstream, float32 (autocast off)", args.upstream_python, _DA3_UPSTREAM_FP32, None),
                ("anydepth, precision fp32 (upstream's float32 numbers)", sys.executable, _DA3_OURS, "fp32"),
            ],
        ),
        "v2": (
            "Depth Anything V2 vits, one 640x480 image, input_size 518",
            1,
            [
                ("upstream `DepthAnythingV2.infer_image` (fp32, its only mode)", args.upstream_python, _V2_UPSTREAM,
                 None),
                ("anydepth `load_model('dav2-small').infer` (default: precision auto)", sys.executable, _V2_NATIVE,
                 "auto"),
                ("anydepth `compat.DepthAnythingV2.infer_image`, precision auto", sys.executable, _V2_OURS, "auto"),
                ("anydepth `compat.DepthAnythingV2.infer_image`, precision fp32 (default)", sys.executable, _V2_OURS,
                 "fp32"),
            ],
        ),
        "vda": (
            f"Video Depth Anything vits, {args.vda_frames} frames of 640x480, input_size {args.vda_input_size}",
            args.vda_frames,
            [
                ("upstream `VideoDepthAnything.infer_video_depth` (default: bf16 autocast on CPU)",
                 args.upstream_python, _VDA_UPSTREAM, "auto"),
                ("anydepth `compat.VideoDepthAnything.infer_video_depth` (default, as upstream)", sys.executable,
                 _VDA_OURS, "auto"),
                ("upstream, fp32=True", args.upstream_python, _VDA_UPSTREAM, "fp32"),
                ("anydepth, fp32=True (upstream's float32 numbers)", sys.executable, _VDA_OURS, "fp32"),
            ],
        ),
    }  # fmt: skip
    if args.vda_upstream is None:
        suites.pop("vda")
    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"matmul peak measured here: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s; "
          f"median of {args.repeats} calls per child, median over {args.rounds} alternating rounds\n")  # fmt: skip
    for key, (title, views, configs) in suites.items():
        if args.only and key != args.only:
            continue
        if args.no_upstream_default and key != "v2":  # V2's default is its float32 run
            configs = configs[2:3] + configs[1:2] + configs[3:]
        rounds: List[List[Dict[str, float]]] = [[] for _ in configs]
        for _ in range(args.rounds):
            for i, (_, python, body, precision) in enumerate(configs):
                rounds[i].append(_run_child(python, body, {**common, "views": views, "precision": precision}))
        print(f"**{title}**\n")
        print("| run | s | speed-up (range) | images/s | peak RSS | GFLOP/s (share of the bf16 / fp32 peak) |")
        print("|---|--:|--:|--:|--:|--|")
        for (label, _, _, precision), outs in zip(configs, rounds):
            seconds = statistics.median(out["s"] for out in outs)
            # each round's ratio pairs runs a minute apart, so a slower or faster spell of the host hits both sides
            ratios = [base["s"] / out["s"] for base, out in zip(rounds[0], outs)]
            spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
            flops = next((out["flops"] for out in outs if out.get("flops")), None)
            gflops = ""
            if flops:
                rate = flops / seconds / 1e9
                peak = peaks[auto_peak if precision == "auto" else "float32"]
                gflops = f"{rate:.0f} ({100 * rate / peak:.0f}% of {peak:.0f}; {flops / 1e9:.0f} GFLOP)"
            rss = max(out["rss_mib"] for out in outs)
            print(f"| {label} | {seconds:.3f} | {statistics.median(ratios):.2f}x{spread} | {views / seconds:.2f} | "
                  f"{rss:.0f} MiB | {gflops} |")  # fmt: skip
        print()


if __name__ == "__main__":
    main()
