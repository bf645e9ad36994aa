"""The batch job on the local engine: outputs read back with PIL and NumPy, corrupt inputs in the failures file,
resume after an interruption, URIs through fsspec, videos split into segments and stitched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import pytest
from PIL import Image

from anydepth.jobs.batch import BatchOptions, Item, batch_job, stitch_frames
from anydepth.jobs.batch_store import Manifest, Source, output_name
from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions
from tests.helpers.batch_inputs import write_corrupt, write_images, write_video

pytestmark = pytest.mark.torch113  # the inference core on torch 1.13 / Python 3.9 too

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", threads=1)
OPTIONS = BatchOptions(formats=("png16", "npz"), input_size=28, batch_size=4, workers=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """30 random images in two folders (two sizes, PNG and JPEG) and two corrupt files."""
    root = tmp_path_factory.mktemp("batch_in")
    paths = write_images(root, 30, seed=0)
    write_corrupt(root)
    return root, paths


@pytest.fixture
def spec(vits_weights):
    return ModelSpec("dav2-small", weights=str(vits_weights))


def _ok_rows(out: Path):
    return [r for r in Manifest(out).read() if r["status"] == "ok"]


def _files(out: Path):
    """Every output file's bytes, by path relative to OUTPUT (the manifest and failures left out)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("manifest.jsonl", "failures.jsonl")
    }


def test_local_engine_outputs_and_failures(tmp_path, images, spec):
    root, paths = images
    out = tmp_path / "out"
    report = batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False)
    assert (report.done, report.failed, report.skipped) == (30, 2, 0)
    rows = _ok_rows(out)
    assert sorted(r["uri"] for r in rows) == sorted(p.resolve().as_posix() for p in paths)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(Path(f["uri"]).name for f in failures) == ["broken.jpg", "truncated.png"]
    assert all(f["status"] == "failed" and f["reason"] for f in failures)
    # every output read back by PIL and NumPy, at the input's size, equal to the model on the decoded image
    model = load(spec, RUNTIME)
    for row in rows[:6]:
        source = Image.open(row["uri"])
        png = Image.open(out / f"{row['name']}_depth16.png")
        assert png.mode.startswith("I") and png.size == source.size == (row["width"], row["height"])
        with np.load(out / f"{row['name']}_depth.npz") as z:
            depth = z["depth"]
        expected = model.infer(np.asarray(source.convert("RGB")), input_size=28).depth[0]
        np.testing.assert_allclose(depth, expected, rtol=1e-4, atol=1e-5)
        assert row["depth_min"] == pytest.approx(float(depth.min()))
        assert row["depth_median"] == pytest.approx(float(np.median(depth)))
        assert row["outputs"] == [f"{row['name']}_depth16.png", f"{row['name']}_depth.npz"]
    # a second run does nothing and changes nothing
    before = _files(out)
    again = batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False)
    assert (again.done, again.skipped) == (0, 30)
    assert _files(out) == before


class _Interrupting:
    """A model that is stopped (Ctrl-C) at its ``after``-th forward pass, and counts the images it sees."""

    seen: ClassVar[list] = []
    after: ClassVar[Optional[int]] = None

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def infer_iter(self, images, **kwargs):
        if _Interrupting.after is not None and len(_Interrupting.seen) >= _Interrupting.after:
            raise KeyboardInterrupt
        _Interrupting.seen.extend(range(len(images)))
        return self.model.infer_iter(images, **kwargs)


def _interrupting_loader(spec, runtime):
    return _Interrupting(load(spec, runtime))


def test_resume_after_interruption_does_nothing_twice(tmp_path, images, spec):
    root, _ = images
    clean = tmp_path / "clean"
    batch_job(str(root), clean, spec, RUNTIME, OPTIONS, progress=False)

    out = tmp_path / "out"
    _Interrupting.seen, _Interrupting.after = [], 12
    with pytest.raises(KeyboardInterrupt):
        batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False, loader=_interrupting_loader)
    done_before = len(_ok_rows(out))
    assert 0 < done_before < 30

    _Interrupting.seen, _Interrupting.after = [], None
    report = batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False, loader=_interrupting_loader)
    assert report.skipped == done_before and report.done == 30 - done_before
    assert len(_Interrupting.seen) == 30 - done_before  # the network saw only what was left
    keys = [r["key"] for r in _ok_rows(out)]
    assert len(keys) == len(set(keys)) == 30
    assert _files(out) == _files(clean)  # byte for byte the uninterrupted run's files, no temporaries left


