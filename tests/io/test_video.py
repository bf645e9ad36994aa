"""VideoReader / VideoWriter: round trips checked with an independent reader, resampling, rotation, atomicity."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from anydepth.errors import InputError, ShapeError
from anydepth.io.video import VideoReader, VideoWriter, available_video_codecs

pytestmark = pytest.mark.torch113

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")


def _frame(index: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Smooth frames (codec-friendly) whose content identifies the index: a bright bar moving right."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    column = (index * 3) % (width - 8)
    frame[:, column : column + 8] = 255
    return frame


def _bar_column(frame: np.ndarray) -> int:
    """Left edge of the white bar, read from the blue channel (60 elsewhere)."""
    return int(np.argmax(frame[..., 2].mean(axis=0) > 160))


def _write_with_pyav(path, frames, fps: int = 30, rotation: int = 0) -> None:
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=Fraction(fps))
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.qscale = 2
    if rotation:
        stream.set_display_rotation(rotation)
    for index, frame in enumerate(frames):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = index
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


def test_codecs_available():
    codecs = available_video_codecs()
    assert codecs and codecs[-1] == "mpeg4"


def test_write_300_frames_read_back_with_opencv(tmp_path):
    path = tmp_path / "out" / "clip.mp4"
    with VideoWriter(path, fps=30) as writer:
        for index in range(300):
            writer.write(_frame(index))
    assert writer.frames_written == 300
    assert path.is_file() and not [p for p in path.parent.iterdir() if p != path]  # no temporary file left

    capture = cv2.VideoCapture(str(path))  # independent decoder
    assert capture.isOpened()
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.01)
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = bgr[..., ::-1]
        assert rgb.shape == (64, 96, 3)
        assert abs(_bar_column(rgb) - (count * 3) % 88) <= 1
        expected = _frame(count).astype(np.int16)
        assert np.abs(rgb.astype(np.int16) - expected).mean() < 4.0
        count += 1
    capture.release()
    assert count == 300


def test_reader_yields_every_frame_of_independently_written_video(tmp_path):
    frames = [_frame(index) for index in range(40)]
    _write_with_pyav(tmp_path / "in.avi", frames)
    with VideoReader(tmp_path / "in.avi") as video:
        assert video.fps == pytest.approx(30.0)
        assert (video.width, video.height) == (96, 64)
        assert video.num_frames == 40 and video.out_fps == pytest.approx(30.0)
        decoded = list(video)
    assert len(decoded) == 40
    for index, frame in enumerate(decoded):
        assert frame.dtype == np.uint8 and frame.shape == (64, 96, 3) and frame.flags["C_CONTIGUOUS"]
        assert _bar_column(frame) == (index * 3) % 88
        assert np.abs(frame.astype(np.int16) - frames[index]).mean() < 3.0


def test_reader_iterates_twice(tmp_path):
    _write_with_pyav(tmp_path / "in.avi", [_frame(i) for i in range(6)])
    video = VideoReader(tmp_path / "in.avi")
    first = [_bar_column(frame) for frame in video]
    second = [_bar_column(frame) for frame in video]
    video.close()
    assert first == second == [0, 3, 6, 9, 12, 15]


@pytest.mark.parametrize(
    ("fps", "stride", "max_frames", "expected_indices", "out_fps"),
    [
        (10, 1, None, list(range(0, 30, 3)), 10.0),
        (None, 4, None, list(range(0, 30, 4)), 7.5),
        (12, 1, None, [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28], 12.0),
        (10, 2, 3, [0, 6, 12], 5.0),
        (60, 1, 5, [0, 1, 2, 3, 4], 30.0),
    ],
)
def test_resampling(tmp_path, fps, stride, max_frames, expected_indices, out_fps):
    _write_with_pyav(tmp_path / "in.avi", [_frame(i) for i in range(30)])
    with VideoReader(tmp_path / "in.avi", fps=fps, stride=stride, max_frames=max_frames) as video:
        assert video.out_fps == pytest.approx(out_fps)
        indices = [_bar_column(frame) // 3 for frame in video]
        assert video.num_frames is not None and abs(video.num_frames - len(expected_indices)) <= 1
    assert indices == expected_indices


def test_resampling_across_a_timestamp_gap_does_not_burst(tmp_path):
    # variable frame rate: 30 fps timestamps 0-5, then a jump to 20-25 (as after a dropped stretch)
    path = tmp_path / "gap.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=Fraction(30))
    stream.height, stream.width = 64, 96
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, 30)
    for pts in [*range(6), *range(20, 26)]:
        video_frame = av.VideoFrame.from_ndarray(_frame(pts), format="rgb24")
        video_frame.pts = pts
        video_frame.time_base = Fraction(1, 30)
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    with VideoReader(path, fps=10) as video:
        indices = [_bar_column(frame) // 3 for frame in video]
    assert indices == [0, 3, 20, 21, 24]  # one frame per 0.1 s slot; the gap is not made up with a burst


def test_rotation_metadata_is_applied(tmp_path):
    frames = [_frame(i) for i in range(3)]
    try:
        _write_with_pyav(tmp_path / "rot.mp4", frames, rotation=90)
    except AttributeError:
        pytest.skip("this PyAV cannot write display rotation (no set_display_rotation before PyAV 16)")
    with VideoReader(tmp_path / "rot.mp4") as video:
        assert (video.width, video.height) == (64, 96)
        decoded = list(video)
    assert decoded[0].shape == (96, 64, 3)
    # display matrix says 90 degrees counter-clockwise
    expected = np.rot90(frames[0], 1)
    assert np.abs(decoded[0].astype(np.int16) - expected).mean() < 3.0
    capture = cv2.VideoCapture(str(tmp_path / "rot.mp4"))  # OpenCV auto-rotates too: both must agree
    ok, bgr = capture.read()
    capture.release()
    assert ok and bgr.shape == decoded[0].shape
    assert np.abs(bgr[..., ::-1].astype(np.int16) - decoded[0]).mean() < 3.0


def test_odd_size_is_padded_to_even(tmp_path):
    frame = _frame(0, height=33, width=47)
    with VideoWriter(tmp_path / "odd.mp4", fps=24) as writer:
        writer.write(frame)
        writer.write(frame)
    with VideoReader(tmp_path / "odd.mp4") as video:
        decoded = list(video)
    assert len(decoded) == 2 and decoded[0].shape == (34, 48, 3)
    assert np.abs(decoded[0][:33, :47].astype(np.int16) - frame).mean() < 4.0


def test_default_codec_is_the_best_available(tmp_path):
    with VideoWriter(tmp_path / "d.mp4", fps=25) as writer:
        writer.write(_frame(0))
    assert writer.codec == available_video_codecs()[0]
    container = av.open(str(tmp_path / "d.mp4"))
    expected = "h264" if writer.codec in ("libx264", "h264") else writer.codec
    assert container.streams.video[0].codec_context.name == expected
    assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    container.close()
    data = (tmp_path / "d.mp4").read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # faststart: the index comes first, for streaming


def test_mpeg4_codec_and_quality(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(5, 64, 96, 3), dtype=np.uint8)
    for quality in (2, 31):
        with VideoWriter(tmp_path / f"m{quality}.avi", fps=25, codec="mpeg4", quality=quality) as writer:
            for frame in noise:
                writer.write(frame)
    container = av.open(str(tmp_path / "m2.avi"))
    assert container.streams.video[0].codec_context.name == "mpeg4"
    assert sum(1 for _ in container.decode(video=0)) == 5
    container.close()
    # quality is a fixed quantiser: the finest one must cost several times the coarsest
    assert (tmp_path / "m2.avi").stat().st_size > 3 * (tmp_path / "m31.avi").stat().st_size


def test_writer_exception_leaves_nothing(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(path, fps=30) as writer:
        for index in range(5):
            writer.write(_frame(index))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_existing_file_on_failure(tmp_path):
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"old")
    with pytest.raises(ShapeError), VideoWriter(path, fps=30) as writer:
        writer.write(_frame(0))
        writer.write(_frame(0, height=32, width=32))  # size change
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_writer_without_frames_saves_nothing(tmp_path):
    with pytest.raises(InputError, match="no frames"), VideoWriter(tmp_path / "e.mp4", fps=30):
        pass
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_frames_and_codecs(tmp_path):
    with pytest.raises(InputError, match="no encoder"):
        VideoWriter(tmp_path / "x.mp4", fps=30, codec="no-such-codec")
    writer = VideoWriter(tmp_path / "x.mp4", fps=30)
    with pytest.raises(ShapeError, match="uint8"):
        writer.write(np.zeros((8, 8, 3), np.float32))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_reader_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing\.mp4: no such file"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(InputError, match=r"junk\.mp4: cannot read video"):
        VideoReader(tmp_path / "junk.mp4")
    with pytest.raises(InputError, match="stride"):
        VideoReader(tmp_path / "junk.mp4", stride=0)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    with pytest.raises(InputError, match="no video stream"):
        VideoReader(path)
