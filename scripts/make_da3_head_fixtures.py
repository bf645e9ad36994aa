"""Make the Depth Anything 3 head fixtures by running the UPSTREAM heads on random weights.

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream package (never in the project's
own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_da3_head_fixtures.py

That environment is CPU-only Python 3.11 with torch 2.13, numpy < 2, ``depth-anything-3==0.1.1`` (PyPI; import
name ``depth_anything_3``) and its dependencies (addict, einops, omegaconf, evo, safetensors, huggingface_hub).
The Gaussian adapter rotates SH coefficients with ``e3nn``, an upstream dependency that the side environment may
lack; install it there or next to it, e.g.::

    /work/upvenv/bin/pip install --target /tmp/e3nn_site --no-deps e3nn opt_einsum opt_einsum_fx
    PYTHONPATH=/tmp/e3nn_site /work/upvenv/bin/python scripts/make_da3_head_fixtures.py

The run takes about a minute and up to 8 GB of memory (it builds the full DA3NESTED-GIANT-LARGE network once to
list the tensors that upstream shares), and overwrites, in ``tests/fixtures/``:

- ``da3_head_keys.json``: ``{"<config>/<part>": {key: shape}}`` for the ``head``, ``gs_head`` and ``gs_adapter``
  of every official config, with the key names they have inside upstream's ``DepthAnything3Net`` (so
  ``head.``-prefixed), and of the narrow GS-DPT of case ``gsdpt_small`` (``"fixture-gsdpt-small/gs_head"``);
  plus ``"dropped_by_save_model"``: ``{"da3-small": [...], "da3nested-giant-large": [...]}``, the keys that
  ``safetensors.torch.save_model`` leaves out of a hub ``model.safetensors`` (with the hub's ``model.`` prefix).
- ``da3_heads.npz``: per case (``cases_json``) the inputs (tokens rounded to float16, images, cameras) and the
  upstream outputs in float32; ``meta_json`` records versions.

Weights are not stored: ``tests/helpers/random_weights.py`` fills every key of the STORED layout (the aliases that
``save_model`` drops are filled from the stored tensor, as a hub checkpoint is loaded) from (key name, shape,
seed), so the tests regenerate the same weights from the key lists. Token inputs are rounded to float16 to keep
the file small; both sides compute in float32 from those values. The output is deterministic.

Cases (B samples x S views, patch grid gh x gw, image 14*gh x 14*gw):

- ``dualdpt_small``: DualDPT with the da3-small widths (dim_in 768, features 64), B=2, S=2, grid 2x3.
- ``dpt_sky_large``: the DA3MONO/DA3METRIC-LARGE DPT at its real ViT-L widths (the two share one
  architecture), B=1, S=2, grid 2x3.
- ``gsdpt_small``: GS-DPT with output_dim 38 but the da3-small widths (the DA3-GIANT head is the same network,
  wider; its keys are checked at full width from the key list), B=1, S=3, grid 2x2.
- ``gs_adapter``: the DA3-GIANT GaussianAdapter (SH degree 2, depth and xy offsets) on ``gsdpt_small``'s output,
  random cameras and depth; and ``gs_adapter_scaled``: the same with ``gt_extrinsics`` given, which makes
  upstream rescale the poses by an Umeyama fit (its scale is stored as ``pose_scales``).
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import depth_anything_3  # noqa: E402
from depth_anything_3.cfg import create_object, load_config  # noqa: E402
from depth_anything_3.model.dpt import DPT  # noqa: E402
from depth_anything_3.model.dualdpt import DualDPT  # noqa: E402
from depth_anything_3.model.gsdpt import GSDPT  # noqa: E402
from depth_anything_3.utils.geometry import map_pdf_to_opacity  # noqa: E402
from tests.helpers.random_weights import random_state_dict, shapes_of, write_key_lists  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CONFIG_DIR = Path(depth_anything_3.__path__[0]) / "configs"
CONFIGS = ["da3-small", "da3-base", "da3-large", "da3-giant", "da3mono-large", "da3metric-large"]
PARTS = ["head", "gs_head", "gs_adapter"]
SMALL_WIDTHS = dict(dim_in=768, features=64, out_channels=[48, 96, 192, 384])
PATCH = 14
FIXTURE_GS_KEYS = "fixture-gsdpt-small/gs_head"


def shared_groups(sd) -> list:
    """Names that share one storage (what safetensors calls shared tensors)."""
    by_storage = {}
    for k, v in sd.items():
        by_storage.setdefault((v.untyped_storage().data_ptr(), v.dtype), []).append(k)
    return [sorted(names) for names in by_storage.values() if len(names) > 1]


def list_keys() -> dict:
    keys = {}
    for name in CONFIGS:
        cfg = load_config(str(CONFIG_DIR / f"{name}.yaml"))
        for part in PARTS:
            if part not in cfg:
                continue
            module = create_object(cfg[part])
            sd = module.state_dict()
            assert not shared_groups(sd) or part == "head", (name, part, shared_groups(sd))
            keys[f"{name}/{part}"] = {f"{part}.{k}": v for k, v in shapes_of(sd).items()}
            print(f"keys {name}/{part}: {len(sd)}")
            del module
    # the narrow GS-DPT of case gsdpt_small: its weights are rebuilt from these names
    keys[FIXTURE_GS_KEYS] = {
        f"gs_head.{k}": v for k, v in shapes_of(GSDPT(**SMALL_WIDTHS, output_dim=38).state_dict()).items()
    }
    return keys


def dropped_by_save_model(keys: dict) -> dict:
    """Which keys ``safetensors.torch.save_model`` leaves out of the hub files, on the real upstream models."""
    from depth_anything_3.api import DepthAnything3
    from safetensors.torch import _remove_duplicate_names, load_file, save_model

    dropped = {}
    small = DepthAnything3(model_name="da3-small")
    sd = small.state_dict()
    # the standalone head has exactly the keys that the network holds under model.head.
    assert {k[len("model.") :]: v for k, v in shapes_of(sd).items() if k.startswith("model.head.")} == keys[
        "da3-small/head"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        save_model(small, f"{tmp}/model.safetensors")
        stored = load_file(f"{tmp}/model.safetensors")
    dropped["da3-small"] = sorted(set(sd) - set(stored))
    del small, sd, stored
    gc.collect()

    # ~7 GB: the only way to see every shared tensor of the largest network (backbones included)
    nested = DepthAnything3(model_name="da3nested-giant-large")
    sd = nested.state_dict()
    removed = _remove_duplicate_names(sd)  # what save_model calls
    dropped["da3nested-giant-large"] = sorted(name for names in removed.values() for name in names)
    for prefix, config in (("model.da3.", "da3-giant"), ("model.da3_metric.", "da3metric-large")):
        for part in PARTS:
            group = keys.get(f"{config}/{part}", {})
            ours = {k[len(prefix) :]: v for k, v in shapes_of(sd).items() if k.startswith(f"{prefix}{part}.")}
            assert ours == group, (config, part)
    del nested, sd
    gc.collect()
    print("dropped by save_model:", json.dumps(dropped, indent=1))
    return dropped


def stored_weights(shapes: dict, prefix: str, dropped_local: list, seed: int) -> dict:
    """Random weights as a hub checkpoint holds them, then the dropped aliases filled from the stored tensor."""
    stored = {k: v for k, v in shapes.items() if k not in dropped_local}
    sd = random_state_dict(stored, seed)
    for alias in dropped_local:
        level = alias.split("output_conv2_aux.")[1].split(".")[0]
        sd[alias] = sd[alias.replace(f"output_conv2_aux.{level}.", "output_conv2_aux.0.")]
    return {k[len(prefix) :]: v for k, v in sd.items()}


def tokens_f16(rs: np.random.RandomState, b: int, s: int, n: int, c: int) -> np.ndarray:
    return rs.standard_normal((b, s, n, c)).astype(np.float16)


def feats_of(levels) -> list:
    """Upstream's feature layout: (tokens, camera token) pairs; heads only read the tokens."""
    return [(torch.from_numpy(t).float(), torch.zeros(t.shape[0], t.shape[1], t.shape[-1])) for t in levels]


