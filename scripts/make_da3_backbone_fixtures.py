"""Make the Depth Anything 3 backbone parity fixtures by running the UPSTREAM backbone on random weights.

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream package (never in the project's
own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_da3_backbone_fixtures.py

That environment is CPU-only Python 3.11 with torch 2.13 and numpy < 2, plus ``depth-anything-3==0.1.1`` from
PyPI (import name ``depth_anything_3``) with the dependencies its model code imports (omegaconf, addict, einops,
...; not xformers: upstream falls back to plain PyTorch without it). Exact versions land in ``meta_json``.

The run takes about a minute and about 7 GB of memory: the key lists come from full upstream networks built from
their YAML configs (``create_object(load_config(MODEL_REGISTRY[name]))``, the way upstream's API builds them;
its DINOv2 constructor calls ``.item()``, so it cannot run on the meta device), DA3-GIANT included. It
overwrites, in ``tests/fixtures/``:

- ``da3_backbone.npz``:
    - ``images`` (2, 4, 3, 28, 42) and ``images_portrait`` (1, 3, 3, 42, 28): float32 network inputs
      (synthetic uint8 RGB scenes, ImageNet-normalised); a case feeds ``images[:B, :S]``.
    - per case ``<case>_tokens`` (L, B, S, N, C / k) and ``<case>_camera`` (L, B, S, C / k): upstream's
      ``backbone(...)`` outputs for its L output blocks, keeping every k-th channel (``channel_stride`` k)
      to keep the file small; ``<case>_features`` (F, B, S, N, D / k) for ``export_feat_layers``, put back in
      input view order (see below); ``<case>_cam_token`` (B, S, D) when the case passes camera tokens.
    - ``refsel_tokens`` (4, 5, 16) class tokens (scene 1: similar views, so ``saddle_sim_range`` ties),
      ``refsel_upstream_<strategy>`` (4,) upstream's ``select_reference_view`` on them and
      ``refsel_<strategy>`` the same with ties settled (see below); ``refsel_reference`` (4,) fixed indices and
      ``refsel_order`` (4, 5) the view ids after upstream's ``reorder_by_reference`` with them.
    - ``cases_json``: per case the config group, upstream ``net`` arguments, weight seed, input, B, S,
      strategy, export_feat_layers, channel stride and the reference views used (see below).
    - ``nets_json``: ``{group: net arguments}`` (the YAML ``net`` section: name, out_layers, alt_start,
      qknorm_start, rope_start, cat_token) of every key group; ``meta_json``: versions and rules.
- ``da3_backbone_keys.json``: ``{group: {key: shape}}`` of the backbone state dicts (``DepthAnything3Net.backbone``;
  the full-model keys carry the prefix ``backbone.``) for da3-small, da3-base, da3-large, da3-giant,
  da3mono-large, da3metric-large and the test-only config ``test-vits-alt5``.

Weights are not stored: ``tests/helpers/random_weights.py`` fills every key from (key name, shape, seed), with the
backbone's own key names (``pretrained.blocks.0.attn.qkv.weight``), so the tests rebuild the same weights.

Upstream facts this relies on (depth_anything_3 0.1.1):

- Upstream's API autocasts on CPU; the fixtures call the backbone module directly, in float32.
- ``saddle_sim_range`` scores a view by max - min of its cosine similarities including its own, set to
  ``1 - 1``; with all similarities positive the two views of the most similar pair tie exactly and upstream's
  pick between them is rounding noise. The fixtures hand upstream's backbone the lower of the tied views
  (``cases_json`` keeps upstream's own pick as ``upstream_reference_views``), as ``anydepth`` picks; all other
  choices are checked to be clear of ties.
- ``get_intermediate_layers`` restores the input view order on the output blocks but not on the features of
  ``export_feat_layers``: those of blocks ``>= alt_start - 1`` stay in reference-first order. The fixtures
  store them in input order (upstream's own ``restore_original_order`` with the reference views it chose,
  captured by wrapping its ``select_reference_view``), which is what ``anydepth`` returns.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from depth_anything_3.cfg import create_object, load_config  # noqa: E402
from depth_anything_3.model import reference_view_selector as upstream_ref  # noqa: E402
from depth_anything_3.model.dinov2 import vision_transformer as upstream_vit  # noqa: E402
from depth_anything_3.model.dinov2.dinov2 import DinoV2  # noqa: E402
from depth_anything_3.registry import MODEL_REGISTRY  # noqa: E402
from depth_anything_3.utils.constants import THRESH_FOR_REF_SELECTION  # noqa: E402
from tests.helpers.random_weights import random_state_dict, shapes_of, write_key_lists  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
PRESET_GROUPS = ["da3-small", "da3-base", "da3-large", "da3-giant", "da3mono-large", "da3metric-large"]
NET_FIELDS = ("name", "out_layers", "alt_start", "qknorm_start", "rope_start", "cat_token")
# a ViT-S with an odd alternating start that is also an output block (the class slot is overwritten in place
# after the last per-view block, which the cat_token output then shows), q/k norm before and RoPE after it
TEST_NETS = {
    "test-vits-alt5": {
        "name": "vits",
        "out_layers": [5, 8, 11],
        "alt_start": 5,
        "qknorm_start": 3,
        "rope_start": 6,
        "cat_token": True,
    }
}
WEIGHT_SEEDS = {"da3-small": 0, "test-vits-alt5": 0, "da3mono-large": 0}
STRATEGIES = ["first", "middle", "saddle_balanced", "saddle_sim_range"]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def case(name, group, B, S, strategy="saddle_balanced", images="images", cam_token=False, feats=(), stride=16):
    return {
        "name": name,
        "group": group,
        "input": images,
        "B": B,
        "S": S,
        "ref_view_strategy": strategy,
        "cam_token": cam_token,
        "export_feat_layers": list(feats),
        "channel_stride": stride,
    }


CASES = [
    case("vits_s1", "da3-small", 1, 1, stride=1),
    case("vits_s2_b2", "da3-small", 2, 2, stride=8),
    *[case(f"vits_s3_b2_{s}", "da3-small", 2, 3, s) for s in STRATEGIES],
    # export features before (1, 2) and after (3, 8, 11) the reordering at block alt_start - 1 = 3
    *[
        case(f"vits_s4_b2_{s}", "da3-small", 2, 4, s, feats=(1, 2, 3, 8, 11) if s == "saddle_balanced" else ())
        for s in STRATEGIES
    ],
    case("vits_portrait_s3", "da3-small", 1, 3, images="images_portrait"),
    case("vits_cam_token_s3_b2", "da3-small", 2, 3, cam_token=True),
    case("vits_alt5_s3_b2", "test-vits-alt5", 2, 3, "saddle_sim_range", feats=(4, 5)),
    case("vitl_mono_s2", "da3mono-large", 1, 2, feats=(0, 23), stride=4),
]


def synth_scene_rgb(h: int, w: int, views: int, seed: int) -> np.ndarray:
    """(views, h, w, 3) uint8: one smooth scene (gradients, waves, a disc) seen with a shift per view, plus noise."""
    rs = np.random.RandomState(seed)
    pad = 8
    yy, xx = np.mgrid[0 : h + 2 * pad, 0 : w + 2 * pad].astype(np.float64)
    big = np.empty((*yy.shape, 3))
    for c in range(3):
        gx, gy = rs.uniform(-1, 1, size=2)
        fx, fy = rs.uniform(0.5, 2.5, size=2)
        phase = rs.uniform(0, 2 * math.pi)
        big[..., c] = (
            128 + 70 * (gx * xx / w + gy * yy / h) + 40 * np.sin(2 * math.pi * (fx * xx / w + fy * yy / h) + phase)
        )
    cy, cx, r = rs.uniform(0.3, 0.7) * yy.shape[0], rs.uniform(0.3, 0.7) * yy.shape[1], rs.uniform(0.2, 0.35) * h
    big[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rs.uniform(0, 255, size=3)
    out = []
    for _ in range(views):
        dy, dx = rs.randint(0, 2 * pad + 1, size=2)
        view = big[dy : dy + h, dx : dx + w] * rs.uniform(0.8, 1.2) + rs.normal(0.0, 8.0, size=(h, w, 3))
        out.append(np.clip(np.round(view), 0, 255).astype(np.uint8))
    return np.stack(out)


def normalise(rgb_uint8: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) RGB uint8 -> (..., 3, H, W) float32 ImageNet-normalised."""
    x = (rgb_uint8.astype(np.float32) / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3)).astype(np.float32)


