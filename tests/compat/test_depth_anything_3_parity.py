"""DepthAnything3.inference(precision="fp32") against upstream's inference run in float32 end to end
(fixtures: scripts/make_da3_api_fixtures.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anydepth.compat import DepthAnything3
from tests.helpers.parity import p99_rel_err
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import fill_

DATA = np.load(FIXTURES / "da3_api_parity.npz")
CASES = json.loads(str(DATA["cases_json"]))


@pytest.fixture(scope="module")
def model():
    m = DepthAnything3(model_name="da3-small", precision="fp32")
    fill_(m.model, CASES[0]["seed"])
    return m.eval()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_inference_matches_upstream(model, case):
    name, opts = case["name"], dict(case["options"])
    views = [DATA[f"{name}/image{i}"] for i in range(case["views"])]
    kwargs = {k: v for k, v in opts.items() if k != "posed"}
    if opts.get("posed"):
        kwargs.update(extrinsics=DATA[f"{name}/in_extrinsics"], intrinsics=DATA[f"{name}/in_intrinsics"])
    pred = model.inference(views, **kwargs)
    for field in case["outputs"]:
        expected, ours = DATA[f"{name}/{field}"], getattr(pred, field)
        if field == "processed_images":  # upstream's truncated round trip through the normalised tensor
            np.testing.assert_array_equal(ours, expected)
        elif field == "extrinsics":
            ours = ours[:, :3] if expected.shape[1] == 3 else ours
            assert np.abs(ours - expected[:, : ours.shape[1]]).max() <= 2e-3, field
        else:
            assert p99_rel_err(ours, expected) <= 1e-3, field
