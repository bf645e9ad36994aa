"""Record the built-in model's output on two synthetic scenes in tests/fixtures/anydepth_nano.npz, for
tests/builtin/test_nano.py.

What the file holds (two scenes the model never saw in training, whose seeds are outside every training and
held-out range of its card):

- ``images`` (2, 126, 168, 3) uint8: view 0 of ``indoor_scene(200000)`` and of ``outdoor_scene(200001)``, rendered
  by :mod:`anydepth.bench.synthetic` at 168x126 (stored, so the test does not depend on the generator's numbers);
- ``depth`` (2, 126, 168) float32: their ground-truth z-depth (0 where there is none: the sky);
- ``disparity`` (2, 126, 168) float32: the bundled ``anydepth-nano`` weights' output on ``images``, in float32
  (``precision="fp32"``), at the preset's processing size (98 px shorter side: resized down and the output back).

Run it after the weights change (scripts/make_builtin_model.py), in the project's environment:

    PYTHONPATH=src python scripts/make_builtin_fixtures.py

Recorded with torch 2.13.0 (CPU), NumPy 2, on an Intel Xeon (AMX) with one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "anydepth_nano.npz"
WIDTH, HEIGHT = 168, 126
SEEDS = {"indoor": 200000, "outdoor": 200001}


def render_scenes():
    """(images (2, H, W, 3) uint8, depth (2, H, W) float32) of the two scenes."""
    from anydepth.bench import synthetic

    images, depths = [], []
    for kind, seed in SEEDS.items():
        scene = synthetic.indoor_scene(seed) if kind == "indoor" else synthetic.outdoor_scene(seed)
        pose = synthetic.orbit(scene, 2, seed=seed)[0]
        frame = synthetic.render(scene, pose, synthetic.intrinsics_for(WIDTH, HEIGHT), WIDTH, HEIGHT)
        images.append(frame.image)
        depths.append(np.where(frame.valid, frame.depth, 0.0).astype(np.float32))
    return np.stack(images), np.stack(depths)


def main() -> None:
    import anydepth

    torch.set_num_threads(1)
    images, depth = render_scenes()
    model = anydepth.load_model("anydepth-nano", device="cpu", precision="fp32")
    disparity = model.infer(list(images)).depth.astype(np.float32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, images=images, depth=depth, disparity=disparity)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
