"""VideoDepthSink: the one writer of every video job, in its three normalisations, read back with numpy and OpenCV."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from anydepth.errors import InputError
from anydepth.jobs.video import DEPTHCRAFTER_LAYOUT, FRAME_LAYOUT, VDA_LAYOUT, VideoDepthSink, frames_of


def _depths(n: int = 4) -> list:
    rng = np.random.default_rng(0)
    return [(rng.random((6, 8)) * (i + 1) + 0.5).astype(np.float32) for i in range(n)]


def test_sink_video_range_outputs_read_back(tmp_path):
    import cv2

    depths = _depths()
    with VideoDepthSink(tmp_path, "clip", ("npz", "npy", "png16", "exr"), False, 10.0, VDA_LAYOUT, "video") as sink:
        for d in depths:
            sink.write(d)
    stack = np.stack(depths)
    assert np.array_equal(np.load(tmp_path / "clip_depths.npy"), stack)
    assert np.array_equal(np.load(tmp_path / "clip_depths.npz")["depths"], stack)
    low, high = stack.min(), stack.max()
    png = cv2.imread(str(tmp_path / "clip_depths_png16" / "frame_00002.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16
    np.testing.assert_allclose(png / 65535.0, (depths[2] - low) / (high - low), atol=1 / 65535)
    assert sorted(p.name for p in (tmp_path / "clip_depths_exr").iterdir())[-1] == "frame_00003.exr"
    assert set(sink.written) >= {tmp_path / "clip_depths.npy", tmp_path / "clip_depths.npz"}
    assert not list(tmp_path.glob(".*partial*"))  # no scratch file left


def test_sink_unit_range_normalises_every_output(tmp_path):
    depths = _depths(3)
    with VideoDepthSink(tmp_path, "v", ("npz",), False, 10.0, DEPTHCRAFTER_LAYOUT, "unit") as sink:
        for d in depths:
            sink.write(d)
    stack = np.stack(depths)
    with zipfile.ZipFile(tmp_path / "v.npz") as archive:
        assert archive.namelist() == ["depth.npy"]
    got = np.load(tmp_path / "v.npz")["depth"]
    np.testing.assert_allclose(got, (stack - stack.min()) / (stack.max() - stack.min()), atol=1e-6)
    assert not (tmp_path / "v_depths.npy").exists() and not list(tmp_path.glob(".*partial*"))


def test_sink_frame_range_writes_at_once_and_an_empty_video_leaves_nothing(tmp_path):
    depths = _depths(2)
    with VideoDepthSink(tmp_path, "f", ("npy",), False, 10.0, FRAME_LAYOUT, "frame") as sink:
        for d in depths:
            sink.write(d)
    assert [f.shape for f in frames_of(tmp_path / "f_depth.npy")] == [(6, 8), (6, 8)]
    empty = tmp_path / "empty"
    sink = VideoDepthSink(empty, "e", ("npy", "npz"), True, 10.0, VDA_LAYOUT, "video")
    with pytest.raises(InputError, match="no frames"), sink:
        pass
    assert not [p for p in empty.rglob("*") if p.is_file()]
