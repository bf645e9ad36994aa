"""The native Video Depth Anything model: presets, loading, lazy windowed and streaming inference, stitching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anydepth
from anydepth.errors import InputError
from anydepth.pipelines.video_depth import (
    CROSSFADE,
    WINDOW,
    VideoDepthModel,
    VideoDepthRunner,
    WindowStitcher,
    fit_scale_shift,
    video_processing_size,
)
from anydepth.presets import get_preset
from tests.helpers.parity import p99_rel_err
from tests.helpers.vda_fixtures import CASES, VDA, upstream_state_dict

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def vda_weights(tmp_path_factory):
    """The parity fixtures' random weights as an official-layout .pth (vits, hub file name)."""
    path = tmp_path_factory.mktemp("vda") / "video_depth_anything_vits.pth"
    torch.save(upstream_state_dict("vits", CASES["windowed"]["seed"]), path)
    return path


@pytest.fixture(scope="module")
def model(vda_weights) -> VideoDepthModel:
    return anydepth.load_model("vda-small", weights=vda_weights, device="cpu", precision="fp32")


def test_presets_name_the_official_files():
    small, metric = get_preset("vda-small"), get_preset("vda-metric-large")
    assert small.family == metric.family == "vda"
    assert (small.weights.repo_id, small.weights.filename) == (
        "depth-anything/Video-Depth-Anything-Small",
        "video_depth_anything_vits.pth",
    )
    assert (metric.weights.repo_id, metric.weights.filename) == (
        "depth-anything/Metric-Video-Depth-Anything-Large",
        "metric_video_depth_anything_vitl.pth",
    )
    assert small.license == "Apache-2.0" and metric.license == "CC-BY-NC-4.0"
    assert small.depth_kind == "disparity" and metric.depth_kind == "metric"
    assert {m.name for m in anydepth.list_models("vda")} == {
        f"vda-{k}{s}" for k in ("", "metric-") for s in ("small", "base", "large")
    }


def test_load_model_gives_a_video_model(model):
    assert isinstance(model, VideoDepthModel)
    assert model.depth_kind == "disparity"


def _lazy(frames, consumed):
    for frame in frames:
        consumed.append(1)
        yield frame


def test_keyframe_alignment_reproduces_upstream_lazily(model):
    case = CASES["windowed"]
    consumed = []
    depths = model.infer_frames(_lazy(VDA["frames"][: case["frames"]], consumed), case["size"], align="keyframes")
    first = next(depths)
    assert len(consumed) <= WINDOW  # the first frames come out after one window, not after the whole video
    out = np.stack([first, *depths])
    assert p99_rel_err(out, VDA["expected_windowed"]) <= TOLERANCE


def test_streaming_mode_reproduces_upstream(model):
    case = CASES["streaming"]
    consumed = []
    depths = model.infer_frames(_lazy(VDA["frames"][: case["frames"]], consumed), case["size"], mode="streaming")
    first = next(depths)
    assert len(consumed) == 1
    assert p99_rel_err(np.stack([first, *depths]), VDA["expected_streaming"]) <= TOLERANCE


def test_metric_preset_joins_windows_without_rescaling(vda_weights):
    metric = anydepth.load_model("vda-metric-small", weights=vda_weights, device="cpu", precision="fp32")
    case = CASES["metric"]
    pred = metric.infer(VDA["frames"][: case["frames"]], case["size"])
    assert pred.depth_kind == "metric"
    assert p99_rel_err(pred.depth, VDA["expected_metric"]) <= TOLERANCE


def test_overlap_alignment_is_close_to_but_not_upstream(model):
    case = CASES["windowed"]
    frames = VDA["frames"][: case["frames"]]
    ours = model.infer(frames, case["size"]).depth
    err = p99_rel_err(ours, VDA["expected_windowed"])
    assert 1e-6 < err < 0.5
    # the first window's frames before the first cross-fade are not rescaled in either way
    first = slice(0, WINDOW - CROSSFADE)
    assert p99_rel_err(ours[first], VDA["expected_windowed"][first]) <= 1e-4


def test_every_frame_comes_out_once_and_in_order():
    # the stand-in network returns each frame's grey level, so the output says which frame it came from
    from tests.helpers.synthetic_video import AffineDisparityNet

    for length in (1, 21, 22, 23, 32, 33, 54, 55):
        grey = np.arange(length, dtype=np.uint8) + 100
        frames = np.broadcast_to(grey[:, None, None, None], (length, 14, 14, 3))
        runner = VideoDepthRunner(AffineDisparityNet(seed=length), torch.device("cpu"))
        out = np.stack(list(runner.windowed(iter(frames), 14, align="keyframes")))
        assert out.shape == (length, 14, 14) and out.dtype == np.float32
        levels = out[:, 0, 0]
        # one scale and shift for the whole video: the frames' grey levels come back in order
        fitted = np.polyval(np.polyfit(grey.astype(float), levels, 1), grey) if length > 1 else levels
        np.testing.assert_allclose(levels, fitted, rtol=1e-4, atol=1e-4)


def test_real_network_gives_one_map_per_frame(model):
    frames = VDA["frames"][:23]
    out = list(model.infer_frames(iter(frames), input_size=28))
    assert len(out) == 23 and all(d.shape == frames.shape[1:3] and d.dtype == np.float32 for d in out)


