"""Make parity fixtures for the DepthAnything3 facade by running upstream's ``DepthAnything3.inference`` in float32.

Runs in the side environment that holds the upstream package (it must not import anydepth)::

    /path/to/upvenv/bin/python scripts/make_da3_api_fixtures.py

Upstream's ``forward`` autocasts (fp16/bf16 even on the CPU); the script replaces ``torch.autocast`` with a
no-op for the run, so the whole pipeline (preprocessing, network, pose alignment, processed images) is float32.
The network is filled with ``tests/helpers/random_weights.py`` values (seed 3, as the network fixtures). Writes
``tests/fixtures/da3_api_parity.npz``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.random_weights import random_state_dict  # noqa: E402

SEED = 3


def images(sizes, seed):
    rng = np.random.RandomState(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 3 + 10 * i, yy * 4, (xx + yy) * 2], -1) + rng.normal(0, 5, (h, w, 3))
        out.append(np.clip(base, 0, 255).astype(np.uint8))
    return out


def cameras(n, h, w):
    ext = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    for i in range(n):
        a = 0.1 * i
        ext[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        ext[i, :3, 3] = [0.5 * i, 0.1 * i, 0.2]
    K = np.tile(np.array([[70.0, 0, w / 2], [0, 70.0, h / 2], [0, 0, 1]], np.float32), (n, 1, 1))
    return ext, K


MIXED = [(60, 80), (50, 90), (64, 64)]
CASES = [
    ("same_size", [(60, 80)] * 3, {"process_res": 56}),
    ("mixed_lower_bound", MIXED, {"process_res": 56, "process_res_method": "lower_bound_resize"}),
    ("posed", [(60, 80)] * 3, {"process_res": 56, "posed": True}),
    ("posed_free_scale", [(60, 80)] * 3, {"process_res": 56, "posed": True, "align_to_input_ext_scale": False}),
]


def main() -> None:
    torch.autocast = lambda *args, **kwargs: contextlib.nullcontext()  # float32 end to end
    from depth_anything_3.api import DepthAnything3

    api = DepthAnything3(model_name="da3-small")
    sd = api.model.state_dict()
    api.model.load_state_dict(random_state_dict({k: tuple(v.shape) for k, v in sd.items()}, SEED))
    api.eval()
    arrays, cases = {}, []
    for index, (name, sizes, opts) in enumerate(CASES):
        views = images(sizes, index)
        for i, view in enumerate(views):
            arrays[f"{name}/image{i}"] = view
        kwargs = {k: v for k, v in opts.items() if k != "posed"}
        if opts.get("posed"):
            ext, K = cameras(len(views), *sizes[0])
            arrays[f"{name}/in_extrinsics"], arrays[f"{name}/in_intrinsics"] = ext, K
            kwargs.update(extrinsics=ext.copy(), intrinsics=K.copy())
        torch.manual_seed(0)
        pred = api.inference([v.copy() for v in views], **kwargs)
        stored = []
        for field in ("depth", "conf", "extrinsics", "intrinsics", "processed_images"):
            value = getattr(pred, field, None)
            if value is not None:
                arrays[f"{name}/{field}"] = np.asarray(value)
                stored.append(field)
        cases.append({"name": name, "views": len(views), "options": opts, "outputs": stored, "seed": SEED})
        print(name, {f: arrays[f"{name}/{f}"].shape for f in stored}, flush=True)
    arrays["cases_json"] = np.array(json.dumps(cases))
    path = ROOT / "tests" / "fixtures" / "da3_api_parity.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