def test_torn_manifest_line_is_dropped_and_redone(tmp_path, images, spec):
    root, _ = images
    out = tmp_path / "out"
    batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False)
    manifest = out / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])  # a crash in the middle of the last line
    report = batch_job(str(root), out, spec, RUNTIME, OPTIONS, progress=False)
    assert report.done == 1
    keys = [r["key"] for r in _ok_rows(out)]
    assert len(keys) == len(set(keys)) == 30


def test_fsspec_uri_and_list_inputs(tmp_path, images, spec):
    fsspec = pytest.importorskip("fsspec")
    root, paths = images
    fs = fsspec.filesystem("memory")
    for p in paths[:5]:
        fs.pipe(f"/bucket/imgs/{p.relative_to(root).as_posix()}", p.read_bytes())
    fs.pipe("/bucket/imgs/bad.png", b"not a png")
    out = tmp_path / "out"
    report = batch_job("memory://bucket/imgs", out, spec, RUNTIME, OPTIONS, progress=False)
    assert (report.done, report.failed) == (5, 1)
    assert all(r["uri"].startswith("memory://") and "/bucket/imgs/" in r["uri"] for r in _ok_rows(out))
    # the same pixels through a local list file: the same depth
    listing = tmp_path / "list.txt"
    listing.write_text("# two files\n" + "\n".join(str(p) for p in paths[:2]) + "\n")
    local = tmp_path / "local"
    batch_job(str(listing), local, spec, RUNTIME, BatchOptions(formats=("npz",), input_size=28, batch_size=2),
              progress=False)  # fmt: skip
    by_rel = {r["uri"].split("/imgs/", 1)[1]: r for r in _ok_rows(out)}
    for row in _ok_rows(local):
        remote = by_rel[Path(row["uri"]).relative_to(root).as_posix()]
        assert row["depth_mean"] == pytest.approx(remote["depth_mean"], rel=1e-5)


def test_parquet_manifest_rows(tmp_path, images, spec):
    pq = pytest.importorskip("pyarrow.parquet")
    root, _ = images
    out = tmp_path / "out"
    options = BatchOptions(formats=(), manifest="parquet", input_size=28, batch_size=8)
    batch_job(str(root), out, spec, RUNTIME, options, progress=False)
    table = pq.read_table(out / "manifest")
    assert table.num_rows == 30 and len(set(table.column("key").to_pylist())) == 30
    assert {"depth_mean", "depth_p95", "intrinsics", "extrinsics"} <= set(table.column_names)
    assert table.column("outputs").to_pylist() == [[]] * 30  # no per-item files: the rows are the results
    assert not list(out.rglob("*.png"))


def test_names_are_deterministic_and_distinct():
    a = output_name(Source("/x/a/img.png", "a/img.png"))
    assert a == output_name(Source("/x/a/img.png", "a/img.png"))
    assert a != output_name(Source("/y/a/img.png", "a/img.png"))  # same relative path, another input
    assert output_name(Source("/x/../b c.png", "../b c.png")).startswith("b_c-")  # never outside OUTPUT
    assert a.startswith("a/img-")


def test_stitch_recovers_segments_shifted_and_scaled():
    """Each segment's depth is the truth up to its own scale and shift: stitching brings all onto the first."""
    rng = np.random.default_rng(0)
    truth = [rng.uniform(1, 2, (4, 5)).astype(np.float32) + t * 0.01 for t in range(25)]
    bounds = [(0, 10, 0), (10, 20, 3), (20, 25, 3)]
    segments = []
    for k, (start, stop, lead) in enumerate(bounds):
        scale, shift = (1.0, 0.0) if k == 0 else (0.5 + k, -0.3 * k)
        segments.append((lead, iter([d * scale + shift for d in truth[start - lead : stop]])))
    stitched = list(stitch_frames(segments, hold=3))
    assert len(stitched) == 25
    np.testing.assert_allclose(np.stack(stitched), np.stack(truth), rtol=1e-4, atol=1e-4)


