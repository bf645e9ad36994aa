"""Frame sources: plain folders (16-bit PNG, EXR, npy depth and masks) with bad items reported and skipped, and the
synthetic generator's held-out scenes and depth range."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from anydepth.errors import InputError
from anydepth.presets import IMAGENET_MEAN, IMAGENET_STD
from anydepth.train.data import TrainingDataset
from anydepth.train.sources import DepthFolderSource, SyntheticSource, open_source, read_depth_file

SIZE = (42, 56)


@pytest.fixture(scope="module")
def synthetic():
    return SyntheticSource(seed=3, scenes=3, views=4, width=80, height=60, kind="mixed")


def test_held_out_scenes_differ_from_training_scenes(synthetic):
    held = synthetic.held_out(2)
    assert held.seed != synthetic.seed
    assert not np.array_equal(held.load(0, 0).depth, synthetic.load(0, 0).depth)


def _write_pair(folder, stem, depth, kind, size=(40, 50)):
    h, w = size
    rng = np.random.default_rng(len(stem))
    cv2.imwrite(str(folder / f"{stem}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    if kind == "png":
        cv2.imwrite(str(folder / f"{stem}_depth.png"), np.round(depth * 1000).astype(np.uint16))
    elif kind == "npy":
        np.save(folder / f"{stem}.npy", depth.astype(np.float32))
    elif kind == "exr":
        OpenEXR = pytest.importorskip("OpenEXR")
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        OpenEXR.File(header, {"Z": depth.astype(np.float32)}).write(str(folder / f"{stem}_depth.exr"))


def test_plain_folder_reads_png_exr_npy_and_masks_and_skips_bad_items(tmp_path, caplog):
    depth = np.linspace(1.0, 4.0, 40 * 50).reshape(40, 50)
    _write_pair(tmp_path, "a", depth, "png")
    _write_pair(tmp_path, "b", depth, "npy")
    _write_pair(tmp_path, "c", depth, "exr")
    mask = np.zeros((40, 50), np.uint8)
    mask[:, :25] = 255
    cv2.imwrite(str(tmp_path / "c_mask.png"), mask)
    _write_pair(tmp_path, "d", depth[:30], "npy")  # another size
    _write_pair(tmp_path, "e", np.full((40, 50), np.nan), "npy")  # no valid depth
    (tmp_path / "f.jpg").write_bytes(b"not an image")
    np.save(tmp_path / "f.npy", depth)
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((40, 50, 3), np.uint8))  # no depth at all
    with caplog.at_level(logging.WARNING):
        source = DepthFolderSource(tmp_path, depth_scale=1000.0)
    assert [p[0].name for p in source.frames] == ["a.jpg", "b.jpg", "c.jpg"]
    assert len(source.skipped) == 4
    for name, why in (
        ("d.jpg", "does not match"),
        ("e.jpg", "no valid depth"),
        ("f.jpg", "f.jpg"),
        ("g.png", "no depth"),
    ):
        assert any(name in line and why in line for line in source.skipped), (name, source.skipped)
        assert name in caplog.text
    a, b, c = (source.load(0, i) for i in range(3))
    np.testing.assert_allclose(a.depth, depth, atol=6e-4)  # millimetres
    np.testing.assert_allclose(b.depth, depth, rtol=1e-6)
    np.testing.assert_allclose(c.depth[c.valid], depth[:, :25].ravel(), rtol=1e-6)
    assert c.valid[:, :25].all() and not c.valid[:, 25:].any()
    assert a.extrinsics is None and not source.has_cameras
    assert open_source(tmp_path).__class__ is DepthFolderSource
    sample = TrainingDataset(source, SIZE, IMAGENET_MEAN, IMAGENET_STD).sample(0)
    assert sample.extrinsics is None and sample.images.shape == (1, 3, *SIZE)


def test_empty_or_missing_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="no image with usable depth"):
        DepthFolderSource(tmp_path)
    with pytest.raises(InputError, match="no such data folder"):
        open_source(tmp_path / "nowhere")


def test_depth_files_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="16-bit"):
        read_depth_file(tmp_path / "eight.png")
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="expected"):
        read_depth_file(tmp_path / "cube.npy")


def test_depth_beyond_max_depth_is_not_valid():
    far = SyntheticSource(seed=1, scenes=2, views=2, width=64, height=48, kind="outdoor")
    near = SyntheticSource(seed=1, scenes=2, views=2, width=64, height=48, kind="outdoor", max_depth=10.0)
    a, b = far.load(1, 0), near.load(1, 0)
    assert a.depth[a.valid].max() > 10.0
    assert b.depth[b.valid].max() < 10.0 and (b.depth[~b.valid] == 0).all()
    assert (b.valid == (a.valid & (a.depth < 10.0))).all()
    assert near.held_out(1).max_depth == 10.0


def test_synthetic_source_renders_each_frame_once_when_it_fits_its_cache(monkeypatch):
    from anydepth.bench import synthetic as generator

    calls = []
    render = generator.render
    monkeypatch.setattr(generator, "render", lambda *a, **k: calls.append(1) or render(*a, **k))
    source = SyntheticSource(seed=5, scenes=3, views=2, width=32, height=24)  # 6 frames: all of them fit
    order = [(s, v) for _ in range(3) for s in range(3) for v in range(2)]
    first = [source.load(s, v).depth.copy() for s, v in order]
    assert len(calls) == 6
    assert all(np.array_equal(a, b) for a, b in zip(first[:6], first[6:12]))
    small = SyntheticSource(seed=5, scenes=3, views=2, width=32, height=24, cache_frames=2)
    calls.clear()
    for s, v in order:
        small.load(s, v)
    assert len(calls) == 18  # a cache of 2 frames cycled through 6 renders every frame at every use
