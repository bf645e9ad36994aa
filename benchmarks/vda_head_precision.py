"""Video Depth Anything's head in bf16, part by part: the depth error each part costs and the time it saves.

The precision policy keeps the whole temporal DPT head in float32 (``VideoDepthAnythingNet.float32_submodules``);
upstream's CPU default runs it under bf16 autocast. This script puts named parts of the head (and combinations)
back under bf16 autocast, one window of frames at a time, on random weights in the official layout, and reports
for each: the mean relative error of the depth against float32 (``mean|d - ref| / mean|ref|``, the policy's 1%
budget), per seed, and the time of one window against the policy's own bf16 run.

The hand-fused oneDNN kernels do not follow autocast (``layers.dpt_blocks``), so every run here, float32 and the
policy's bf16 included, takes the plain paths (``set_fast_paths(False)``): the times compare like with like, and
are not the pipeline's. Each part's output is cast back to float32, as the float32 regions around it expect::

    PYTHONPATH=src python benchmarks/vda_head_precision.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

from _common import cpu_model, synthetic_views

ROOT = Path(__file__).resolve().parents[1]

# the parts of TemporalDPTHead, in the order the data meets them
PARTS = ("reassemble", "motion", "low_fusion", "high_fusion", "output_conv1", "output_conv2")
DEFAULT_VARIANTS = [[p] for p in PARTS] + [list(PARTS[:3]), list(PARTS[:4]), list(PARTS)]


def _parts(head: Any) -> Dict[str, List[Any]]:
    s = head.scratch
    return {
        "reassemble": [*head.projects, *head.resize_layers, s.layer2_rn, *getattr(head, "readout_projects", [])],
        "motion": list(head.motion_modules),
        "low_fusion": [s.layer3_rn, s.layer4_rn, s.refinenet4, s.refinenet3],
        "high_fusion": [s.layer1_rn, s.refinenet2, s.refinenet1],
        "output_conv1": [s.output_conv1],
        "output_conv2": [s.output_conv2],
    }


def _float32(value: Any) -> Any:
    import torch

    if torch.is_tensor(value):
        return value.float()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (FrameLevels)
        return type(value)(*(_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    return value


@contextlib.contextmanager
def bf16_parts(modules: Sequence[Any]) -> Iterator[None]:
    """Inside the block, each module's forward runs under CPU bf16 autocast and returns float32."""
    import torch

    def under_bf16(forward: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return _float32(forward(*args, **kwargs))

        return run

    for module in modules:
        module.forward = under_bf16(module.forward)
    try:
        yield
    finally:
        for module in modules:
            del module.forward  # back to the class's forward


def _frames(count: int, height: int, width: int) -> Any:
    """One window of ImageNet-normalised frames (1, count, 3, height, width): shifted gradients with noise."""
    import numpy as np
    import torch

    views = [v / 255.0 for v in synthetic_views(4, height, width)]
    frames = np.stack([np.roll(views[i % 4], 7 * i, axis=1) for i in range(count)])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((frames - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    return x[None].contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random weight draws")
    parser.add_argument("--frames", type=int, default=32, help="one window (the official checkpoints': 32)")
    parser.add_argument("--size", type=int, nargs=2, default=[280, 378], metavar=("H", "W"),
                        help="network input (default: what input_size 280 makes of 640x480)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per variant (the median is kept)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    from tests.helpers.random_weights import random_state_dict

    from anydepth.compat import VideoDepthAnything
    from anydepth.layers.precision import PrecisionPolicy, set_fast_paths

    set_fast_paths(False)
    cpu = torch.device("cpu")
    x = _frames(args.frames, *args.size)
    net = VideoDepthAnything(encoder="vits", features=64, out_channels=[48, 96, 192, 384]).eval()
    blank = net.state_dict()
    parts = _parts(net.head)

    def run(policy: Any, modules: Sequence[Any]) -> Any:
        policy.apply(net)
        seconds = []
        with torch.inference_mode(), policy.autocast(cpu), bf16_parts(modules):
            for _ in range(max(1, args.repeats)):
                start = time.perf_counter()
                depth = net(x).float()
                seconds.append(time.perf_counter() - start)
        return depth, statistics.median(seconds)

    variants = [["(none: the policy)"], *DEFAULT_VARIANTS]
    errors: Dict[str, List[float]] = {" + ".join(v): [] for v in variants}
    times: Dict[str, List[float]] = {k: [] for k in errors}
    for seed in args.seeds:
        state = random_state_dict({k: tuple(v.shape) for k, v in blank.items()}, seed)
        state.update({k: v for k, v in blank.items() if k.endswith("pos_encoder.pe")})  # the sinusoid tables
        net.load_state_dict(state)
        reference, _ = run(PrecisionPolicy.for_precision("fp32"), [])
        for variant in variants:
            name = " + ".join(variant)
            modules = [m for p in variant if p in parts for m in parts[p]]
            depth, seconds = run(PrecisionPolicy.for_precision("bf16"), modules)
            errors[name].append(float((depth - reference).abs().mean() / reference.abs().mean()))
            times[name].append(seconds)
            print(f"seed {seed}: {name}: {errors[name][-1]:.2%}, {seconds:.2f} s", flush=True)

    base = statistics.median(times[" + ".join(variants[0])])
    print(f"\nVideo Depth Anything vits, head parts under bf16 autocast; one window of {args.frames} frames at "
          f"{args.size[0]}x{args.size[1]}, seeds {args.seeds}, plain paths; CPU: {cpu_model()}; "
          f"torch {torch.__version__}")  # fmt: skip
    print("| head parts in bf16 | mean rel. error vs fp32 (max over seeds) | s per window | vs the policy |")
    print("|---|--:|--:|--:|")
    for name in errors:
        seconds = statistics.median(times[name])
        print(f"| {name} | {statistics.median(errors[name]):.2%} ({max(errors[name]):.2%}) | {seconds:.2f} | "
              f"{base / seconds:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