def net_args(cfg) -> dict:
    return {k: (list(cfg[k]) if k == "out_layers" else cfg[k]) for k in NET_FIELDS}


def preset_backbones():
    """Yield (group, upstream net arguments, backbone module) for every preset, built from upstream's YAML."""
    for group in PRESET_GROUPS:
        cfg = load_config(MODEL_REGISTRY[group])
        model = create_object(cfg)
        backbone = model.backbone
        full_keys = [k for k in model.state_dict() if k.startswith("backbone.")]
        assert full_keys == ["backbone." + k for k in backbone.state_dict()], group
        assert isinstance(backbone, DinoV2), group
        yield group, net_args(cfg["net"]), backbone
        del model, backbone
        gc.collect()


def reference_margins(class_tokens: torch.Tensor, strategy: str) -> np.ndarray:
    """Upstream's selection score per view in float64 without rounding noise (exact symmetry, zero diagonal):
    (B, S), higher is better. None for the position-based strategies."""
    t = class_tokens.double().numpy()
    unit = t / np.linalg.norm(t, axis=-1, keepdims=True)
    sim = unit @ unit.transpose(0, 2, 1)
    sim = (sim + sim.transpose(0, 2, 1)) / 2
    S = sim.shape[-1]
    sim[:, np.arange(S), np.arange(S)] = 0.0
    if strategy == "saddle_sim_range":
        return sim.max(-1) - sim.min(-1)

    def unit_range(m):
        return (m - m.min(1, keepdims=True)) / (m.max(1, keepdims=True) - m.min(1, keepdims=True) + 1e-8)

    metrics = (sim.sum(-1) / (S - 1), np.linalg.norm(t, axis=-1), unit.var(-1, ddof=1))
    return -sum(np.abs(unit_range(m) - 0.5) for m in metrics)


