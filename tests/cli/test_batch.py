"""``anydepth batch``: the command runs the job, reports what it did, and words bad options as flags."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from anydepth.cli.main import app
from tests.helpers.batch_inputs import write_corrupt, write_images


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_batch_command_runs_and_resumes(tmp_path, vits_weights):
    write_images(tmp_path / "in", 6)
    write_corrupt(tmp_path / "in")
    out = tmp_path / "out"
    args = ["batch", tmp_path / "in", out, "--weights", vits_weights, "--device", "cpu", "--precision", "fp32",
            "--input-size", 28, "--format", "png16,npz", "-q"]  # fmt: skip
    code, output = _run(*args)
    assert code == 0, output
    assert "6 done, 0 already done, 2 failed" in output and "failures.jsonl" in output
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["model"] == "dav2-small" for r in rows)  # the preset from the file name
    code, output = _run(*args)
    assert code == 0 and "0 done, 6 already done" in output


def test_batch_command_words_bad_options_as_flags(tmp_path, vits_weights):
    code, output = _run("batch", tmp_path, tmp_path / "out", "--weights", vits_weights, "--segment-frames", 8,
                        "--segment-overlap", 8)  # fmt: skip
    assert code != 0 and "--segment-overlap 8: must be smaller than --segment-frames" in output
    code, output = _run("batch", tmp_path, tmp_path / "out", "--weights", vits_weights, "--format", "exr")
    assert code != 0 and "--format exr" in output
