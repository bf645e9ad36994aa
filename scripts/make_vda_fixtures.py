"""Make the Video Depth Anything parity fixtures by running the UPSTREAM reference code on random weights.

How to regenerate
-----------------
Upstream is not on PyPI: export a checkout of DepthAnything/Video-Depth-Anything (the fixtures were made at
commit 4f5ae23, "Update README.md (#96)") and run, from the repository root, in the side environment that holds
the upstream dependencies (see ``scripts/make_v2_fixtures.py``; this one also needs ``einops`` and ``easydict``)::

    git clone https://github.com/DepthAnything/Video-Depth-Anything /tmp/vda_upstream
    /work/upvenv/bin/python scripts/make_vda_fixtures.py --upstream /tmp/vda_upstream

It takes about a minute and overwrites, in ``tests/fixtures/``:

- ``vda_parity.npz``: synthetic RGB uint8 frames (``frames``, T x 18 x 24 x 3), and one expected output per
  case (``expected_<case>``) with ``cases_json`` describing them and ``meta_json`` (versions, commit):
  ``forward`` (the network on a normalised clip drawn from ``RandomState(seed).standard_normal``),
  ``windowed`` / ``metric`` (``infer_video_depth`` with ``fp32=True`` on the CPU: several windows, keyframe
  alignment, cross-fades; the metric checkpoint skips the alignment) and ``streaming``
  (``video_depth_stream.VideoDepthAnything.infer_video_depth_one`` frame by frame, past the frame where the
  cache starts to slide).
- ``vda_keys.json``: ``{"vits"|"vitb"|"vitl": {key: shape}}`` of the upstream state dicts.

Weights are not stored: ``tests/helpers/random_weights.py`` fills every key from (key name, shape, seed), except the
temporal position tables ``*.pos_encoder.pe``, which keep upstream's sinusoids (they are buffers saved in the
official files; the tests use the same formula).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.random_weights import random_state_dict, shapes_of, write_key_lists  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
HEAD_WIDTHS = {
    "vits": (64, [48, 96, 192, 384]),
    "vitb": (128, [96, 192, 384, 768]),
    "vitl": (256, [256, 512, 1024, 1024]),
}
SEED = 3
FRAME_HW = (18, 24)
NUM_FRAMES = 48

# name, kind, number of frames, input_size (forward: clip shape T, H, W)
CASES = [
    ("forward", "forward", 5, (42, 56)),
    ("windowed", "windowed", 48, 56),
    ("metric", "metric", 30, 56),
    ("streaming", "streaming", 45, 56),
]


def synth_video(n: int, h: int, w: int, seed: int = 11) -> np.ndarray:
    """(n, h, w, 3) RGB uint8: a textured background panning slowly and a disc crossing it, plus noise."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    phases = rs.uniform(0, 2 * math.pi, size=3)
    for t in range(n):
        img = np.empty((h, w, 3))
        for c in range(3):
            img[..., c] = 120 + 60 * np.sin(2 * math.pi * (xx + 0.7 * t) / (w * (0.6 + 0.2 * c)) + phases[c])
            img[..., c] += 40 * yy / h
        cy, cx = h / 2 + 0.25 * h * math.sin(t / 9), (t * 0.9) % w
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.3 * h) ** 2] = (230, 60, 40)
        img += rs.normal(0.0, 5.0, size=img.shape)
        frames.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return np.stack(frames)


def normal_clip(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """(1, t, 3, h, w) float32 standard normal input, the same on every numpy version."""
    return np.random.RandomState(seed).standard_normal((1, t, 3, h, w)).astype(np.float32)


def load_random(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    sd = model.state_dict()
    weights = random_state_dict({k: v.shape for k, v in sd.items() if not k.endswith(".pos_encoder.pe")}, seed)
    model.load_state_dict({**sd, **weights}, strict=True)
    return model.float().eval()


def check_spread(name: str, depth: np.ndarray) -> None:
    """Refuse degenerate references (all zero, constant): they could not catch errors."""
    assert depth.dtype == np.float32 and np.isfinite(depth).all(), name
    mean, std = float(np.abs(depth).mean()), float(depth.std())
    zero_frac = float((depth == 0).mean())
    assert mean > 0 and std / mean > 0.02, f"{name}: degenerate output (mean {mean:.3g}, std {std:.3g})"
    assert zero_frac < 0.2, f"{name}: {zero_frac:.0%} of the output is clamped to zero"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, required=True, help="checkout of Video-Depth-Anything")
    args = parser.parse_args()
    sys.path.insert(0, str(args.upstream))
    from video_depth_anything import video_depth_stream
    from video_depth_anything.video_depth import VideoDepthAnything

    torch.manual_seed(0)
    features, out_channels = HEAD_WIDTHS["vits"]
    frames = synth_video(NUM_FRAMES, *FRAME_HW)
    arrays = {"frames": frames}
    cases = []
    for name, kind, n, size in CASES:
        if kind == "streaming":
            model = load_random(video_depth_stream.VideoDepthAnything("vits", features, out_channels), SEED)
            clip = frames[:n].copy()
            depth = np.stack([model.infer_video_depth_one(f, input_size=size, device="cpu", fp32=True) for f in clip])
        else:
            model = VideoDepthAnything("vits", features, out_channels, metric=kind == "metric")
            model = load_random(model, SEED)
            if kind == "forward":
                with torch.no_grad():
                    depth = model(torch.from_numpy(normal_clip(n, *size, seed=SEED)))[0].numpy()
            else:
                clip = frames[:n].copy()
                depth, fps = model.infer_video_depth(clip, 30, input_size=size, device="cpu", fp32=True)
                assert fps == 30 and np.array_equal(clip, frames[:n]), "upstream changed its input"
        depth = depth.astype(np.float32)
        check_spread(name, depth)
        arrays[f"expected_{name}"] = depth
        cases.append({"name": name, "kind": kind, "frames": n, "size": size, "seed": SEED, "encoder": "vits",
                      "features": features, "out_channels": out_channels})  # fmt: skip
        print(f"{name}: {depth.shape} {depth.min():.4g}..{depth.max():.4g}")
    commit = subprocess.run(["git", "-C", str(args.upstream), "rev-parse", "HEAD"], capture_output=True, text=True)
    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "upstream_commit": commit.stdout.strip() or "4f5ae23 (exported tree)",
    }
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(json.dumps(meta))
    np.savez_compressed(FIXTURES / "vda_parity.npz", **arrays)

    keys = {}
    for encoder, (features, out_channels) in HEAD_WIDTHS.items():
        keys[encoder] = shapes_of(VideoDepthAnything(encoder, features, out_channels).state_dict())
        gc.collect()
        print(f"keys {encoder}: {len(keys[encoder])}")
    write_key_lists(FIXTURES / "vda_keys.json", keys)


if __name__ == "__main__":
    main()