def settle_reference(class_tokens: torch.Tensor, strategy: str, upstream: torch.Tensor) -> torch.Tensor:
    """The reference views the fixtures use, checked against upstream's choice.

    ``saddle_sim_range`` ties by construction (see ``anydepth.models.da3.reference_view``): upstream must have
    picked one of the exactly tied views, and the fixtures take the lowest of them, as ``anydepth`` does. Every
    other choice must be clear (a score margin of 1e-5), so that it does not depend on rounding.
    """
    if strategy in ("first", "middle"):
        return upstream
    score = reference_margins(class_tokens, strategy)
    settled = []
    for b, row in enumerate(score):
        best = np.flatnonzero(row == row.max())
        assert int(upstream[b]) in best, (strategy, row, int(upstream[b]))
        assert len(best) == 1 or strategy == "saddle_sim_range", (strategy, row)
        others = np.delete(row, best)
        assert others.size == 0 or row.max() - others.max() > 1e-5, f"{strategy}: near tie {row}"
        settled.append(int(best[0]))
    return torch.tensor(settled, dtype=torch.long)


class ReferenceRecorder:
    """Wraps upstream's select_reference_view inside its vision_transformer module: records upstream's choices
    and hands the backbone the settled ones (:func:`settle_reference`)."""

    def __init__(self):
        self.original = upstream_vit.select_reference_view
        self.upstream, self.settled = [], []

    def __call__(self, x, strategy="saddle_balanced"):
        idx = self.original(x, strategy=strategy)
        settled = settle_reference(x[:, :, 0], strategy, idx)
        self.upstream.append(idx.clone())
        self.settled.append(settled)
        return settled

    def __enter__(self):
        upstream_vit.select_reference_view = self
        return self

    def __exit__(self, *exc):
        upstream_vit.select_reference_view = self.original


