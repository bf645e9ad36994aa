"""Write the built-in model's weights, src/anydepth/builtin/anydepth-nano.safetensors, from an `anydepth train` run.

The run is the one the model card (src/anydepth/builtin/anydepth-nano.md) gives, with its command and seed; this
script only changes the file's form, never a weight's value beyond float16 rounding:

- the network state of the run's resumable checkpoint (``<run>/checkpoints/last.pt``, read with
  ``weights_only=True``), in the official Depth Anything V2 key layout it was trained in;
- stored as float16 (3.5 M parameters: 7 MB instead of 14 MB). The loader copies it into the float32 network, so
  the model runs in float32 (or under the precision policy) as any other V2 checkpoint; the held-out figures of the
  card are those of this float16 file;
- the file's metadata records the preset, the step, the seed and the training options (from ``<run>/train.json``)
  so that the file says where it comes from.

The written file is read back through the normal loader (strict) before the script ends.

    PYTHONPATH=src python scripts/make_builtin_model.py --run /work/nano-runs/nano
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

PRESET = "anydepth-nano"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "anydepth" / "builtin" / f"{PRESET}.safetensors"


def main() -> None:
    from safetensors.torch import save_file

    from anydepth.families import build_network, load_network_weights
    from anydepth.presets import get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the `anydepth train --out` folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    state = torch.load(str(args.run / "checkpoints" / "last.pt"), map_location="cpu", weights_only=True)
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in state["model"].items()}
    summary = json.loads((args.run / "train.json").read_text()) if (args.run / "train.json").is_file() else {}
    metadata = {
        "format": "pt",
        "preset": PRESET,
        "step": str(int(state["step"])),
        "options": json.dumps(summary.get("options", {}), sort_keys=True),
        "samples_per_second": str(summary.get("samples_per_second", "")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(args.out), metadata=metadata)
    args.out.chmod(0o644)  # safetensors writes 0600; package data is read by every user

    preset = get_preset(PRESET)
    load_network_weights(build_network(preset), preset, args.out)  # strict: every key, every shape
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB, step {metadata['step']}, {len(weights)} tensors)")


if __name__ == "__main__":
    main()
