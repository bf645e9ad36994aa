"""The built-in model (``anydepth-nano``): its bundled file loads strictly through the normal loader without the
network, it is listed with its card, it reproduces its recorded output, and its depth is good on unseen scenes."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import anydepth
from anydepth.bench.depth_metrics import image_depth_scores
from anydepth.checkpoints import read_state_dict
from anydepth.families import build_network, load_network_weights
from anydepth.hub import BUILTIN_DIR, bundled_path, resolve_weights
from anydepth.presets import get_preset
from tests.helpers.cli import run_cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "anydepth_nano.npz"
NAME = "anydepth-nano"
# AbsRel after the disparity scale and shift, aligned depth capped at the generator's 80 units, when the fixture
# was recorded: 0.042 (the room) and 0.362 (the outdoor scene, half sky, a hard one: the mean over 24 held-out
# outdoor scenes is 0.160). Random weights score 0.135 and 0.49 to 0.50, the mean training depth map 0.126 and 0.528:
# the bounds leave room for other CPUs' kernels and still refuse a file that is not the trained one.
ABS_REL_BOUNDS = {"indoor": 0.09, "outdoor": 0.42}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs as on a machine without network: a connection attempt fails the test, and the hub's
    download function is not to be reached at all."""

    def refuse(*args, **kwargs):
        raise AssertionError("the built-in model touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("anydepth.hub.download", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def recorded():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def model():
    return anydepth.load_model(NAME, device="cpu", precision="fp32", num_threads=1)


def test_the_bundled_file_is_package_data_and_loads_strictly():
    preset = get_preset(NAME)
    path = resolve_weights(preset)
    assert path == bundled_path(preset.weights) == BUILTIN_DIR / "anydepth-nano.safetensors"
    assert path.stat().st_size < 10 * 2**20  # a few MB: float16
    state = read_state_dict(path)
    net = build_network(preset)
    assert set(state) == set(net.state_dict())  # the official V2 key layout, nothing more, nothing less
    assert {v.dtype for v in state.values()} == {torch.float16}
    load_network_weights(net, preset, path)  # strict
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key].float(), rtol=0, atol=0)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(preset.params * 1e6, rel=0.01)
    text = Path(__file__).resolve().parents[2].joinpath("pyproject.toml").read_text()
    assert '"builtin/*.safetensors", "builtin/*.md"' in text  # what `pip install .` copies into the wheel


def test_listed_with_its_card():
    info = next(m for m in anydepth.list_models() if m.name == NAME)
    assert info.bundled and info.repo_id is None and info.family == "dav2" and info.depth_kind == "disparity"
    assert info.card is not None and info.card.is_file()
    card = info.card.read_text()
    for needle in ("anydepth train", "--seed", "synthetic", "not a substitute for the official", "AbsRel"):
        assert needle in card
    assert all(m.card is None for m in anydepth.list_models() if m.name != NAME)


def test_reproduces_its_recorded_output(model, recorded):
    disparity = model.infer(list(recorded["images"])).depth
    assert disparity.shape == recorded["disparity"].shape
    scale = float(np.abs(recorded["disparity"]).max())
    np.testing.assert_allclose(disparity, recorded["disparity"], rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("index, kind", [(0, "indoor"), (1, "outdoor")])
def test_depth_of_unseen_scenes(model, recorded, index, kind):
    disparity = model.infer(recorded["images"][index]).depth[0]
    scores = image_depth_scores(disparity, recorded["depth"][index], "scale_shift_disparity", max_depth=80.0,
                                pred_is_disparity=True)  # fmt: skip
    assert scores.abs_rel < ABS_REL_BOUNDS[kind]
    assert model.depth_kind == "disparity"  # relative: no metres, and no cameras (a V2 network has none)


def test_image_command_offline(tmp_path, recorded):
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.fromarray(recorded["images"][0]).save(photo)
    code, output = run_cli("--threads", "1", "image", photo, "--model", NAME, "--outdir", tmp_path / "out",
                           "--raw", "npy", "--quiet")  # fmt: skip
    assert code == 0, output
    depth = np.load(tmp_path / "out" / "photo_depth.npy")
    assert depth.shape == (126, 168) and np.isfinite(depth).all() and depth.std() > 0


def test_bench_run_scores_it_offline_and_takes_a_depth_cap(tmp_path):
    import json

    code, output = run_cli("bench", "make-synthetic", "--out", tmp_path / "gt", "--kind", "outdoor", "--scenes", "1",
                           "--views", "2", "--size", "84x63", "--seed", "300000")  # fmt: skip
    assert code == 0, output
    pixels = {}
    for cap in (None, 10.0):
        out = tmp_path / f"run-{cap}"
        args = ["bench", "run", "--root", tmp_path / "gt", "--model", NAME, "--out", out, "--modes", "depth",
                "--alignment", "scale_shift_disparity", "--process-res", "126", "--precision", "fp32"]  # fmt: skip
        code, output = run_cli(*args, *([] if cap is None else ["--max-depth", cap]))
        assert code == 0, output
        scores = json.loads((out / "outdoor-300000.json").read_text())["depth"]["mean"]
        pixels[cap] = scores["valid_pixels"]
    assert 0 < pixels[10.0] < pixels[None]  # ground truth beyond the cap is not scored


def test_a_missing_bundled_file_is_one_clear_error_and_the_file_names_its_preset(monkeypatch, tmp_path):
    from anydepth.errors import WeightsError
    from anydepth.presets import guess_preset

    assert guess_preset(str(bundled_path(get_preset(NAME).weights))) == NAME
    assert guess_preset("") is None  # the empty repo id of a bundled spec matches nothing
    monkeypatch.setattr("anydepth.hub.BUILTIN_DIR", tmp_path)
    with pytest.raises(WeightsError, match=r"anydepth-nano.safetensors is missing from the installed package"):
        resolve_weights(get_preset(NAME))
