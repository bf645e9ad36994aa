"""Make the Depth Anything 3 pose normalisation / Sim(3) alignment parity fixture by running the UPSTREAM code.

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream package and evo (never in the
project's own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_da3_sim3_fixtures.py

(CPU torch 2.13, numpy < 2, ``depth-anything-3==0.1.1``, ``evo``.) It takes a few seconds and overwrites
``tests/fixtures/da3_sim3.npz`` with, per case ``<case>__<name>``:

- ``norm_<n>``: ``DepthAnything3._normalize_extrinsics`` on (1, n, 4, 4) float32 world-to-camera ``input``
  giving ``output``.
- ``umeyama_<n>``: ``utils.pose_align.align_poses_umeyama(pred, input, return_aligned=True)`` (the api's
  argument order: predictions first) giving ``r``, ``t``, ``s``, ``aligned``; with ``ransac=True,
  random_state=42`` for ``ransac_<n>``.
- ``api_<n>_<flag>``: ``DepthAnything3._align_to_input_extrinsics_intrinsics`` on a stand-in prediction
  (``pred`` (n, 3, 4), ``depth`` (n, 4, 5)) and ``input`` (n, 4, 4) float32 extrinsics, with
  ``align_to_input_ext_scale`` = flag, giving ``extrinsics`` and ``depth_out``. n = 12 uses RANSAC.
- ``rng_<n>``: the subsets ``numpy.random.default_rng(42).choice(arange(n), size=max(3, (n + 1) // 2),
  replace=False)`` drawn 10 times, as upstream's RANSAC does.
- ``cases_json`` (case names and whether upstream raised), ``meta_json`` (versions).

Predictions are the input cameras moved by a known similarity, with small noise; RANSAC cases have two views
replaced by far-off outliers.
"""

from __future__ import annotations

import json
import platform
import types
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")

from depth_anything_3.api import DepthAnything3  # noqa: E402
from depth_anything_3.utils import pose_align  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "da3_sim3.npz"


def rotation(rng: np.random.RandomState) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def cameras(n: int, rng: np.random.RandomState, spread: float = 3.0) -> np.ndarray:
    """(n, 4, 4) world-to-camera extrinsics of cameras around the origin."""
    out = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        R = rotation(rng)
        centre = rng.standard_normal(3) * spread
        out[i, :3, :3] = R.T
        out[i, :3, 3] = -R.T @ centre
    return out


def predictions(ext: np.ndarray, rng: np.random.RandomState, outliers=()) -> np.ndarray:
    """World-to-camera (n, 3, 4): the input cameras in another frame and scale, with noise and outliers."""
    R, s, t = rotation(rng), 0.37, rng.standard_normal(3)
    poses = np.linalg.inv(ext)
    moved = poses.copy()
    moved[:, :3, :3] = R @ poses[:, :3, :3]
    moved[:, :3, 3] = s * poses[:, :3, 3] @ R.T + t + 0.003 * rng.standard_normal((len(ext), 3))
    for i in outliers:
        moved[i, :3, 3] += 5.0 * rng.standard_normal(3)
    return np.linalg.inv(moved)[:, :3, :4]


def main() -> None:
    rng = np.random.RandomState(7)
    arrays, cases = {}, []
    for n in (1, 2, 3, 5):
        ext = cameras(n, rng, spread=0.02 if n == 3 else 3.0).astype(np.float32)  # n = 3: clamp at 0.1
        out = DepthAnything3._normalize_extrinsics(None, torch.from_numpy(ext)[None])
        arrays[f"norm_{n}__input"], arrays[f"norm_{n}__output"] = ext, out[0].numpy()
        cases.append({"name": f"norm_{n}"})
    for n, ransac in ((2, False), (3, False), (6, False), (12, True)):
        name = f"{'ransac' if ransac else 'umeyama'}_{n}"
        ext = cameras(n, rng).astype(np.float32)
        pred = predictions(ext.astype(np.float64), rng, outliers=(3, 8) if ransac else ()).astype(np.float32)
        arrays[f"{name}__input"], arrays[f"{name}__pred"] = ext, pred
        try:
            r, t, s, aligned = pose_align.align_poses_umeyama(
                pred, ext, return_aligned=True, ransac=ransac, random_state=42 if ransac else None
            )
        except Exception as exc:  # evo raises on collinear centres, e.g. two views
            cases.append({"name": name, "raised": type(exc).__name__})
            continue
        arrays.update({f"{name}__r": r, f"{name}__t": t, f"{name}__s": np.float64(s), f"{name}__aligned": aligned})
        cases.append({"name": name, "raised": None})
    for n in (6, 12):
        ext = cameras(n, rng).astype(np.float32)
        pred = predictions(ext.astype(np.float64), rng, outliers=(0, 5) if n == 12 else ()).astype(np.float32)
        depth = rng.uniform(0.5, 3.0, size=(n, 4, 5)).astype(np.float32)
        intrinsics = torch.eye(3)[None].repeat(n, 1, 1)
        for flag in (True, False):
            name = f"api_{n}_{flag}"
            prediction = types.SimpleNamespace(extrinsics=pred.copy(), depth=depth.copy(), intrinsics=None)
            out = DepthAnything3._align_to_input_extrinsics_intrinsics(
                None, torch.from_numpy(ext), intrinsics, prediction, flag
            )
            arrays.update({f"{name}__input": ext, f"{name}__pred": pred, f"{name}__depth": depth})
            arrays[f"{name}__extrinsics"] = np.asarray(out.extrinsics)
            arrays[f"{name}__depth_out"] = np.asarray(out.depth)
            cases.append({"name": name})
    for n in (10, 12, 25):
        gen = np.random.default_rng(42)
        arrays[f"rng_{n}__subsets"] = np.stack(
            [gen.choice(np.arange(n), size=max(3, (n + 1) // 2), replace=False) for _ in range(10)]
        )
        cases.append({"name": f"rng_{n}"})
    meta = {
        "upstream": "depth-anything-3 0.1.1",
        "numpy": np.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(json.dumps(meta))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)", json.dumps(cases))


if __name__ == "__main__":
    main()
