"""DepthCrafter against upstream's pipeline, side by side in one run: the same networks, frames and options.

Upstream is not on PyPI: ``--upstream`` names a folder holding its ``depthcrafter/`` package (``unet.py`` and
``depth_crafter_ppl.py`` of a Tencent/DepthCrafter checkout, as ``scripts/make_depthcrafter_fixtures.py`` says).
Both run on the CPU in child processes (alternating rounds) with diffusers' classes filled with deterministic
random weights (``tests/helpers/depthcrafter_tiny.py``), saved in the official folder layout that anydepth loads:

- ``--config tiny``: the test networks (a 2-level UNet of widths 32 and 64), 64x64 frames;
- ``--config real``: Stable Video Diffusion's real UNet, VAE and CLIP ViT-H shapes (2.1 G parameters: about 9
  GB of float32 weights), at a small frame size, so that the per-step costs are the real model's.

Upstream runs as its CPU users must (float32: its float16 is CUDA's); anydepth with its default precision and
with ``--precision`` each. Prints one JSON line per run and a table of the ratios with their range over rounds, and
the mean relative error of each anydepth precision against upstream's output. ``--traced`` adds a run whose
UNet is a frozen TorchScript graph, traced per input shape in the untimed first call: not a mode of anydepth but
the bound of what removing Python from the UNet could buy, where the run is bound by dispatch (the tiny
networks)::

    PYTHONPATH=src python benchmarks/depthcrafter_speed.py --upstream /tmp/dc_upstream --config tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]

REAL_UNET = dict(
    in_channels=8, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    cross_attention_dim=1024, transformer_layers_per_block=1, num_attention_heads=(5, 10, 20, 20),
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=768, num_frames=25,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
)  # fmt: skip
REAL_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=768,
    scaling_factor=0.18215, force_upcast=True,
)  # fmt: skip
REAL_CLIP = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                 image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")  # fmt: skip

_CHILD = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
from tests.helpers.depthcrafter_tiny import synthetic_frames
torch.manual_seed(0)
options = {options!r}
frames = synthetic_frames(options["frames"], options["size"], options["size"]).numpy()
side = {side!r}
latents = torch.randn((1, min(options["frames"], options["window"]), 4, options["size"] // 8 * 8 // side,
                       options["size"] // 8 * 8 // side), generator=torch.Generator().manual_seed(options["seed"] + 1))
if {who!r} == "upstream":
    sys.path.insert(0, {upstream!r})
    from depthcrafter.depth_crafter_ppl import DepthCrafterPipeline
    from depthcrafter.unet import DiffusersUNetSpatioTemporalConditionModelDepthCrafter
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    folder = {folder!r}
    pipe = DepthCrafterPipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(folder + "/svd/vae"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(folder + "/svd/image_encoder"),
        unet=DiffusersUNetSpatioTemporalConditionModelDepthCrafter.from_pretrained(folder + "/DepthCrafter/unet"),
        scheduler=EulerDiscreteScheduler.from_pretrained(folder + "/svd/scheduler"),
        feature_extractor=CLIPImageProcessor(),
    )
    pipe.set_progress_bar_config(disable=True)
    def run():
        with torch.inference_mode():
            out = pipe(frames.astype(np.float32) / 255.0, height=options["size"], width=options["size"],
                       output_type="np", guidance_scale=options["guidance"], num_inference_steps=options["steps"],
                       window_size=options["window"], overlap=options["overlap"],
                       decode_chunk_size=options["decode_chunk"], latents=latents.clone(),
                       generator=torch.Generator().manual_seed(options["seed"])).frames[0]
        return out.sum(-1) / out.shape[-1]
else:
    import anydepth
    folder = {folder!r}
    model = anydepth.load_model("depthcrafter", weights=folder + "/DepthCrafter", svd_weights=folder + "/svd",
                                device="cpu", precision={precision!r})
    if {traced!r}:
        # a bound, not a mode: the UNet as one frozen TorchScript graph per input shape, no Python inside it
        import warnings

        class _Call(torch.nn.Module):
            def __init__(self, unet):
                super().__init__()
                self.unet = unet

            def forward(self, sample, t, context, ids):
                return self.unet(sample, t, encoder_hidden_states=context, added_time_ids=ids, return_dict=False)[0]

        class _Traced:
            def __init__(self, unet):
                self.call, self.graphs = _Call(unet).eval(), {{}}

            def __call__(self, sample, t, encoder_hidden_states, added_time_ids, return_dict=False):
                key = tuple(sample.shape)
                if key not in self.graphs:
                    inputs = (sample, t, encoder_hidden_states, added_time_ids)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self.graphs[key] = torch.jit.freeze(torch.jit.trace(self.call, inputs, check_trace=False))
                return (self.graphs[key](sample, t, encoder_hidden_states, added_time_ids),)

        object.__setattr__(model.components, "unet", _Traced(model.components.unet))
    def run():
        return np.stack(list(model.infer_frames(frames, seed=options["seed"], align=False, steps=options["steps"],
                        guidance=options["guidance"], window=options["window"], overlap=options["overlap"],
                        decode_chunk_size=options["decode_chunk"], max_res=options["size"])))
if {warmup!r}:
    run()  # first-call allocations and kernel choices
start = time.perf_counter(); depth = run(); seconds = time.perf_counter() - start
np.save({out!r}, depth.astype(np.float32))
# this process's own peak (VmHWM starts afresh at exec; ru_maxrss would carry the parent's over)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "rss_mib": peak / 1024}}))
"""