def test_bad_inputs_are_refused(model):
    with pytest.raises(InputError):
        list(model.infer_frames(VDA["frames"][:3], mode="offline"))
    with pytest.raises(InputError):
        list(model.infer_frames(VDA["frames"][:3], align="median"))
    mixed = [VDA["frames"][0], VDA["frames"][1][:10]]
    with pytest.raises(InputError, match="one size"):
        list(model.infer_frames(mixed, input_size=28))


def test_fit_scale_shift_recovers_an_affine_map():
    rs = np.random.RandomState(0)
    pred = [rs.uniform(0.5, 2, size=(5, 7)).astype(np.float32) for _ in range(3)]
    target = [3.0 * p - 0.5 for p in pred]
    scale, shift = fit_scale_shift(pred, target)
    assert scale == pytest.approx(3.0, rel=1e-4) and shift == pytest.approx(-0.5, abs=1e-4)
    assert fit_scale_shift([np.ones((2, 2))], [np.zeros((2, 2))]) == (1.0, 0.0)


def test_stitcher_undoes_per_window_affine_maps():
    # windows that see the same true sequence through different scale/shift are joined back into it
    ramp = np.arange(6, dtype=np.float32).reshape(2, 3)
    truth = [np.full((2, 3), 1.0 + 0.1 * t, np.float32) + ramp for t in range(80)]
    for align in ("keyframes", "overlap"):
        stitcher, out, start = WindowStitcher(align), [], 0
        while start < 60:
            slots = [0, start - 10, *range(start + 2, start + WINDOW)] if start else list(range(WINDOW))
            a, b = 1.0 + start / 10.0, 0.3 * start
            out += stitcher.add([a * truth[i] + b for i in slots])
            start += WINDOW - 10
        out += stitcher.finish()
        assert len(out) == 44 + WINDOW  # windows start at 0, 22 and 44
        np.testing.assert_allclose(np.stack(out), np.stack(truth[: len(out)]), rtol=1e-4)


def test_processing_size_follows_upstream():
    assert video_processing_size(360, 640, 518) == (518, 924)
    # wider than 1.78:1 shrinks the size first: int(518 * 1.777 / 2.0) = 460 -> 462
    assert video_processing_size(100, 200, 518) == (462, 924)


def test_each_frame_goes_through_the_backbone_once(model, monkeypatch):
    # upstream's windows repeat 10 frames of the previous one and pad the last with copies of the last frame; the
    # backbone runs once per frame of the video, and the last window's padding is not decoded frame by frame,
    # while the output stays that of whole windows through the network
    class Whole(torch.nn.Module):  # not a VideoDepthAnythingNet: the runner passes whole windows through it
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, clips):
            return self.net(clips)

    net = model.net
    encoded, decoded = [], []
    encode, decode = net.encode, net.head.decode
    monkeypatch.setattr(net, "encode", lambda frames, out=None: encoded.append(len(frames)) or encode(frames, out))
    monkeypatch.setattr(net.head, "decode", lambda path3, *a: decoded.append(len(path3)) or decode(path3, *a))
    rng = np.random.RandomState(0)
    video = rng.randint(0, 256, (55, 28, 42, 3), dtype=np.uint8)
    for length in (1, 12, 21, 22, 23, 32, 33, 45, 54, 55):
        frames = video[:length]
        encoded.clear(), decoded.clear()
        got = np.stack(list(model._runner.windowed(iter(frames), 28)))
        assert sum(encoded) == length
        windows = len(range(0, length, WINDOW - 10))
        last = length - (WINDOW - 10) * (windows - 1)  # frames of the video in the last window
        assert sum(decoded) == WINDOW * (windows - 1) + (last if windows == 1 else max(last, 10))
        whole = VideoDepthRunner(Whole(net), torch.device("cpu"), model.precision_policy)
        encoded.clear()
        expected = np.stack(list(whole.windowed(iter(frames), 28)))
        assert sum(encoded) == WINDOW * windows  # the reference did encode every slot
        assert got.shape == expected.shape == (length, 28, 42)
        # the backbone runs on other batches of frames: float32 rounding apart, the same numbers
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
        assert p99_rel_err(got, expected) <= 1e-4


def test_window_levels_match_encoding_the_whole_window(model):
    # a later window from the previous window's buffer: the carried slots moved in place, the new frames encoded,
    # the padding copied from one encoding (found among the slots, or encoded on its own)
    from anydepth.pipelines.video_depth import CARRIED_SLOTS, OVERLAP

    net, runner = model.net, model._runner
    gen = torch.Generator().manual_seed(0)
    previous = torch.randn(WINDOW, 3, 28, 42, generator=gen)
    with torch.no_grad():
        for real, pad_seen in ((32, False), (20, False), (20, True), (10, False), (3, True)):
            # as _windows cuts it: the frames read, padded with the last, then the carried slots written over
            window = torch.randn(WINDOW, 3, 28, 42, generator=gen)
            if pad_seen:  # the last frame read is in a slot (a carried one where fewer than OVERLAP were read)
                window[real:] = window[real - 1] if real > OVERLAP else previous[CARRIED_SLOTS[real - 1]]
            else:
                window[real:] = torch.randn(3, 28, 42, generator=gen)
            window[:OVERLAP] = previous[list(CARRIED_SLOTS)]
            got = runner._window_levels(window, real, runner._window_levels(previous, WINDOW, None))
            expected = net.encode(window)
            for mine, theirs in zip(got, expected):
                assert mine.shape == theirs.shape and mine.shape[0] == WINDOW
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))
