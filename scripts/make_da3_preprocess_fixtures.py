"""Make the Depth Anything 3 preprocessing parity fixture by running the UPSTREAM InputProcessor (CPU).

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream package (never in the project's
own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_da3_preprocess_fixtures.py

That environment is CPU-only with torch 2.13, torchvision, numpy < 2, opencv-python-headless 4.11 and
``depth-anything-3==0.1.1``. It takes a few seconds and overwrites ``tests/fixtures/da3_preprocess.npz``:

- ``image_<i>``: the input images, (H, W, 3) uint8 RGB, made deterministically here (smooth ramps, a disc,
  a checkerboard and sparse noise on a few columns, so that both smooth areas and hard edges go through the resizes).
- ``intrinsics_in``: (3, 3, 3) float32 pinhole intrinsics given with the images.
- per case ``<case>__pixels``: (S, h, w, 3) uint8, the 8-bit images that upstream normalises. Upstream's
  (1, S, 3, h, w) tensor is exactly ``Normalize(ToTensor(pixels))``; the script asserts that bit for bit, so
  the tensor itself is not stored (it would be most of the file).
- ``<case>__processed_delta``: (S, h, w, 3) int8, upstream's ``processed_images`` (the api's
  ``_add_processed_images``: denormalise, clip, x255, truncate to uint8) minus ``pixels``.
- ``<case>__intrinsics``: (S, 3, 3) float32, upstream's intrinsics for the case run with ``intrinsics_in``.
- ``cases_json``: ``[{"name", "images": [indices], "process_res", "method"}]``; ``meta_json``: versions.
"""

from __future__ import annotations

import json
import platform
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.transforms as T

warnings.filterwarnings("ignore")

from depth_anything_3.utils.io.input_processor import InputProcessor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "da3_preprocess.npz"

SIZES = [(60, 80), (45, 70), (100, 64), (98, 56)]  # (H, W); the last one is already on the 98 / 56 bounds
METHODS = ["upper_bound_resize", "lower_bound_resize", "upper_bound_crop", "lower_bound_crop"]
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def make_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 255.0 * x / max(width - 1, 1)
    green = 255.0 * (0.5 + 0.5 * np.sin(y / 5.0 + seed))
    blue = np.where(((x // 8) + (y // 8)) % 2 == 0, 40.0, 215.0)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 4) ** 2
    red[disc] = 250.0
    green[disc] = 5.0
    image = (
        np.stack([red, green, blue], axis=-1) + rng.randint(-1, 2, size=(height, width, 3)) * (x % 16 == 0)[..., None]
    )
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_intrinsics(height: int, width: int, i: int) -> np.ndarray:
    return np.array(
        [[1.1 * width + i, 0.0, width / 2.0 + 0.3 * i], [0.0, 1.2 * width, height / 2.0 - 0.7], [0.0, 0.0, 1.0]],
        dtype=np.float32,
    )


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def upstream_processed_images(tensor: torch.Tensor) -> np.ndarray:
    # the api's _add_processed_images, verbatim in effect
    images = tensor.permute(0, 2, 3, 1).cpu().numpy()
    images = np.clip(images * STD + MEAN, 0, 1)
    return (images * 255).astype(np.uint8)


def main() -> None:
    images = [make_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    intrinsics_in = np.stack([make_intrinsics(h, w, i) for i, (h, w) in enumerate(SIZES)])
    # "mixed" exercises the centre crop to a common size; "single" sits on the 56 bound (the first resize is
    # skipped at 56 and enlarges at 98); "pair" has two equal sizes (no common crop)
    groups = {"mixed": [0, 1, 2], "single": [3], "pair": [1, 1]}
    processor = InputProcessor()
    normalize = T.Normalize(mean=MEAN.tolist(), std=STD.tolist())
    arrays = {f"image_{i}": img for i, img in enumerate(images)}
    arrays["intrinsics_in"] = intrinsics_in
    cases = []
    for process_res in (56, 98):
        for method in METHODS:
            for group, idx in groups.items():
                if process_res == 98 and (group != "mixed" or method.startswith("lower")):
                    continue  # keeps the file small (< 250 KB); the 56 cases cover these paths
                name = f"{group}_{process_res}_{method}"
                imgs = [images[i].copy() for i in idx]
                ks = intrinsics_in[idx].copy()
                tensor, _, out_k = processor(imgs, None, ks, process_res, method, num_workers=1, sequential=True)
                tensor_no_k, _, none_k = processor(imgs, None, None, process_res, method, sequential=True)
                assert none_k is None and torch.equal(tensor, tensor_no_k)
                for a, b in zip(imgs, (images[i] for i in idx)):
                    assert np.array_equal(a, b), "upstream modified its input"
                pixels = np.round((tensor.numpy().transpose(0, 2, 3, 1) * STD + MEAN) * 255.0)
                pixels = np.clip(pixels, 0, 255).astype(np.uint8)
                again = normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255))
                assert torch.equal(again, tensor), name  # pixels reproduce upstream's tensor bit for bit
                processed = upstream_processed_images(tensor)
                arrays[f"{name}__pixels"] = pixels
                arrays[f"{name}__processed_delta"] = (processed.astype(np.int16) - pixels).astype(np.int8)
                arrays[f"{name}__intrinsics"] = out_k.numpy().astype(np.float32)
                cases.append({"name": name, "images": idx, "process_res": process_res, "method": method})
    meta = {
        "upstream": "depth-anything-3 0.1.1",
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "opencv": cv2.__version__,
        "python": platform.python_version(),
    }
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(json.dumps(meta))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(cases)} cases)")


if __name__ == "__main__":
    main()
