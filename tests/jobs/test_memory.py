"""The memory estimate of a scene job: each term by hand, on headers alone."""

from __future__ import annotations

import pytest

from anydepth.errors import InputError
from anydepth.io.images import ImageHeader
from anydepth.jobs.memory import (
    DECODE_BYTES_PER_PIXEL,
    HIGH_DEPTH_DECODE_BYTES_PER_PIXEL,
    INPUT_RES_BYTES_PER_PIXEL,
    JOB_BYTES,
    WORKING_BYTES_PER_PIXEL,
    decode_bytes,
    processed_size,
    scene_working_bytes,
)


def test_processed_size_follows_the_da3_resize():
    assert processed_size(480, 640, 504, "upper_bound_resize") == (378, 504)
    assert processed_size(480, 640, 504, "lower_bound_resize") == (504, 672)
    assert processed_size(480, 640, 500, "upper_bound_crop") == (364, 500 // 14 * 14)


def test_one_view_read_at_its_full_or_reduced_size():
    png, jpeg = ImageHeader(8000, 6000, "PNG"), ImageHeader(8000, 6000, "JPEG")
    assert decode_bytes(png, 504, "upper_bound_resize", True) == DECODE_BYTES_PER_PIXEL * 48_000_000
    assert decode_bytes(jpeg, 504, "upper_bound_resize", False) == DECODE_BYTES_PER_PIXEL * 48_000_000
    assert decode_bytes(jpeg, 504, "upper_bound_resize", True) == DECODE_BYTES_PER_PIXEL * 1000 * 750  # an eighth
    deep = ImageHeader(100, 100, "PNG", high_depth=True)
    assert decode_bytes(deep, 504, "upper_bound_resize", True) == HIGH_DEPTH_DECODE_BYTES_PER_PIXEL * 10_000


def test_the_estimate_adds_its_terms():
    views = [ImageHeader(480, 640, "PNG"), ImageHeader(960, 1280, "PNG")]  # both 378x504 once processed
    expected = JOB_BYTES + DECODE_BYTES_PER_PIXEL * 960 * 1280 + WORKING_BYTES_PER_PIXEL["vitl"] * 2 * 378 * 504
    assert scene_working_bytes(views, "vitl") == expected
    at_input = scene_working_bytes(views, "vitl", export_at_input_res=True)
    assert at_input - expected == INPUT_RES_BYTES_PER_PIXEL * (480 * 640 + 960 * 1280)
    assert scene_working_bytes(views * 2, "vitl") > expected  # more views, more memory
    assert scene_working_bytes(views, "vits") < expected < scene_working_bytes(views, "vitg")
    with pytest.raises(InputError, match="vitx"):
        scene_working_bytes(views, "vitx")
    with pytest.raises(InputError):
        scene_working_bytes([], "vits")
