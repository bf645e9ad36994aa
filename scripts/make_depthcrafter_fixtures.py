"""Make the DepthCrafter parity fixtures by running the UPSTREAM pipeline on tiny random networks.

How to regenerate
-----------------
Upstream is not on PyPI. Export its two pipeline files from a checkout of Tencent/DepthCrafter (the fixtures were
made at commit e518612, "refactor the code") and run, from this repository's root, in an environment with torch,
diffusers and transformers (the project's own venv has them with ``pip install -e .[depthcrafter]``)::

    git clone https://github.com/Tencent/DepthCrafter /tmp/dc_checkout
    mkdir -p /tmp/dc_upstream/depthcrafter && touch /tmp/dc_upstream/depthcrafter/__init__.py
    cp /tmp/dc_checkout/depthcrafter/{depth_crafter_ppl,unet}.py /tmp/dc_upstream/depthcrafter/
    python scripts/make_depthcrafter_fixtures.py --upstream /tmp/dc_upstream

It takes under a minute and overwrites ``tests/fixtures/depthcrafter_parity.npz``:

- per case ``<case>_raw``: upstream's output before its whole-video normalisation (``pipe(...).frames[0]``, the
  mean over the colour channels, as ``DepthCrafterInference.infer`` takes it), float32, every second pixel in
  both directions (``[:, ::2, ::2]``) to keep the file small; ``<case>_min`` / ``<case>_max``: the full maps'
  range, which the normalisation uses;
- ``cases_json`` (frames, window, overlap, steps, guidance, decode chunk, seed of each case) and ``meta_json``
  (versions, upstream commit, the frames' checksum).

The networks are :mod:`tests.helpers.depthcrafter_tiny`'s (weights from (name, shape, seed)), the frames
``depthcrafter_tiny.synthetic_frames``. The noise follows anydepth's two streams: upstream gets
``generator=torch.Generator().manual_seed(seed)`` (noise augmentation) and
``latents=torch.randn(..., generator=torch.Generator().manual_seed(seed + 1))`` (initial latents), both public
arguments of its pipeline; everything else is upstream's code path in float32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.depthcrafter_tiny import VAE_CONFIG, build_networks, synthetic_frames  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
NETWORK_SEED = 0
SIZE = 64  # frame side: a multiple of 64, as DepthCrafter's processing sizes are
CASES = {
    # three windows: (0, 6), (4, 10), (8, 11); two overlaps blended, a short last window
    "windows": dict(frames=11, window=6, overlap=2, steps=5, guidance=1.0, decode_chunk=4, seed=42),
    # no longer than one window: one window, no overlap
    "single": dict(frames=5, window=6, overlap=2, steps=3, guidance=1.0, decode_chunk=4, seed=7),
    # classifier-free guidance: the unconditional branch runs
    "guided": dict(frames=8, window=5, overlap=2, steps=2, guidance=2.0, decode_chunk=3, seed=3),
}


def initial_latents(case: dict) -> torch.Tensor:
    """The initial latents anydepth draws: ``(1, window, 4, h, w)`` from a generator seeded ``seed + 1``."""
    window = case["frames"] if case["frames"] <= case["window"] else case["window"]
    side = SIZE // 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1)
    return torch.randn((1, window, 4, side, side), generator=torch.Generator().manual_seed(case["seed"] + 1))


def run_upstream(upstream: Path) -> dict:
    sys.path.insert(0, str(upstream))
    from depthcrafter.depth_crafter_ppl import DepthCrafterPipeline
    from depthcrafter.unet import DiffusersUNetSpatioTemporalConditionModelDepthCrafter
    from transformers import CLIPImageProcessor

    unet, vae, encoder, scheduler = build_networks(
        NETWORK_SEED, unet_class=DiffusersUNetSpatioTemporalConditionModelDepthCrafter
    )
    pipe = DepthCrafterPipeline(
        vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler, feature_extractor=CLIPImageProcessor()
    )
    pipe.set_progress_bar_config(disable=True)
    out = {}
    for name, case in CASES.items():
        frames = synthetic_frames(case["frames"], SIZE, SIZE).numpy().astype(np.float32) / 255.0
        with torch.inference_mode():
            result = pipe(
                frames,
                height=SIZE,
                width=SIZE,
                output_type="np",
                guidance_scale=case["guidance"],
                num_inference_steps=case["steps"],
                window_size=case["window"],
                overlap=case["overlap"],
                decode_chunk_size=case["decode_chunk"],
                generator=torch.Generator().manual_seed(case["seed"]),
                latents=initial_latents(case),
            ).frames[0]
        raw = result.sum(-1) / result.shape[-1]  # as upstream's DepthCrafterInference.infer
        out[f"{name}_raw"] = np.ascontiguousarray(raw[:, ::2, ::2]).astype(np.float32)
        out[f"{name}_min"], out[f"{name}_max"] = np.float32(raw.min()), np.float32(raw.max())
        print(f"{name}: {raw.shape}, range {raw.min():.4f}..{raw.max():.4f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, required=True, help="folder holding upstream's depthcrafter/")
    args = parser.parse_args()
    import diffusers
    import transformers

    torch.set_num_threads(1)  # the same reductions on every machine
    out = run_upstream(args.upstream)
    frames_sum = {name: int(synthetic_frames(c["frames"], SIZE, SIZE).sum()) for name, c in CASES.items()}
    meta = {
        "upstream": "Tencent/DepthCrafter e5186120a71ecb56b69f9e89654198b4eadfaf60",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "network_seed": NETWORK_SEED,
        "size": SIZE,
        "frames_sum": frames_sum,
    }
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / "depthcrafter_parity.npz"
    np.savez_compressed(path, cases_json=json.dumps(CASES), meta_json=json.dumps(meta), **out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
