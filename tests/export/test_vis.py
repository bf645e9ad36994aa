"""depth_vis, feat_vis, exr and png16 exports of a synthetic prediction, read back with independent readers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anydepth.errors import InputError
from anydepth.export import feat_vis as feat_vis_module
from anydepth.export.depth_vis import depth_vis_colors
from anydepth.export.feat_vis import pca_rgb
from anydepth.export.formats import EXPORTERS, export, parse_export_format
from anydepth.prediction import Prediction

N, H, W = 3, 24, 32  # views, processed resolution
h, w, D = 6, 8, 16  # feature grid and channels
LAYER = "feat_layer_3"
SPECTRAL_FIRST = (0x9E, 0x01, 0x42)  # matplotlib Spectral at 0: the nearest colour
SPECTRAL_LAST = (0x5E, 0x4F, 0xA2)  # Spectral at 1: the farthest colour


def _feature_structure():
    """Three spatial patterns, the first shifted per view, on orthogonal channels with decreasing strength."""
    v, u = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    first = np.stack([u + view for view in range(N)])  # (N, h, w); view 2 holds the largest values
    second = np.broadcast_to(np.sin(3 * v), (N, h, w))
    third = np.broadcast_to(np.cos(5 * u * v), (N, h, w))
    features = np.zeros((N, h, w, D), dtype=np.float32)
    features[..., 2] = 10 * first
    features[..., 7] = 3 * second
    features[..., 11] = 0.5 * third
    return features, first


def make_prediction(depth_kind: str = "depth", features: bool = True) -> Prediction:
    """Depth ramps from 1 to 4 (+ the view index) left to right; view 1 has a NaN and a non-positive pixel."""
    ramp = np.linspace(1.0, 4.0, W, dtype=np.float32)
    depth = np.stack([np.broadcast_to(ramp + view, (H, W)) for view in range(N)]).astype(np.float32)
    depth[1, 0, 0] = np.nan
    depth[1, 0, 1] = 0.0
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    images = np.stack([np.stack((u * 8, v * 10, np.full_like(u, 60 + 80 * view)), axis=-1) for view in range(N)])
    images = images.astype(np.uint8)  # smooth, so JPEG keeps it within a few levels
    aux = {LAYER: _feature_structure()[0], "gaussians": None} if features else {}
    return Prediction(depth=depth, depth_kind=depth_kind, conf=np.ones_like(depth), processed_images=images, aux=aux)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        return np.asarray(image)


def _no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


def _video_frames(path: Path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames, rate


def test_registry_and_parse():
    for name in ("depth_vis", "feat_vis", "exr", "png16"):
        assert name in EXPORTERS
    names = parse_export_format("mini_npz-depth_vis-feat_vis-exr-png16")
    assert names == ("mini_npz", "depth_vis", "feat_vis", "exr", "png16")
    assert parse_export_format("feat_vis", has_features=True) == ("feat_vis",)
    assert parse_export_format("feat_vis") == ("feat_vis",)  # unknown: callers without the argument still pass
    assert parse_export_format("depth_vis-png16", has_features=False) == ("depth_vis", "png16")
    with pytest.raises(InputError, match="export_feat_layers"):
        parse_export_format("mini_npz-feat_vis", has_features=False)


def test_depth_vis_colors_hand_cases():
    depth = make_prediction().depth
    before = depth.copy()
    colors = depth_vis_colors(depth)
    np.testing.assert_array_equal(depth, before)
    assert colors.shape == (N, H, W, 3) and colors.dtype == np.uint8
    assert tuple(colors[0, 5, 0]) == SPECTRAL_FIRST  # nearest column, inside the clipped 2 %
    assert tuple(colors[0, 5, -1]) == SPECTRAL_LAST  # farthest column
    assert tuple(colors[1, 0, 0]) == (0, 0, 0)  # NaN is black
    assert tuple(colors[1, 0, 1]) == SPECTRAL_LAST  # non-positive depth lands on the far colour, as upstream
    # disparity is already inverse depth: the same picture without inverting again
    depth64 = depth.astype(np.float64)
    inverse = np.where(depth64 > 0, 1.0 / np.where(depth64 > 0, depth64, 1.0), depth64)
    np.testing.assert_array_equal(depth_vis_colors(inverse, is_disparity=True), colors)
    # a flat view does not divide by zero
    assert depth_vis_colors(np.ones((1, 4, 4), np.float32)).shape == (1, 4, 4, 3)


def test_depth_vis_layout_and_pixels(tmp_path):
    prediction = make_prediction()
    paths = export(prediction, tmp_path, "depth_vis")["depth_vis"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"depth_vis/{i:04d}.jpg" for i in range(N)]
    expected = depth_vis_colors(prediction.depth)
    for index, path in enumerate(paths):
        pixels = _read_rgb(path).astype(np.int16)
        assert pixels.shape == (H, 2 * W, 3)  # image left, depth right, no gap
        assert np.abs(pixels[:, :W] - prediction.processed_images[index]).mean() < 8
        assert np.abs(pixels[:, W:] - expected[index]).mean() < 8
    _no_temporaries(tmp_path)


def test_pca_rgb_recovers_structure_jointly():
    features, first = _feature_structure()
    before = features.copy()
    rgb = pca_rgb(features)
    np.testing.assert_array_equal(features, before)
    assert rgb.shape == (N, h, w, 3) and rgb.dtype == np.float32
    # the strongest direction is red: upstream's 10..90 % clipped, scaled first pattern, over all views at once
    low, high = np.percentile(first, [10, 90])
    # (up to a slight tilt of the axis: the weak third pattern is not quite uncorrelated with the first)
    np.testing.assert_allclose(rgb[..., 0], np.clip((first - low) / (high - low), 0, 1), atol=1e-3)
    # one fit for all views: view 2 (largest pattern values) is redder than view 0; per-view fits would match
    assert rgb[0, ..., 0].mean() < 0.2 < 0.8 < rgb[2, ..., 0].mean()
    second = _feature_structure()[0][..., 7]
    assert abs(np.corrcoef(rgb[..., 1].ravel(), second.ravel())[0, 1]) > 0.9
    # a random rotation of the channels gives the same picture up to the components' signs
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(D, D)))
    rotated = pca_rgb((features.reshape(-1, D) @ rotation).reshape(features.shape).astype(np.float32))
    for channel in range(3):
        same = np.abs(rotated[..., channel] - rgb[..., channel]).max()
        flipped = np.abs(rotated[..., channel] - (1 - rgb[..., channel])).max()
        assert min(same, flipped) < 1e-3


def test_feat_vis_layout_frames_and_video(tmp_path):
    prediction = make_prediction()
    paths = export(prediction, tmp_path, "feat_vis", feat_vis_fps=5)["feat_vis"]
    relative = [p.relative_to(tmp_path).as_posix() for p in paths]
    assert relative == [f"feat_vis/{LAYER}/{i:06d}.jpg" for i in range(N)] + [f"feat_vis/{LAYER}.mp4"]
    colors = (pca_rgb(prediction.aux[LAYER]) * 255).astype(np.uint8)
    upsampled = np.repeat(np.repeat(colors, H // h, axis=1), W // w, axis=2)  # nearest, exact factor 4
    for index in range(N):
        pixels = _read_rgb(paths[index]).astype(np.int16)
        assert pixels.shape == (H, 2 * W, 3)
        assert np.abs(pixels[:, :W] - prediction.processed_images[index]).mean() < 8
        assert np.abs(pixels[:, W:] - upsampled[index]).mean() < 10
    frames, rate = _video_frames(paths[-1])
    assert len(frames) == N and frames[0].shape == (H, 2 * W, 3)
    assert rate == 5
    assert np.abs(frames[2].astype(np.int16)[:, W:] - upsampled[2]).mean() < 20
    _no_temporaries(tmp_path)


def test_exr_reads_back_float32(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR")
    prediction = make_prediction()
    paths = export(prediction, tmp_path, "exr")["exr"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"depth_exr/{i:04d}.exr" for i in range(N)]
    for index, path in enumerate(paths):
        with OpenEXR.File(str(path)) as exr:
            channels = exr.channels()
            assert list(channels) == ["Z"]
            pixels = channels["Z"].pixels
        assert pixels.dtype == np.float32 and pixels.shape == (H, W)
        np.testing.assert_array_equal(pixels, prediction.depth[index])  # NaN included


@pytest.mark.parametrize("depth_kind", ["metric", "depth", "disparity"])
def test_png16_reads_back(tmp_path, depth_kind):
    prediction = make_prediction(depth_kind)
    paths = export(prediction, tmp_path, "png16")["png16"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"depth_png16/{i:04d}.png" for i in range(N)]
    levels = []
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "I;16"
            levels.append(np.asarray(image).astype(np.int64))
    levels = np.stack(levels)
    depth = prediction.depth.astype(np.float64)
    if depth_kind == "metric":
        expected = np.where(np.isfinite(depth) & (depth > 0), np.rint(np.nan_to_num(depth) * 1000), 0)
    else:  # min-max over all views together: 1 m at 0, 6 m (view 2's far edge) at 65535; 0 m is the minimum here
        low, high = 0.0, 6.0
        expected = np.where(np.isfinite(depth), np.rint((np.nan_to_num(depth) - low) / (high - low) * 65535), 0)
    np.testing.assert_array_equal(levels, expected)
    assert levels[0, 0, 0] == (1000 if depth_kind == "metric" else round(65535 / 6))


def test_combined_layout_and_caller_arrays_unchanged(tmp_path):
    prediction = make_prediction("metric")
    snapshot = copy.deepcopy(prediction)
    written = export(prediction, tmp_path, "mini_npz-depth_vis-feat_vis-exr-png16", feat_vis={"fps": 10})
    assert list(written) == ["mini_npz", "depth_vis", "feat_vis", "exr", "png16"]
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(
        ["exports/mini_npz/results.npz", f"feat_vis/{LAYER}.mp4"]
        + [f"depth_vis/{i:04d}.jpg" for i in range(N)]
        + [f"feat_vis/{LAYER}/{i:06d}.jpg" for i in range(N)]
        + [f"depth_exr/{i:04d}.exr" for i in range(N)]
        + [f"depth_png16/{i:04d}.png" for i in range(N)]
    )
    for name in ("depth", "conf", "processed_images"):
        np.testing.assert_array_equal(getattr(prediction, name), getattr(snapshot, name))
    np.testing.assert_array_equal(prediction.aux[LAYER], snapshot.aux[LAYER])
    assert list(prediction.aux) == list(snapshot.aux)


def test_refusals_write_nothing(tmp_path):
    with pytest.raises(InputError, match="export_feat_layers"):
        export(make_prediction(features=False), tmp_path, "mini_npz-feat_vis")
    no_images = make_prediction()
    no_images.processed_images = None
    for name in ("depth_vis", "feat_vis"):
        with pytest.raises(InputError, match="processed_images"):
            export(no_images, tmp_path, f"mini_npz-{name}")
    with pytest.raises(InputError, match="not used by"):
        export(make_prediction(), tmp_path, "depth_vis", fps=3)
    assert not list(tmp_path.iterdir())


BLOCKED = {
    "depth_vis": "depth_vis/0001.jpg",
    "exr": "depth_exr/0001.exr",
    "png16": "depth_png16/0001.png",
    "feat_vis": f"feat_vis/{LAYER}/000001.jpg",
}


@pytest.mark.parametrize(("export_format", "blocked"), sorted(BLOCKED.items()))
def test_failing_write_leaves_no_partial_file(tmp_path, export_format, blocked):
    if export_format == "exr":
        pytest.importorskip("OpenEXR")
    (tmp_path / blocked).mkdir(parents=True)  # a folder where the file should go: the final rename fails
    with pytest.raises((InputError, OSError)):
        export(make_prediction(), tmp_path, export_format)
    assert (tmp_path / blocked).is_dir() and not list((tmp_path / blocked).iterdir())
    _no_temporaries(tmp_path)


def test_failing_video_leaves_no_partial_file(tmp_path, monkeypatch):
    original = feat_vis_module.VideoWriter.write

    def fail_on_second(self, frame):
        if self.frames_written == 1:
            raise OSError("disk full")
        original(self, frame)

    monkeypatch.setattr(feat_vis_module.VideoWriter, "write", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        export(make_prediction(), tmp_path, "feat_vis")
    assert not (tmp_path / "feat_vis" / f"{LAYER}.mp4").exists()
    _no_temporaries(tmp_path)
