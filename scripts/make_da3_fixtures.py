"""Make the end-to-end Depth Anything 3 parity fixtures by running the upstream network in float32.

Runs in the side environment that holds the upstream package (it must not import anydepth)::

    ../shared/upstream/make-upstream-env.sh /path/to/upvenv
    /path/to/upvenv/bin/python scripts/make_da3_fixtures.py

For each case the upstream ``DepthAnything3Net`` (or the nested network) is filled with deterministic random
weights from ``tests/helpers/random_weights.py`` (values depend only on key name, shape and seed, so the tests rebuild
the same weights from the stored key list) and called directly in float32 (upstream's API autocasts on CPU).
Writes ``tests/fixtures/da3_parity.npz`` (inputs, outputs, a JSON description of the cases) and
``tests/fixtures/da3_keys.json`` (key names and shapes of each architecture). Needs ~12 GB of memory for the
nested giant+large case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.random_weights import random_state_dict  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SEED = 3
H, W = 28, 42  # 2 x 3 patches: small, non-square

# (case name, architecture, views, options); options mirror DepthAnything3Net.forward's keywords
CASES = [
    ("small_1view", "da3-small", 1, {}),
    ("small_3view_saddle_balanced", "da3-small", 3, {"ref_view_strategy": "saddle_balanced"}),
    ("small_4view_first", "da3-small", 4, {"ref_view_strategy": "first"}),
    ("small_4view_middle", "da3-small", 4, {"ref_view_strategy": "middle"}),
    ("small_4view_saddle_balanced", "da3-small", 4, {"ref_view_strategy": "saddle_balanced"}),
    ("small_4view_saddle_sim_range", "da3-small", 4, {"ref_view_strategy": "saddle_sim_range"}),
    ("small_3view_ray_pose", "da3-small", 3, {"use_ray_pose": True}),
    ("small_3view_posed", "da3-small", 3, {"posed": True}),
    ("small_3view_feats", "da3-small", 3, {"export_feat_layers": [0, 6]}),
    ("base_3view", "da3-base", 3, {}),
    ("mono_1view", "da3mono-large", 1, {}),
    ("metric_1view", "da3metric-large", 1, {}),
    ("nested_3view", "da3nested-giant-large", 3, {}),
]


def build(arch: str) -> torch.nn.Module:
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    return create_object(load_config(MODEL_REGISTRY[arch])).eval()


def fill(net: torch.nn.Module, seed: int) -> dict:
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    sd = random_state_dict({k: s for k, s in shapes.items() if net.state_dict()[k].is_floating_point()}, seed)
    net.load_state_dict({**net.state_dict(), **sd}, strict=True)
    return shapes


def poses(views: int, rng: np.random.RandomState):
    """Plausible cameras: w2c (S, 4, 4) around the origin, and pixel intrinsics for H x W."""
    from scipy.spatial.transform import Rotation

    ext = np.tile(np.eye(4), (views, 1, 1))
    for i in range(views):
        ext[i, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.1, 3)).as_matrix()
        ext[i, :3, 3] = rng.normal(0, 0.5, 3)
    ixt = np.tile(np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]]), (views, 1, 1))
    ixt[:, 0, 0] += rng.uniform(-5, 5, views)
    return ext.astype(np.float32), ixt.astype(np.float32)


def main() -> None:
    rng = np.random.RandomState(0)
    arrays, cases, keys, nets = {}, [], {}, {}
    for name, arch, views, opts in CASES:
        if arch not in nets:
            torch.manual_seed(0)
            nets.clear()  # one big network in memory at a time
            nets[arch] = build(arch)
            keys[arch] = fill(nets[arch], SEED)
        net = nets[arch]
        x = torch.from_numpy(rng.normal(0, 1, (1, views, 3, H, W)).astype(np.float32))
        ext = ixt = None
        if opts.get("posed"):
            e, k = poses(views, rng)
            ext, ixt = torch.from_numpy(e)[None], torch.from_numpy(k)[None]
            arrays[f"{name}/in_extrinsics"], arrays[f"{name}/in_intrinsics"] = e, k
        torch.manual_seed(0)  # the ray-pose RANSAC draws from torch's global generator: start it at a known state
        with torch.no_grad():
            out = net(
                x,
                ext,
                ixt,
                export_feat_layers=list(opts.get("export_feat_layers", [])),
                use_ray_pose=bool(opts.get("use_ray_pose", False)),
                ref_view_strategy=opts.get("ref_view_strategy", "saddle_balanced"),
            )
        arrays[f"{name}/x"] = x.numpy()
        stored = []
        for field in ("depth", "depth_conf", "extrinsics", "intrinsics", "sky", "scale_factor"):
            if field in out and out[field] is not None:
                value = out[field]
                value = value.float().numpy() if torch.is_tensor(value) else np.asarray(value, np.float32)
                arrays[f"{name}/{field}"] = value
                stored.append(field)
        for layer_name, feat in dict(out.get("aux", {})).items():
            arrays[f"{name}/aux/{layer_name}"] = feat.float().numpy()
            stored.append(f"aux/{layer_name}")
        depth = arrays[f"{name}/depth"]
        assert np.isfinite(depth).all() and depth.std() > 1e-3 * np.abs(depth).mean(), f"{name}: degenerate depth"
        cases.append({"name": name, "arch": arch, "views": views, "options": opts, "seed": SEED, "outputs": stored})
        print(f"{name}: " + ", ".join(f"{f} {arrays[f'{name}/{f}'].shape}" for f in stored), flush=True)
    arrays["cases_json"] = np.array(json.dumps(cases))
    np.savez_compressed(FIXTURES / "da3_parity.npz", **arrays)
    (FIXTURES / "da3_keys.json").write_text(json.dumps(keys, sort_keys=True))
    print(f"wrote {FIXTURES / 'da3_parity.npz'} ({(FIXTURES / 'da3_parity.npz').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
