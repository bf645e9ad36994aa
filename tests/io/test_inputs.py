"""expand_inputs: single file, folder, glob pattern and .txt list, natural order, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from anydepth.errors import InputError
from anydepth.io.inputs import VIDEO_SUFFIXES, expand_inputs, is_video_path, natural_sort_key


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_single_file_is_returned_as_is(tmp_path):
    _touch(tmp_path / "a.jpg")
    assert expand_inputs(str(tmp_path / "a.jpg")) == [tmp_path / "a.jpg"]
    assert expand_inputs(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]


def test_folder_natural_order_images_only_not_recursive(tmp_path):
    _touch(
        tmp_path / "img10.png",
        tmp_path / "img2.PNG",
        tmp_path / "img1.jpg",
        tmp_path / "notes.txt",
        tmp_path / ".hidden.jpg",
        tmp_path / "sub" / "img0.jpg",
    )
    names = [path.name for path in expand_inputs(str(tmp_path))]
    assert names == ["img1.jpg", "img2.PNG", "img10.png"]


def test_folder_recursive(tmp_path):
    _touch(tmp_path / "b" / "2.jpg", tmp_path / "b" / "10.jpg", tmp_path / "a" / "x.webp", tmp_path / "top.tif")
    paths = expand_inputs(tmp_path, recursive=True)
    assert [path.relative_to(tmp_path).as_posix() for path in paths] == ["a/x.webp", "b/2.jpg", "b/10.jpg", "top.tif"]


def test_empty_folder_error_suggests_recursive(tmp_path):
    _touch(tmp_path / "sub" / "a.jpg", tmp_path / "readme.md")
    with pytest.raises(InputError, match=r"no images found.*recursive"):
        expand_inputs(tmp_path)


def test_glob_patterns(tmp_path):
    _touch(tmp_path / "f3.jpg", tmp_path / "f20.jpg", tmp_path / "f3.png", tmp_path / "d" / "e" / "deep.png")
    assert [p.name for p in expand_inputs(str(tmp_path / "*.jpg"))] == ["f3.jpg", "f20.jpg"]
    assert [p.name for p in expand_inputs(str(tmp_path / "**" / "*.png"))] == ["deep.png", "f3.png"]


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(InputError, match=r"\*\.jpg: the pattern matches no image files"):
        expand_inputs(str(tmp_path / "*.jpg"))


def test_txt_list_relative_to_list_folder_with_comments(tmp_path, monkeypatch):
    _touch(tmp_path / "imgs" / "b.jpg", tmp_path / "imgs" / "a.jpg", tmp_path / "abs.png")
    listing = tmp_path / "lists" / "inputs.txt"
    listing.parent.mkdir()
    listing.write_text(f"# my frames\n../imgs/b.jpg\n\n  ../imgs/a.jpg  \n{tmp_path / 'abs.png'}\n")
    monkeypatch.chdir(tmp_path / "imgs")  # relative entries must not depend on the working folder
    paths = expand_inputs(str(listing))
    assert [path.resolve() for path in paths] == [
        (tmp_path / "imgs" / "b.jpg").resolve(),
        (tmp_path / "imgs" / "a.jpg").resolve(),
        (tmp_path / "abs.png").resolve(),
    ]  # list order is kept, not sorted


def test_txt_list_missing_entry_names_line(tmp_path):
    _touch(tmp_path / "a.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg\n# comment\nmissing.jpg\n")
    with pytest.raises(InputError, match=r"list\.txt:3: missing\.jpg: no such file"):
        expand_inputs(listing)


def test_txt_list_with_only_comments(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="names no images"):
        expand_inputs(listing)


def test_nonexistent_spec(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        expand_inputs(str(tmp_path / "missing.jpg"))


def test_natural_sort_key():
    names = ["frame_10.png", "Frame_2.png", "frame_1.png", "frame_1b.png", "a/frame_3.png"]
    assert sorted(names, key=natural_sort_key) == [
        "a/frame_3.png",
        "frame_1.png",
        "frame_1b.png",
        "Frame_2.png",
        "frame_10.png",
    ]


def test_is_video_path():
    assert {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"} == VIDEO_SUFFIXES
    assert is_video_path("clip.MP4") and is_video_path(Path("a/b.webm"))
    assert not is_video_path("frame.png") and not is_video_path("mp4")
