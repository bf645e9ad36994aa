"""`anydepth bench make-synthetic` and `bench run`: a random DA3 over synthetic scenes, scored, resumable, and
independent of the order scenes are listed in."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from anydepth.cli.main import app
from anydepth.jobs.bench import ground_truth_scenes, run_job, score_job, summarise
from anydepth.jobs.options import ModelSpec, RuntimeOptions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    res = CliRunner().invoke(
        app, ["bench", "make-synthetic", "--out", str(root), "--scenes", "2", "--views", "3", "--size", "56x42"]
    )
    assert res.exit_code == 0, res.output
    return root


def test_make_synthetic_is_deterministic_and_keeps_complete_scenes(dataset, tmp_path):
    assert [p.name for p in ground_truth_scenes(dataset)] == ["indoor-0000", "indoor-0001"]
    again = tmp_path / "again"
    CliRunner().invoke(app, ["bench", "make-synthetic", "--out", str(again), "--scenes", "1", "--views", "3",
                             "--size", "56x42"])  # fmt: skip
    a = (dataset / "indoor-0000" / "depth" / "000001.npy").read_bytes()
    assert a == (again / "indoor-0000" / "depth" / "000001.npy").read_bytes()
    res = CliRunner().invoke(app, ["bench", "make-synthetic", "--out", str(again), "--kind", "cave"])
    assert res.exit_code == 1 and "unknown synthetic kind 'cave'" in res.output


def test_run_scores_every_scene_and_resumes(dataset, tmp_path, da3_small_folder):
    folder, _ = da3_small_folder
    loads = []

    def loader(spec, runtime):
        from anydepth.jobs.loader import load

        loads.append(spec.name)
        return load(spec, runtime)

    spec, runtime = ModelSpec("da3-small", str(folder)), RuntimeOptions("cpu", "fp32")
    out = tmp_path / "run"
    summary = run_job(dataset, spec, runtime, out, ["depth", "pose"], process_res=56, loader=loader)
    assert summary["scenes"] == ["indoor-0000", "indoor-0001"] and loads == ["da3-small"]
    assert summary["mean"]["depth"]["abs_rel"] > 0.0 and 0.0 <= summary["mean"]["pose"]["auc30"] <= 1.0
    per_scene = json.loads((out / "indoor-0001.json").read_text())
    assert set(per_scene["depth"]["per_view"]) == {"000000.png", "000001.png", "000002.png"}
    # resumed: nothing runs again, the same summary comes back
    (out / "indoor-0000").rename(out / "moved")  # predictions are not needed once scored
    again = run_job(dataset, spec, runtime, out, ["depth", "pose"], process_res=56, loader=loader)
    assert again == summary and loads == ["da3-small"]


def test_summary_does_not_depend_on_scene_order():
    a = {"x": {"depth": {"mean": {"abs_rel": 0.1}}}, "y": {"depth": {"mean": {"abs_rel": 0.3}}}}
    b = dict(reversed(list(a.items())))
    assert summarise(a) == summarise(b) and summarise(a)["mean"]["depth"]["abs_rel"] == pytest.approx(0.2)


def test_cli_run_prints_the_means(dataset, tmp_path, da3_small_folder):
    folder, _ = da3_small_folder
    args = ["bench", "run", "--root", str(dataset), "--weights", str(folder), "--device", "cpu", "--precision",
            "fp32", "--out", str(tmp_path / "r"), "--process-res", "56", "--modes", "depth"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "depth          abs_rel" in res.output and (tmp_path / "r" / "summary.json").is_file()


def test_compare_prints_runs_side_by_side(tmp_path):
    for name, value in (("a", 0.1), ("b", 0.25)):
        (tmp_path / name).mkdir()
        summary = {"scenes": ["s"], "mean": {"depth": {"abs_rel": value}}}
        if name == "b":
            summary["mean"]["pose"] = {"auc30": 0.5}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    res = CliRunner().invoke(app, ["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["mode", "metric", "a", "b"]
    assert lines[1].split() == ["depth", "abs_rel", "0.1000", "0.2500"]
    assert lines[2].split() == ["pose", "auc30", "-", "0.5000"]
    res = CliRunner().invoke(app, ["bench", "compare", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "no summary.json" in res.output


def test_plots_of_a_run(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np
    from PIL import Image

    from anydepth.bench.synthetic import indoor_scene, render_views, walk, write_ground_truth
    from anydepth.jobs.bench import score_job

    scene = indoor_scene(2)
    gt = write_ground_truth(tmp_path / "gt" / "walk", render_views(scene, walk(scene, 5), 40, 30))
    cams = np.load(gt / "cameras.npz")
    run = tmp_path / "run"
    pred = run / "walk" / "exports" / "mini_npz" / "results.npz"
    pred.parent.mkdir(parents=True)
    depth = np.stack([np.load(gt / "depth" / f"{i:06d}.npy") for i in range(5)])
    np.savez(pred, depth=depth * 3.0, extrinsics=cams["extrinsics"], intrinsics=cams["intrinsics"])
    score_job(run / "walk", gt, ["depth", "pose"], json_out=run / "walk.json")
    (run / "summary.json").write_text(json.dumps({"scenes": ["walk"], "mean": {}}))
    res = CliRunner().invoke(app, ["bench", "plot", str(run)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (run / "plots").iterdir())
    assert names == ["depth_abs_rel.png", "depth_abs_rel_hist.png", "depth_delta1.png", "pose_auc03.png",
                     "pose_auc30.png", "trajectory_walk.png"]  # fmt: skip
    for name in names:
        with Image.open(run / "plots" / name) as image:
            assert image.format == "PNG" and image.width >= 300


def test_an_image_model_runs_over_the_scenes_and_is_scored_as_disparity(dataset, tmp_path, vits_weights):
    spec, runtime = ModelSpec("dav2-small", str(vits_weights)), RuntimeOptions("cpu", "fp32")
    summary = run_job(dataset, spec, runtime, tmp_path / "v2", process_res=42, alignment="scale_shift_disparity")
    # no cameras: depth only, scored per view as disparity
    assert list(summary["mean"]) == ["depth"] and 0.0 < summary["mean"]["depth"]["abs_rel"] < 10.0
    with np.load(tmp_path / "v2" / "indoor-0000" / "results.npz") as data:
        assert data["depth"].shape == (3, 42, 56) and str(data["depth_kind"]) == "disparity"
    # the run's folder of a scene is a prediction `bench score` reads as it is
    again = score_job(tmp_path / "v2" / "indoor-0000", dataset / "indoor-0000", ["depth"], "scale_shift_disparity",
                      pred_is_disparity=True)  # fmt: skip
    assert again["depth"]["mean"] == json.loads((tmp_path / "v2" / "indoor-0000.json").read_text())["depth"]["mean"]


def test_scores_do_not_depend_on_workers_nor_on_scene_order(dataset, tmp_path, da3_small_folder):
    folder, _ = da3_small_folder
    spec, runtime = ModelSpec("da3-small", str(folder)), RuntimeOptions("cpu", "fp32")
    one = run_job(dataset, spec, runtime, tmp_path / "one", ["depth", "pose"], process_res=56)
    reverse = tmp_path / "reverse"  # the same scenes, listed (and created) in the other order
    for name in ("indoor-0001", "indoor-0000"):
        shutil.copytree(dataset / name, reverse / name)
    two = run_job(reverse, spec, runtime, tmp_path / "two", ["depth", "pose"], process_res=56, workers=2)
    assert two == one
    for name in ("indoor-0000", "indoor-0001"):
        a = json.loads((tmp_path / "one" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert _without_timings(a) == _without_timings(b)


def _without_timings(result):
    if isinstance(result, dict):
        return {k: _without_timings(v) for k, v in result.items()
                if k not in ("seconds", "peak_rss_mib", "prediction", "ground_truth")}  # fmt: skip
    return result


def test_run_with_a_dataset_reader_converts_then_scores(tmp_path, da3_small_folder):
    from tests.bench.test_datasets import _seven_scenes

    folder, _ = da3_small_folder
    _seven_scenes(tmp_path / "raw", frames=3)
    spec, runtime = ModelSpec("da3-small", str(folder)), RuntimeOptions("cpu", "fp32")
    summary = run_job(tmp_path / "raw", spec, runtime, tmp_path / "run", ["depth", "pose"], process_res=56,
                      dataset="7scenes", scenes=["chess"])  # fmt: skip
    assert summary["scenes"] == ["7scenes-chess"]
    meta = json.loads((tmp_path / "run" / "ground-truth" / "7scenes-chess" / "scene.json").read_text())
    assert meta["dataset"] == "7scenes" and meta["fscore_threshold"] == 0.05


def test_cli_lists_the_dataset_readers():
    res = CliRunner().invoke(app, ["bench", "datasets"])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines()]
    assert names[:2] == ["7scenes", "eth3d"] and "sintel" in names and "dtu64" in names
