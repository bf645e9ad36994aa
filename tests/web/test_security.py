"""The guards every web interface uses: path confinement, safe names, tokens, upload kinds."""

from __future__ import annotations

import errno

import pytest

from anydepth.web.security import (
    ServiceError,
    confine,
    confine_any,
    is_loopback,
    path_error,
    sanitize_filename,
    token_matches,
    upload_kind,
)


def test_confine(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "out_link").symlink_to(tmp_path / "outside.txt")
    (root / "in_link").symlink_to(root / "sub" / "f.txt")
    assert confine(root, "sub/f.txt") == (root / "sub" / "f.txt").resolve()
    assert confine(root, "sub/../sub/f.txt") == (root / "sub" / "f.txt").resolve()
    assert confine(root, "in_link") == (root / "sub" / "f.txt").resolve()  # a symlink that stays inside is fine
    for bad in ["../outside.txt", "sub/../../outside.txt", str(tmp_path / "outside.txt"), "/etc/passwd", "out_link",
                "%2e%2e/outside.txt", "..\\outside.txt", "sub/f.txt\x00", ""]:  # fmt: skip
        with pytest.raises(ServiceError) as info:
            confine(root, bad)
        assert info.value.status == 403, bad
    assert confine_any([root], str(root / "sub")) == (root / "sub").resolve()
    assert confine_any([root, tmp_path], str(tmp_path / "outside.txt")) == (tmp_path / "outside.txt").resolve()
    with pytest.raises(ServiceError, match="--allowed-root"):
        confine_any([], "sub")
    with pytest.raises(ServiceError, match="outside"):
        confine_any([root], "../outside.txt")


def test_paths_the_system_refuses_are_a_4xx(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.txt").write_text("x")
    (root / "loop").symlink_to("loop")
    refused = ["x" * 300, "f" * 256 + ".png", "loop", "loop/below.png"]  # a name over 255 bytes; a symlink loop
    for bad in refused:
        for guard in (confine, lambda root, path: confine_any([root], path)):
            with pytest.raises(ServiceError) as info:
                guard(root, bad)
            assert info.value.status == 400, bad
            assert len(info.value.message) < 200 and str(tmp_path) not in info.value.message
    with pytest.raises(ServiceError) as info:
        confine_any([root], str(root / ("x" * 300)))
    assert info.value.status == 400
    # nothing there, or a file where a folder should be: returned, and the caller answers 404
    assert confine(root, "f.txt/below") == root.resolve() / "f.txt" / "below"
    assert path_error(PermissionError(errno.EACCES, "denied"), "a").status == 403
    assert path_error(OSError(errno.EIO, "io"), "a").status == 400


def test_sanitize_filename():
    assert sanitize_filename("photo.jpg") == "photo.jpg"
    assert sanitize_filename("../../etc/pass wd.PNG") == "pass_wd.PNG"
    assert sanitize_filename("C:\\Users\\me\\img.png") == "img.png"
    assert sanitize_filename(".hidden.png") == "hidden.png"
    assert sanitize_filename("a..b...png") == "a.b.png"
    assert sanitize_filename("ｆｕｌｌｗｉｄｔｈ.png") == "fullwidth.png"  # NFKC folds look-alike characters
    assert sanitize_filename("caf\u00e9 \u2603.png") == "caf_.png"
    assert sanitize_filename("..") == "file" and sanitize_filename(None) == "file" and sanitize_filename("/") == "file"
    long = sanitize_filename("x" * 300 + ".png")
    assert len(long) == 100 and long.endswith(".png")


def test_token_and_upload_kind():
    assert token_matches(None, None, None)
    assert token_matches("t0k", "Bearer t0k", None) and token_matches("t0k", "bearer t0k", None)
    assert token_matches("t0k", None, "t0k")
    assert not token_matches("t0k", None, None) and not token_matches("t0k", "Bearer t0", None)
    assert not token_matches("t0k", "Basic t0k", None)
    assert upload_kind("a.PNG", "image/png") == "image" and upload_kind("a.mp4", None) == "video"
    assert upload_kind("a.jpg", "application/octet-stream; charset=x") == "image"
    for name, content_type in [("a.exe", None), ("a", "image/png"), ("a.png", "text/html"), ("a.mp4", "image/png")]:
        with pytest.raises(ServiceError) as info:
            upload_kind(name, content_type)
        assert info.value.status == 415


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