def test_video_segments_stitched_equal_the_unsplit_run(tmp_path, spec):
    pytest.importorskip("av")
    folder = tmp_path / "videos"
    write_video(folder / "clip.mp4", frames=40)
    whole, split = tmp_path / "whole", tmp_path / "split"
    base = BatchOptions(formats=("npz",), input_size=28, batch_size=4)
    one = batch_job(str(folder), whole, spec, RUNTIME, BatchOptions(**{**base.__dict__, "segment_frames": 0}),
                    progress=False)  # fmt: skip
    options = BatchOptions(**{**base.__dict__, "segment_frames": 12, "segment_overlap": 4})
    several = batch_job(str(folder), split, spec, RUNTIME, options, progress=False)
    assert one.videos == several.videos == 1
    rows = {r["kind"]: r for r in _ok_rows(split)}
    assert rows["video"]["frames"] == 40
    segment_keys = sorted(r["key"].rsplit("=", 1)[1] for r in _ok_rows(split) if r["kind"] == "segment")
    assert segment_keys == ["0-12", "12-24", "24-36", "36-40"]
    name = rows["video"]["name"]
    with np.load(whole / f"{name}_depths.npz") as a, np.load(split / f"{name}_depths.npz") as b:
        assert a["depths"].shape == (40, 48, 64)
        np.testing.assert_allclose(b["depths"], a["depths"], rtol=1e-3, atol=1e-4)
    assert not (split / ".segments" / name).exists()  # segments removed once the video is written


def test_bad_options_refused_before_any_work(tmp_path, spec):
    from anydepth.errors import InputError, OptionError

    with pytest.raises(OptionError, match="segment_overlap"):
        BatchOptions(segment_frames=8, segment_overlap=8).check()
    with pytest.raises(OptionError, match="format"):
        BatchOptions(formats=("exr",)).check()
    with pytest.raises(InputError, match="no such file"):
        batch_job(str(tmp_path / "missing"), tmp_path / "out", spec, RUNTIME, OPTIONS, progress=False)


def test_item_round_trips_through_json():
    item = Item("k", "/v.mp4", "v-1", "segment", 10, 20, 3, 25.0)
    assert Item.from_json(item.to_json()) == item


def test_scene_model_rows_carry_cameras(tmp_path, images, da3_small_folder):
    """A DA3 model sees each image as a scene of one view: its camera goes into the row."""
    _, paths = images
    folder, _ = da3_small_folder
    listing = tmp_path / "three.txt"
    listing.write_text("\n".join(str(p) for p in paths[:3]))
    out = tmp_path / "out"
    options = BatchOptions(formats=("png16",), input_size=56, batch_size=2)
    report = batch_job(str(listing), out, ModelSpec("da3-small", weights=str(folder)), RUNTIME, options,
                       progress=False)  # fmt: skip
    assert report.done == 3
    for row in _ok_rows(out):
        K = np.array(row["intrinsics"]).reshape(3, 3)
        extrinsics = np.array(row["extrinsics"]).reshape(3, 4)
        assert K[2].tolist() == [0, 0, 1] and K[0, 0] > 0 and K[1, 1] > 0
        np.testing.assert_allclose(extrinsics[:, :3] @ extrinsics[:, :3].T, np.eye(3), atol=1e-4)  # a rotation
        assert row["depth_kind"] == "depth"
        assert Image.open(out / f"{row['name']}_depth16.png").size == (row["width"], row["height"])


def test_video_model_runs_segments_and_refuses_images(tmp_path, images):
    pytest.importorskip("av")
    import torch

    from tests.helpers.vda_fixtures import upstream_state_dict

    weights = tmp_path / "video_depth_anything_vits.pth"
    torch.save(upstream_state_dict("vits", 0), weights)
    folder = tmp_path / "in"
    write_video(folder / "clip.mp4", frames=40)
    write_images(folder, 1)
    out = tmp_path / "out"
    options = BatchOptions(formats=("npz",), input_size=28, segment_frames=24, segment_overlap=8)
    report = batch_job(str(folder), out, ModelSpec("vda-small", weights=str(weights)), RUNTIME, options,
                       progress=False)  # fmt: skip
    assert (report.videos, report.failed) == (1, 1)
    failure = json.loads((out / "failures.jsonl").read_text())
    assert "video model" in failure["reason"] and failure["uri"].endswith(".png")
    video = next(r for r in _ok_rows(out) if r["kind"] == "video")
    with np.load(out / f"{video['name']}_depths.npz") as z:
        depths = z["depths"]
    assert depths.shape == (40, 48, 64) and np.isfinite(depths).all()
