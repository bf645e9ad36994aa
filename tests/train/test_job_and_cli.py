"""``anydepth train`` and its job: options refused in one line before any work, and a tiny run whose weights load
like official ones."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import anydepth
from anydepth.errors import OptionError
from anydepth.jobs.train import TrainOptions
from tests.helpers.cli import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    "overrides, option",
    [
        ({"steps": 0}, "steps"),
        ({"model": "depthcrafter"}, "model"),
        ({"model": "da3nested-giant-large"}, "model"),
        ({"data": "/nowhere/at/all"}, "data"),
        ({"size": "100x100"}, "size"),
        ({"precision": "fp16", "device": "cpu"}, "precision"),
        ({"schedule": "step"}, "schedule"),
        ({"weights": "w.pth", "from_scratch": True}, "from_scratch"),
        ({"encoder_lr_mult": -1.0}, "encoder_lr_mult"),
        ({"ssi_alignment": "mean"}, "ssi_alignment"),
        ({"ssi_alignment": "median", "model": "da3-small"}, "ssi_alignment"),
        ({"ssi_alignment": "median", "model": "dav2-metric-indoor-small"}, "ssi_alignment"),
    ],
)
def test_options_are_checked_before_any_work(tmp_path, overrides, option):
    values = {"model": "dav2-small", "data": "synthetic", "out": tmp_path / "run", **overrides}
    with pytest.raises(OptionError) as caught:
        TrainOptions(**values).check()
    assert caught.value.option == option
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_bad_option_in_one_line(tmp_path):
    code, output = run_cli("train", "--model", "dav2-small", "--data", "synthetic", "--out", tmp_path / "run",
                           "--steps", "0")  # fmt: skip
    assert_one_line_error(code, output, "--steps 0", "at least 1")
    code, output = run_cli("train", "--model", "dav2-small", "--data", "synthetic", "--out", tmp_path / "run",
                           "--size", "60x60")  # fmt: skip
    assert_one_line_error(code, output, "--size", "multiples of 14")
    assert not (tmp_path / "run").exists()


def test_cli_tiny_run_writes_official_weights_that_load(tmp_path, vits_weights):
    out = tmp_path / "run"
    code, output = run_cli(
        "train", "--model", "dav2-small", "--weights", vits_weights, "--data", "synthetic", "--out", out,
        "--steps", "2", "--batch-size", "1", "--size", "42x28", "--precision", "fp32", "--device", "cpu",
        "--synthetic-scenes", "2", "--eval-items", "2", "--save-every", "1", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    weights = out / "weights" / "depth_anything_v2_vits.pth"
    assert weights.is_file() and str(weights) in output
    assert "held-out AbsRel" in output
    summary = json.loads((out / "train.json").read_text())
    assert summary["steps"] == 2 and len(summary["evaluations"]) == 2 and summary["samples_per_second"] > 0
    assert (out / "checkpoints" / "last.pt").is_file()
    model = anydepth.load_model("dav2-small", weights=str(weights), device="cpu", precision="fp32")
    trained = torch.load(str(weights), weights_only=True)
    start = torch.load(str(vits_weights), weights_only=True)
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # it did train
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, trained[k])
    # and resuming a finished run does no more steps
    code, output = run_cli(
        "train", "--model", "dav2-small", "--weights", vits_weights, "--data", "synthetic", "--out", out,
        "--steps", "2", "--batch-size", "1", "--size", "42x28", "--precision", "fp32", "--device", "cpu",
        "--synthetic-scenes", "2", "--eval-items", "2", "--resume", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    assert json.loads((out / "train.json").read_text())["steps"] == 2


def test_job_trains_a_folder_of_images_with_depth(tmp_path, vits_weights):
    import cv2
    import numpy as np

    from anydepth.jobs.train import train_job

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(data / f"{i}.png"), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        cv2.imwrite(str(data / f"{i}_depth.png"), rng.integers(500, 5000, (30, 40), dtype=np.uint16))
    options = TrainOptions(model="dav2-small", data=str(data), out=tmp_path / "run", weights=str(vits_weights),
                           steps=1, batch_size=2, size="28x28", precision="fp32", device="cpu", val_data=str(data),
                           eval_items=2, progress=False)  # fmt: skip
    report = train_job(options)
    assert Path(report.weights).is_file() and report.summary["evaluations"]
    assert report.summary["data"] == "DepthFolderSource: 1 sequence(s), 3 frame(s)"


def test_command_defaults_are_the_options_defaults():
    import typer.main

    from anydepth.cli.main import app

    command = typer.main.get_command(app).commands["train"]
    cli = {p.name: p.default for p in command.params}
    defaults = {
        f.name: f.default for f in fields(TrainOptions) if f.name in cli and f.name not in ("model", "data", "out")
    }
    assert len(defaults) > 20
    for name, value in defaults.items():
        assert cli[name] == value, name


def test_a_clip_longer_than_the_video_model_attends_over_is_refused(tmp_path):
    from anydepth.jobs.train import train_job

    options = TrainOptions(model="vda-small", data="synthetic", out=tmp_path / "run", from_scratch=True, frames=33,
                           steps=1, size="28x28", device="cpu", progress=False)  # fmt: skip
    with pytest.raises(OptionError, match="at most 32 frames"):
        train_job(options)


def test_weights_of_another_family_are_refused_before_training(tmp_path, vits_weights):
    code, output = run_cli("train", "--model", "vda-small", "--weights", vits_weights, "--data", "synthetic",
                           "--out", tmp_path / "run", "--steps", "1", "--device", "cpu")  # fmt: skip
    assert_one_line_error(code, output, str(vits_weights), "does not match")
    assert not (tmp_path / "run").exists()
