"""Scoring saved predictions: the export layout against the ground-truth layout, through the library and
`anydepth bench score`, with one-line errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from anydepth.bench.score import read_ground_truth, score
from anydepth.bench.synthetic import indoor_scene, orbit, render_views, write_ground_truth
from anydepth.cli.main import app
from anydepth.errors import InputError


@pytest.fixture(scope="module")
def gt_folder(tmp_path_factory):
    scene = indoor_scene(4)
    return write_ground_truth(tmp_path_factory.mktemp("gt") / "scene", render_views(scene, orbit(scene, 4), 64, 48))


def _prediction(folder, gt, scale=2.0, cameras=True, size=(36, 48)):
    """A prediction as the mini_npz export writes it: exports/mini_npz/results.npz at a processing size."""
    import cv2

    truth = read_ground_truth(gt)
    depth = np.stack([cv2.resize(d, size[::-1], interpolation=cv2.INTER_NEAREST) for d in truth.depth]) * scale
    arrays = {"depth": depth.astype(np.float32)}
    if cameras:
        arrays.update(extrinsics=truth.extrinsics.astype(np.float32), intrinsics=truth.intrinsics.astype(np.float32))
    path = folder / "exports" / "mini_npz" / "results.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, **arrays)
    return folder


def test_ground_truth_up_to_scale_scores_nearly_perfectly(tmp_path, gt_folder):
    result = score(_prediction(tmp_path, gt_folder), gt_folder)
    assert result["views"] == 4 and set(result) >= {"depth", "pose"}
    mean = result["depth"]["mean"]
    assert mean["abs_rel"] < 0.02 and mean["delta1"] > 0.98  # resampling at edges only
    assert mean["scale"] == pytest.approx(0.5, rel=0.01)
    assert result["pose"]["auc03"] == pytest.approx(1.0) and result["pose"]["pairs"] == 6
    assert set(result["depth"]["per_view"]) == {"000000.png", "000001.png", "000002.png", "000003.png"}
    assert result["depth"]["seconds"] >= 0 and result["depth"]["peak_rss_mib"] > 0


def test_unaligned_scale_error_is_reported(tmp_path, gt_folder):
    result = score(_prediction(tmp_path, gt_folder, scale=1.5), gt_folder, ["depth"], alignment="none")
    assert result["depth"]["mean"]["abs_rel"] == pytest.approx(0.5, abs=0.02)
    assert "pose" not in result


def test_cli_prints_the_summary_and_writes_json(tmp_path, gt_folder):
    pred = _prediction(tmp_path / "p", gt_folder)
    out = tmp_path / "r" / "score.json"
    res = CliRunner().invoke(app, ["bench", "score", "--pred", str(pred), "--gt", str(gt_folder), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "depth  abs_rel" in res.output and "pose   auc30" in res.output
    saved = json.loads(out.read_text())
    assert saved["pose"]["auc30"] == pytest.approx(1.0) and saved["ground_truth"] == str(gt_folder)


def test_bad_inputs_fail_with_one_line_naming_the_file(tmp_path, gt_folder):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "score", "--pred", str(tmp_path / "none.npz"), "--gt", str(gt_folder)])
    assert res.exit_code == 1 and "none.npz: no such prediction file" in res.output
    no_cams = _prediction(tmp_path / "nc", gt_folder, cameras=False)
    res = runner.invoke(app, ["bench", "score", "--pred", str(no_cams), "--gt", str(gt_folder), "--modes", "pose"])
    assert res.exit_code == 1 and "no extrinsics for the pose mode" in res.output
    empty = tmp_path / "empty_gt"
    empty.mkdir()
    with pytest.raises(InputError, match=r"cameras\.npz: missing"):
        score(no_cams, empty)
    two = tmp_path / "two"
    np.savez(two.with_suffix(".npz"), depth=np.ones((2, 36, 48), np.float32))
    with pytest.raises(InputError, match="2 predicted views against 4"):
        score(two.with_suffix(".npz"), gt_folder)
    cropped = tmp_path / "crop.npz"
    np.savez(cropped, depth=np.ones((4, 48, 48), np.float32))
    with pytest.raises(InputError, match="does not cover"):
        score(cropped, gt_folder, ["depth"])


def test_video_and_trajectory_modes(tmp_path):
    from anydepth.bench.synthetic import walk

    scene = indoor_scene(7)
    gt = write_ground_truth(tmp_path / "gt", render_views(scene, walk(scene, 6), 48, 36))
    pred = _prediction(tmp_path / "p", gt, size=(27, 36))
    result = score(pred, gt, ["video", "trajectory"])
    assert result["video"]["abs_rel"] < 0.03 and result["video"]["delta1"] > 0.97 and result["video"]["tae"] < 5
    assert result["trajectory"]["ate_rmse"] < 1e-5 and result["trajectory"]["frames"] == 6


def test_reconstruction_modes(tmp_path, gt_folder):
    pytest.importorskip("scipy")
    import cv2

    truth = read_ground_truth(gt_folder)
    # a prediction in units twice the ground truth's (depth and camera translations), at its size
    w2c = truth.extrinsics.copy()
    w2c[:, :, 3] *= 2.0
    pred = tmp_path / "same.npz"
    np.savez(pred, depth=np.stack(truth.depth) * 2.0, extrinsics=w2c, intrinsics=truth.intrinsics)
    result = score(pred, gt_folder, ["recon-posed", "recon-unposed"], fscore_threshold=0.1)
    assert result["recon-posed"]["fscore"] > 0.99 and result["recon-unposed"]["fscore"] > 0.99
    # at half the size: the predicted intrinsics are at the prediction's size and are brought to the ground truth's
    half = tmp_path / "half.npz"
    small = np.stack([cv2.resize(d, (32, 24), interpolation=cv2.INTER_NEAREST) for d in truth.depth]) * 2.0
    K = truth.intrinsics.copy()
    K[:, :2] *= 0.5
    np.savez(half, depth=small, extrinsics=w2c, intrinsics=K)
    result = score(half, gt_folder, ["recon-unposed"], fscore_threshold=0.1)
    assert result["recon-unposed"]["fscore"] > 0.9


def test_the_datasets_settings_in_scene_json_are_the_defaults(tmp_path, gt_folder):
    import shutil

    from anydepth.bench.datasets import write_scene_meta

    folder = shutil.copytree(gt_folder, tmp_path / "gt")
    pred = _prediction(tmp_path / "p", folder, scale=1.3)
    plain = score(pred, folder, ["depth"], alignment="none")
    capped = score(pred, folder, ["depth"], alignment="none", max_depth=3.0)
    assert capped["depth"]["mean"] != plain["depth"]["mean"]  # the cap changes which pixels are scored
    write_scene_meta(folder, "test", "scene", max_depth=3.0, fscore_threshold=0.2)
    assert score(pred, folder, ["depth"], alignment="none")["depth"]["mean"] == capped["depth"]["mean"]
    # the caller's value wins over the dataset's
    assert score(pred, folder, ["depth"], alignment="none", max_depth=np.inf)["depth"]["mean"] == plain["depth"]["mean"]
    write_scene_meta(folder, "test", "scene", has_poses=False)
    assert set(score(pred, folder)) >= {"depth"} and "pose" not in score(pred, folder)  # default modes follow
    with pytest.raises(InputError, match="no ground-truth cameras; the pose mode"):
        score(pred, folder, ["depth", "pose"])


def _scene_copy(folder, gt_folder, unit=1.0, **meta):
    """The ground truth of ``gt_folder`` in ``unit`` per scene unit, with a reference cloud of its own points (plyfile)
    and ``meta`` in its scene.json; returns the folder and the truth read back."""
    from plyfile import PlyData, PlyElement

    from anydepth.bench.datasets import write_scene_meta
    from anydepth.bench.reconstruction import unproject

    truth = read_ground_truth(gt_folder)
    (folder / "depth").mkdir(parents=True)
    w2c = truth.extrinsics.copy()
    w2c[:, :, 3] *= unit
    for name, depth in zip(truth.names, truth.depth):
        np.save(folder / "depth" / (name[:-4] + ".npy"), depth * unit)
    points = np.concatenate([unproject(d * unit, e, k) for d, e, k in zip(truth.depth, w2c, truth.intrinsics)])
    vertex = np.array([tuple(p) for p in points], dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(folder / "reference.ply"))
    write_scene_meta(folder, "test", "scene", reference="reference.ply", **meta)
    np.savez(folder / "cameras.npz", extrinsics=w2c, intrinsics=truth.intrinsics, image_names=truth.names)
    pred = folder / "pred.npz"
    np.savez(pred, depth=np.stack(truth.depth) * unit, extrinsics=w2c, intrinsics=truth.intrinsics)
    return folder, pred, points


def test_reconstruction_reads_the_reference_and_the_fusion_settings_of_scene_json(tmp_path, gt_folder):
    pytest.importorskip("scipy")
    folder, pred, _ = _scene_copy(tmp_path / "s", gt_folder, fscore_threshold=0.1, voxel_length=0.04,
                                  down_sample=0.05, sampling_number=20_000)  # fmt: skip
    result = score(pred, folder, ["recon-posed", "recon-unposed"], alignment="none")
    for mode in ("recon-posed", "recon-unposed"):
        assert result[mode]["ground_truth"] == "reference-points" and result[mode]["threshold"] == 0.1
        # 1.0 by the NumPy point fusion; Open3D's TSDF (where installed) rounds the surface off at depth edges
        assert result[mode]["fscore"] > 0.95 and result[mode]["accuracy"] < 0.05 and result[mode]["seconds"] >= 0


def test_dtu_scenes_are_scored_by_dtu_protocol_in_millimetres(tmp_path, gt_folder):
    io = pytest.importorskip("scipy.io")
    from anydepth.bench.score import summary_rows

    folder = tmp_path / "dtu"
    folder.mkdir()
    # the observation volume: every 500 mm voxel of the scene's box observed; the plane below everything
    bb = np.array([[-20_000.0, -20_000, -20_000], [20_000, 20_000, 20_000]])
    io.savemat(
        folder / "ObsMask.mat", {"ObsMask": np.ones((81, 81, 81), np.uint8), "BB": bb, "Res": np.array([[500.0]])}
    )
    io.savemat(folder / "Plane.mat", {"P": np.array([[0.0], [0.0], [0.0], [1.0]])})
    dtu = {"obs_mask": "ObsMask.mat", "ground_plane": "Plane.mat", "max_dist": 20, "patch_size": 60,
           "down_dense": 0.2, "dist_thresh": 5.0, "num_consist": 2}  # fmt: skip
    folder, pred, points = _scene_copy(folder, gt_folder, unit=1000.0, units="mm", dtu=dtu)
    result = score(pred, folder, ["recon-posed", "recon-unposed"], alignment="none")
    posed, unposed = result["recon-posed"], result["recon-unposed"]
    assert (posed["protocol"], posed["fusion"], unposed["fusion"]) == ("dtu", "dtu-consistency", "dtu-backprojection")
    assert posed["fscore"] is None and posed["accuracy"] < 1.0 and unposed["accuracy"] < 1e-3
    assert unposed["completeness"] < 1e-3 and unposed["ground_truth_points"] == len(points)
    rows = summary_rows(result)
    assert ["recon-posed", "accuracy", f"{posed['accuracy']:.4f}"] in rows
    assert ["recon-unposed", "overall", f"{unposed['overall']:.4f}"] in rows
    assert not any(row[1] == "fscore" for row in rows)


def test_a_scene_without_depth_but_with_masks_and_a_reference_scores_reconstruction_only(tmp_path, gt_folder):
    """DTU as upstream ships it: masks of where to score, the reference cloud, no depth maps."""
    pytest.importorskip("scipy")
    import cv2

    from anydepth.bench.datasets import read_scene_meta, write_scene_meta

    folder, pred, _ = _scene_copy(tmp_path / "s", gt_folder, fscore_threshold=0.1, sampling_number=20_000)
    truth = read_ground_truth(folder)
    (folder / "masks").mkdir()
    meta = read_scene_meta(folder)
    meta.update(has_depth=False, masks="masks")
    write_scene_meta(folder, **meta)
    recall = {}
    for part in ("whole", "right half"):
        for name, depth in zip(truth.names, truth.depth):
            mask = depth > 0
            if part == "right half":
                mask[:, : depth.shape[1] // 2] = False
            cv2.imwrite(str(folder / "masks" / name), mask.astype(np.uint8) * 255)
            np.save(folder / "depth" / (name[:-4] + ".npy"), np.zeros_like(depth))
        result = score(pred, folder, ["recon-posed"], alignment="none")["recon-posed"]
        assert result["accuracy"] < 0.02 and result["precision"] > 0.95  # what is scored is exact
        recall[part] = result["recall"]
    # the left halves left out of the prediction leave part of the reference uncovered
    assert recall["whole"] > 0.97 and recall["right half"] < recall["whole"] - 0.1
    with pytest.raises(InputError, match="no ground-truth depth; the depth mode"):
        score(pred, folder, ["depth", "recon-posed"])
    (folder / "masks" / truth.names[1]).unlink()
    with pytest.raises(InputError, match="a validity mask PNG"):
        score(pred, folder, ["recon-posed"])