def check_spread(name: str, a: np.ndarray, distinct_rows: bool = True) -> None:
    """Refuse degenerate references (constant, vanishing or exploding activations): they could not catch errors.

    ``distinct_rows``: every token of every view must differ from the others. Not for camera tokens: right after
    the first cross-view block the non-reference views of a scene hold identical camera tokens (same input
    token, same RoPE position 0, same keys), and they differ again only after the next per-view block.
    """
    assert a.dtype == np.float32 and np.isfinite(a).all(), name
    std, peak = float(a.std()), float(np.abs(a).max())
    assert 1e-2 < std < 1e3 and peak < 1e4, f"{name}: badly conditioned (std {std:.3g}, max |x| {peak:.3g})"
    if distinct_rows:
        flat = a.reshape(-1, a.shape[-1])
        assert np.unique(flat.round(5), axis=0).shape[0] == flat.shape[0], f"{name}: repeated rows"


def run_case(c: dict, backbone: torch.nn.Module, arrays: dict) -> dict:
    images = torch.from_numpy(arrays[c["input"]][: c["B"], : c["S"]].copy())
    cam = None
    if c["cam_token"]:
        dim = backbone.pretrained.embed_dim
        cam = torch.from_numpy(np.random.RandomState(7).standard_normal((c["B"], c["S"], dim)).astype(np.float32))
        arrays[f"{c['name']}_cam_token"] = cam.numpy()
    feats = list(c["export_feat_layers"])
    with ReferenceRecorder() as rec, torch.no_grad():
        outputs, aux = backbone(
            images, cam_token=cam, export_feat_layers=feats, ref_view_strategy=c["ref_view_strategy"]
        )
    reference = rec.settled[0] if rec.settled else None
    expected_selection = c["S"] >= THRESH_FOR_REF_SELECTION and cam is None and backbone.alt_start != -1
    assert (reference is not None) == expected_selection, c["name"]
    k = c["channel_stride"]
    tokens = torch.stack([t for t, _ in outputs]).numpy()
    camera = torch.stack([cam_t for _, cam_t in outputs]).numpy()
    for what, a in (("tokens", tokens), ("camera", camera)):
        check_spread(f"{c['name']} {what}", a, distinct_rows=what == "tokens")
        arrays[f"{c['name']}_{what}"] = np.ascontiguousarray(a[..., ::k])
    if feats:
        restored = []
        for layer, f in zip(feats, aux):
            # upstream appends the current (reordered) tokens; blocks before alt_start - 1 are not yet reordered
            if reference is not None and layer >= backbone.alt_start - 1:
                f = upstream_ref.restore_original_order(f, reference)
            restored.append(f)
        features = torch.stack(restored).numpy()
        check_spread(f"{c['name']} features", features)
        arrays[f"{c['name']}_features"] = np.ascontiguousarray(features[..., ::k])
    B, S = c["B"], c["S"]
    H, W = images.shape[-2:]
    assert tokens.shape == (len(backbone.out_layers), B, S, (H // 14) * (W // 14), tokens.shape[-1]), tokens.shape
    ref_list = None if reference is None else [int(i) for i in reference]
    upstream_list = None if reference is None else [int(i) for i in rec.upstream[0]]
    print(
        f"{c['name']}: tokens {tokens.shape} std {tokens.std():.3g} max {np.abs(tokens).max():.3g} "
        f"ref {ref_list} (upstream {upstream_list})"
    )
    return {**c, "reference_views": ref_list, "upstream_reference_views": upstream_list}


def make_refsel(arrays: dict) -> None:
    rs = np.random.RandomState(11)
    tokens = rs.standard_normal((4, 5, 16)).astype(np.float32)
    tokens[1] += 2.0 * rs.standard_normal(16).astype(np.float32)  # one scene of similar views
    arrays["refsel_tokens"] = tokens
    x = torch.from_numpy(tokens)[:, :, None, :]  # upstream takes (B, S, N, C) and reads token 0
    picked = set()
    for s in STRATEGIES:
        idx = upstream_ref.select_reference_view(x, strategy=s)
        settled = settle_reference(x[:, :, 0], s, idx)
        arrays[f"refsel_{s}"] = settled.numpy().astype(np.int64)
        arrays[f"refsel_upstream_{s}"] = idx.numpy().astype(np.int64)
        picked |= {int(i) for i in settled}
    assert len(picked) >= 3, f"strategies pick too few distinct views: {picked}"
    reference = torch.tensor([0, 1, 2, 4])
    view_ids = torch.arange(5).expand(4, 5)[..., None]
    order = upstream_ref.reorder_by_reference(view_ids, reference)
    assert torch.equal(upstream_ref.restore_original_order(order, reference), view_ids)
    arrays["refsel_reference"] = reference.numpy()
    arrays["refsel_order"] = order[..., 0].numpy()


def versions() -> dict:
    from importlib.metadata import version

    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "depth-anything-3": version("depth-anything-3"),
        "python": sys.version.split()[0],
    }


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    arrays = {
        "images": normalise(np.stack([synth_scene_rgb(28, 42, 4, seed=300 + b) for b in range(2)])),
        "images_portrait": normalise(synth_scene_rgb(42, 28, 3, seed=310)[None]),
    }
    make_refsel(arrays)

    keys, nets, cases = {}, {}, []
    for group, net, backbone in preset_backbones():
        keys[group], nets[group] = shapes_of(backbone.state_dict()), net
        if group in WEIGHT_SEEDS:
            backbone.load_state_dict(random_state_dict(keys[group], WEIGHT_SEEDS[group]), strict=True)
            backbone = backbone.float().eval()
            cases += [
                {**run_case(c, backbone, arrays), "net": net, "seed": WEIGHT_SEEDS[group]}
                for c in CASES
                if c["group"] == group
            ]
        print(f"keys {group}: {len(keys[group])}")
    assert keys["da3mono-large"] == keys["da3metric-large"], "mono and metric backbones differ"
    for group, net in TEST_NETS.items():
        backbone = DinoV2(**net)
        keys[group], nets[group] = shapes_of(backbone.state_dict()), net
        backbone.load_state_dict(random_state_dict(keys[group], WEIGHT_SEEDS[group]), strict=True)
        backbone = backbone.float().eval()
        cases += [
            {**run_case(c, backbone, arrays), "net": net, "seed": WEIGHT_SEEDS[group]}
            for c in CASES
            if c["group"] == group
        ]
    order = [c["name"] for c in CASES]
    cases.sort(key=lambda c: order.index(c["name"]))
    assert len(cases) == len(CASES)
    moved = [c["name"] for c in cases if c["reference_views"] and any(c["reference_views"])]
    assert any("saddle_balanced" in n for n in moved) and any("saddle_sim_range" in n for n in moved), moved
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["nets_json"] = np.array(json.dumps(nets))
    arrays["meta_json"] = np.array(
        json.dumps(
            {
                **versions(),
                "input_rule": "case input = <input>[:B, :S]",
                "channel_rule": "stored = upstream_output[..., ::channel_stride]",
                "features_rule": "export_feat_layers features in input view order (upstream leaves blocks >= "
                "alt_start - 1 in reference-first order)",
            }
        )
    )
    np.savez_compressed(FIXTURES / "da3_backbone.npz", **arrays)
    write_key_lists(FIXTURES / "da3_backbone_keys.json", keys)
    for f in ("da3_backbone.npz", "da3_backbone_keys.json"):
        print(f"{f}: {(FIXTURES / f).stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
