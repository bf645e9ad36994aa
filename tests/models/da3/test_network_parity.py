"""Depth Anything 3 networks end to end against upstream's float32 outputs (fixtures: scripts/make_da3_fixtures.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anydepth.layers import set_fused_attention
from anydepth.models.da3.network import build_da3_network
from tests.helpers.parity import p99_rel_err
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import fill_

pytestmark = pytest.mark.torch113

DATA = np.load(FIXTURES / "da3_parity.npz")
CASES = json.loads(str(DATA["cases_json"]))
KEYS = json.loads((FIXTURES / "da3_keys.json").read_text())
HEAVY = {"da3nested-giant-large"}  # 1.4 B parameters: built once, in the slow set


_NETS = {}


def _network(arch: str):
    if arch not in _NETS:
        _NETS.clear()
        net = build_da3_network(arch)
        shapes = {k: tuple(v) for k, v in KEYS[arch].items()}
        assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes
        # in place, tensor by tensor: the nested network alone is 5.6 GB in float32
        _NETS[arch] = fill_(net, CASES[0]["seed"]).eval()
    return _NETS[arch]


def _run(case, fused=True):
    net = _network(case["arch"])
    set_fused_attention(net, fused)
    name, opts = case["name"], case["options"]
    ext = ixt = None
    if opts.get("posed"):
        ext = torch.from_numpy(DATA[f"{name}/in_extrinsics"])[None]
        ixt = torch.from_numpy(DATA[f"{name}/in_intrinsics"])[None]
    with torch.no_grad():
        return net(
            torch.from_numpy(DATA[f"{name}/x"]),
            ext,
            ixt,
            export_feat_layers=opts.get("export_feat_layers", ()),
            use_ray_pose=opts.get("use_ray_pose", False),
            ref_view_strategy=opts.get("ref_view_strategy", "saddle_balanced"),
            ray_decomposition="ql",  # upstream's
        )


def _as_upstream_view_order(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Our exported features come in input view order; upstream leaves those of blocks past the reference-view
    choice in reference-first order (a labelling bug). Return ours in the order upstream used: the input order,
    or the reference view first with the others behind it in input order."""
    S = ours.shape[1]
    orders = [list(range(S))] + [[r] + [i for i in range(S) if i != r] for r in range(1, S)]
    errors = [p99_rel_err(ours[:, order], theirs.reshape(ours.shape)) for order in orders]
    return ours[:, orders[int(np.argmin(errors))]]


# The random network's ray maps give ill-conditioned cameras (focal lengths up to 1.5e4 px), so the ray solve
# magnifies last-bit differences: on torch 1.13 the intrinsics land at 1.2e-3, and at 2.3e-3 since the fusion
# blocks project before upsampling (the same values up to float rounding; torch 2 stays under 1e-3). The solve
# itself agrees with upstream to ~1e-6 on realistic rays on both torch versions (tests/models/da3/test_camera.py).
TORCH_1 = int(torch.__version__.split(".")[0]) < 2


def _tolerance(case, field):
    return 3e-3 if TORCH_1 and case["options"].get("use_ray_pose") and field == "intrinsics" else 1e-3


def _check(case, out):
    name = case["name"]
    errors = {}
    for field in case["outputs"]:
        expected = DATA[f"{name}/{field}"]
        if field == "scale_factor":
            ours = out.metric_scale.numpy()
        elif field.startswith("aux/"):
            ours = _as_upstream_view_order(out.aux[field[4:]].numpy(), expected)
        else:
            ours = getattr(out, field).numpy()
        if field == "extrinsics":
            assert ours.shape == expected.shape
            errors[field] = float(np.abs(ours - expected).max())
            assert errors[field] <= 2e-3, (name, field, errors[field])
            continue
        assert ours.shape == expected.reshape(ours.shape).shape, (name, field, ours.shape, expected.shape)
        errors[field] = p99_rel_err(ours, expected.reshape(ours.shape))
        assert errors[field] <= _tolerance(case, field), (name, field, errors[field])
    return errors


LIGHT = [c for c in CASES if c["arch"] not in HEAVY]


@pytest.mark.parametrize("case", LIGHT, ids=[c["name"] for c in LIGHT])
def test_matches_upstream(case):
    _check(case, _run(case))


@pytest.mark.parametrize("case", [c for c in LIGHT if c["arch"] == "da3-small"][:3], ids=lambda c: c["name"])
def test_explicit_attention_path_matches_upstream(case):
    _check(case, _run(case, fused=False))


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c["arch"] in HEAVY], ids=lambda c: c["name"])
def test_nested_matches_upstream(case):
    _check(case, _run(case))