def check_spread(name: str, x: np.ndarray) -> None:
    """Refuse degenerate references (non-finite, constant): they could not catch errors."""
    assert x.dtype == np.float32 and np.isfinite(x).all(), name
    assert float(x.std()) > 1e-3 * max(float(np.abs(x).mean()), 1e-12), f"{name}: degenerate output"


def random_rotation(rs: np.random.RandomState) -> np.ndarray:
    q = rs.standard_normal(4)
    x, y, z, w = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def make_cases(keys: dict, dropped: dict) -> None:
    arrays, cases = {}, []
    small_dropped = [k[len("model.") :] for k in dropped["da3-small"]]
    rs = np.random.RandomState(1234)

    def record(name: str, outputs: dict, meta: dict) -> None:
        for k, v in outputs.items():
            v = v.detach().float().contiguous().numpy()
            check_spread(f"{name}/{k}", v)
            arrays[f"{name}/out/{k}"] = v
        cases.append({"name": name, **meta})
        print(name, {k: tuple(v.shape) for k, v in outputs.items()})

    # ---------------------------------------------------------------------------------------- DualDPT
    b, s, gh, gw = 2, 2, 2, 3
    levels = [tokens_f16(rs, b, s, gh * gw, SMALL_WIDTHS["dim_in"]) for _ in range(4)]
    seed = 0
    head = DualDPT(**SMALL_WIDTHS).eval()
    head.load_state_dict(stored_weights(keys["da3-small/head"], "head.", small_dropped, seed), strict=True)
    with torch.no_grad():
        out = head(feats_of(levels), gh * PATCH, gw * PATCH, patch_start_idx=0)
        chunked = head(feats_of(levels), gh * PATCH, gw * PATCH, patch_start_idx=0, chunk_size=1)
    for k in out:
        assert torch.allclose(out[k], chunked[k], rtol=1e-5, atol=1e-6), k
    for i, t in enumerate(levels):
        arrays[f"dualdpt_small/in/tokens_{i}"] = t
    record(
        "dualdpt_small",
        dict(out),
        {
            "kind": "dualdpt",
            "keys": "da3-small/head",
            "prefix": "head.",
            "seed": seed,
            "widths": SMALL_WIDTHS,
            "grid": [gh, gw],
        },
    )

    # ---------------------------------------------------------------------------------------- DPT + sky
    b, s, gh, gw = 1, 2, 2, 3
    large = dict(dim_in=1024, features=256, out_channels=[256, 512, 1024, 1024])
    levels = [tokens_f16(rs, b, s, gh * gw, large["dim_in"]) for _ in range(4)]
    seed = 1
    head = DPT(**large, output_dim=1).eval()
    head.load_state_dict(stored_weights(keys["da3mono-large/head"], "head.", [], seed), strict=True)
    assert keys["da3mono-large/head"] == keys["da3metric-large/head"]
    with torch.no_grad():
        out = head(feats_of(levels), gh * PATCH, gw * PATCH, patch_start_idx=0)
    for i, t in enumerate(levels):
        arrays[f"dpt_sky_large/in/tokens_{i}"] = t
    record(
        "dpt_sky_large",
        dict(out),
        {
            "kind": "dpt_sky",
            "keys": "da3mono-large/head",
            "prefix": "head.",
            "seed": seed,
            "widths": large,
            "grid": [gh, gw],
        },
    )
    del head
    gc.collect()

    # ---------------------------------------------------------------------------------------- GS-DPT
    b, s, gh, gw = 1, 3, 2, 2
    H, W = gh * PATCH, gw * PATCH
    levels = [tokens_f16(rs, b, s, gh * gw, SMALL_WIDTHS["dim_in"]) for _ in range(4)]
    images = rs.standard_normal((b, s, 3, H, W)).astype(np.float32)
    seed = 2
    gs_head = GSDPT(**SMALL_WIDTHS, output_dim=38).eval()
    gs_head.load_state_dict(stored_weights(keys[FIXTURE_GS_KEYS], "gs_head.", [], seed), strict=True)
    with torch.no_grad():
        gs_out = gs_head(feats_of(levels), H, W, patch_start_idx=0, images=torch.from_numpy(images))
    for i, t in enumerate(levels):
        arrays[f"gsdpt_small/in/tokens_{i}"] = t
    arrays["gsdpt_small/in/images"] = images
    record(
        "gsdpt_small",
        dict(gs_out),
        {
            "kind": "gsdpt",
            "keys": FIXTURE_GS_KEYS,
            "prefix": "gs_head.",
            "seed": seed,
            "widths": SMALL_WIDTHS,
            "output_dim": 38,
            "grid": [gh, gw],
        },
    )

    # ---------------------------------------------------------------------------------------- GaussianAdapter
    adapter = create_object(load_config(str(CONFIG_DIR / "da3-giant.yaml"))["gs_adapter"]).eval()
    w2c = np.tile(np.eye(4), (b, s, 1, 1))
    intrinsics = np.tile(np.eye(3), (b, s, 1, 1))
    for v in range(s):
        rotation = random_rotation(rs)
        centre = rs.uniform(-1.0, 1.0, 3)
        w2c[0, v, :3, :3] = rotation.T
        w2c[0, v, :3, 3] = -rotation.T @ centre
        fx, fy = rs.uniform(20.0, 40.0, 2)
        intrinsics[0, v] = [[fx, 0.0, W / 2 + rs.uniform(-2, 2)], [0.0, fy, H / 2 + rs.uniform(-2, 2)], [0, 0, 1]]
    depth = np.exp(rs.uniform(0.0, 1.5, (b, s, H, W))).astype(np.float32)
    w2c, intrinsics = w2c.astype(np.float32), intrinsics.astype(np.float32)
    arrays["gs_adapter/in/extrinsics"] = w2c
    arrays["gs_adapter/in/intrinsics"] = intrinsics
    arrays["gs_adapter/in/depth"] = depth
    opacities = map_pdf_to_opacity(gs_out.raw_gs_conf)
    # 0.5 * (1 - (1 - pdf) + pdf) at inference: the identity up to rounding
    assert torch.allclose(opacities, gs_out.raw_gs_conf, rtol=0, atol=1e-6), "map_pdf_to_opacity is not the identity"
    common = dict(
        extrinsics=torch.from_numpy(w2c),
        intrinsics=torch.from_numpy(intrinsics),
        depths=torch.from_numpy(depth),
        opacities=opacities,
        raw_gaussians=gs_out.raw_gs,
        image_shape=(H, W),
    )
    with torch.no_grad():
        gaussians = adapter(**common)
    meta = {
        "kind": "gs_adapter",
        "raw_from": "gsdpt_small",
        "sh_degree": 2,
        "pred_color": False,
        "pred_offset_depth": True,
        "pred_offset_xy": True,
        "scale_min": 1e-5,
        "scale_max": 30.0,
    }
    names = ["means", "scales", "rotations", "harmonics", "opacities"]
    record("gs_adapter", {k: getattr(gaussians, k) for k in names}, meta)

    # given cameras that differ from the predicted ones: upstream rescales by an Umeyama fit (evo)
    gt = w2c.copy()
    world = random_rotation(rs)
    for v in range(s):
        c2w = np.linalg.inv(w2c[0, v].astype(np.float64))
        c2w[:3, :3] = world @ c2w[:3, :3]
        c2w[:3, 3] = 1.7 * world @ c2w[:3, 3] + np.array([0.3, -0.2, 0.5]) + 0.01 * rs.standard_normal(3)
        gt[0, v] = np.linalg.inv(c2w).astype(np.float32)
    from depth_anything_3.utils.pose_align import batch_align_poses_umeyama

    _, _, scales = batch_align_poses_umeyama(torch.from_numpy(gt).float(), torch.from_numpy(w2c).float())
    pose_scales = torch.clamp(scales, min=1 / 3.0, max=3.0)
    assert abs(float(pose_scales[0]) - 1.7) < 0.1, pose_scales
    arrays["gs_adapter_scaled/in/gt_extrinsics"] = gt
    arrays["gs_adapter_scaled/in/pose_scales"] = pose_scales.float().numpy()
    with torch.no_grad():
        gaussians = adapter(**common, gt_extrinsics=torch.from_numpy(gt))
    record("gs_adapter_scaled", {k: getattr(gaussians, k) for k in ("means", "scales")}, meta)

    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["meta_json"] = np.array(json.dumps(versions()))
    path = FIXTURES / "da3_heads.npz"
    np.savez_compressed(path, **arrays)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


def versions() -> dict:
    from importlib.metadata import version

    import e3nn

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "depth-anything-3": version("depth-anything-3"),
        "e3nn": e3nn.__version__,
        "safetensors": version("safetensors"),
    }


def main() -> None:
    try:
        import e3nn  # noqa: F401
    except ImportError:
        sys.exit("e3nn is needed for the Gaussian adapter's SH rotation; see this script's docstring")
    torch.manual_seed(0)
    keys = list_keys()
    dropped = dropped_by_save_model(keys)
    write_key_lists(FIXTURES / "da3_head_keys.json", {**keys, "dropped_by_save_model": dropped})
    make_cases(keys, dropped)


if __name__ == "__main__":
    main()