def make_folders(root: Path, config: str) -> int:
    """Random networks in the official layouts under ``root``; returns the VAE's downsampling factor."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import depthcrafter_tiny as tiny

    configs = {"unet": REAL_UNET, "vae": REAL_VAE, "clip": REAL_CLIP} if config == "real" else {}
    tiny.save_official_layout(root, seed=0, configs=configs)
    vae = configs.get("vae", tiny.VAE_CONFIG)
    return 2 ** (len(vae["block_out_channels"]) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="folder holding upstream's depthcrafter/ package")
    parser.add_argument("--config", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--precisions", default="auto,fp32,bf16", help="anydepth's precisions to run")
    parser.add_argument(
        "--traced",
        action="store_true",
        help="add a run of the first precision with the UNet as a frozen TorchScript graph: how "
        "fast the run would be with no Python in the UNet (traced in an untimed first call)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=None, help="frame side (tiny: 64, real: 128)")
    parser.add_argument("--steps", type=int, default=5, help="upstream's default: 5")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="a first untimed call (default: tiny only)")
    args = parser.parse_args()
    size = args.size or (64 if args.config == "tiny" else 128)
    options = dict(frames=args.frames, size=size, steps=args.steps, guidance=1.0, window=12, overlap=4,
                   decode_chunk=8, seed=42)  # fmt: skip
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        side = make_folders(Path(tmp), args.config)
        runs = ["upstream"] + [f"anydepth {p}" for p in args.precisions.split(",")]
        if args.traced:
            runs.append(f"anydepth {args.precisions.split(',')[0]} traced")
        seconds = {r: [] for r in runs}
        rss = {}
        for round_ in range(args.rounds):
            for run in runs:
                who, _, rest = run.partition(" ")
                precision, _, mode = rest.partition(" ")
                warmup = bool(args.warmup if args.warmup is not None else args.config == "tiny") or mode == "traced"
                code = _CHILD.format(root=str(ROOT), options=options, side=side, who=who, upstream=args.upstream,
                                     folder=tmp, precision=precision or "fp32", out=f"{tmp}/{who}{rest}.npy",
                                     warmup=warmup, traced=mode == "traced")  # fmt: skip
                env = None
                if args.threads:
                    import os

                    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                      cwd=str(ROOT))  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"{run} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                seconds[run].append(result["seconds"])
                rss[run] = result["rss_mib"]
                print(json.dumps({"round": round_, "run": run, **result}), flush=True)
        theirs = np.load(f"{tmp}/upstream.npy")
        errors = {}
        for run in runs[1:]:
            mine = np.load(f"{tmp}/anydepth{run.partition(' ')[2]}.npy")
            errors[run] = float(np.mean(np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-6)))
    print(f"\nDepthCrafter ({args.config} networks), {args.frames} frames of {size}x{size}, window 12, overlap 4, "
          f"{args.steps} steps, guidance 1; CPU: {cpu_model()}; {args.rounds} alternating rounds")  # fmt: skip
    print("| run | s (median) | speed-up (range) | peak RSS | mean rel. error vs upstream |")
    print("|---|--:|--:|--:|--:|")
    base = seconds["upstream"]
    for run in runs:
        ratios = [b / s for b, s in zip(base, seconds[run])]
        err = "-" if run == "upstream" else f"{errors[run]:.2%}"
        print(f"| {run} | {statistics.median(seconds[run]):.3f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {rss[run]:.0f} MiB | {err} |")  # fmt: skip


if __name__ == "__main__":
    main()
