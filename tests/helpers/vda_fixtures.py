"""The stored Video Depth Anything parity data (scripts/make_vda_fixtures.py) and the weights it was made with.

``VDA`` holds the arrays of ``vda_parity.npz`` (frames and upstream's outputs), ``CASES`` its cases by name and
``KEYS`` the official key names and shapes per encoder; :func:`upstream_state_dict` rebuilds a case's weights.
"""

from __future__ import annotations

import json
from typing import Dict

import numpy as np
import torch

from anydepth.models.video_depth_anything import SinusoidalPositions
from tests.helpers.paths import FIXTURES
from tests.helpers.random_weights import random_state_dict

with np.load(FIXTURES / "vda_parity.npz", allow_pickle=False) as _z:
    VDA: Dict[str, np.ndarray] = {k: _z[k] for k in _z.files}
CASES = {c["name"]: c for c in json.loads(str(VDA["cases_json"]))}
KEYS = json.loads((FIXTURES / "vda_keys.json").read_text())


def upstream_state_dict(encoder: str, seed: int) -> Dict[str, torch.Tensor]:
    """The fixture weights: random values for every key except the sinusoidal ``pos_encoder.pe`` tables."""
    shapes = KEYS[encoder]
    sd = random_state_dict({k: v for k, v in shapes.items() if not k.endswith(".pos_encoder.pe")}, seed)
    for key, shape in shapes.items():
        if key.endswith(".pos_encoder.pe"):
            sd[key] = SinusoidalPositions(shape[2], shape[1]).pe
    return sd
