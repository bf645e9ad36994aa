"""DA3 preprocessing against upstream's InputProcessor (fixture), plus sizes, intrinsics and input handling.

The fixture comes from ``scripts/make_da3_preprocess_fixtures.py`` (its docstring says how to regenerate it):
upstream's ``InputProcessor`` on four small deterministic images of mixed sizes, at process_res 56 and 98,
for every resize method, with and without intrinsics.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image

from anydepth.errors import InputError, ShapeError
from anydepth.pipelines.da3_preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PROCESS_RES_METHODS,
    bound_resize_size,
    preprocess_da3,
    snap_size,
    upstream_processed_images,
)
from tests.helpers.paths import FIXTURES

pytestmark = pytest.mark.torch113

FIXTURE = FIXTURES / "da3_preprocess.npz"


@cache
def fixture():
    data = np.load(FIXTURE)
    return {k: data[k] for k in data.files}


def cases():
    return json.loads(str(fixture()["cases_json"]))


def normalise(pixels):
    unit = torch.from_numpy(pixels).float().div(255).permute(0, 3, 1, 2)
    return (unit - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["name"])
def test_matches_upstream_input_processor(case):
    data = fixture()
    name, idx = case["name"], case["images"]
    images = [data[f"image_{i}"] for i in idx]
    before = [image.copy() for image in images]
    intrinsics_in = data["intrinsics_in"][idx]
    intrinsics_copy = intrinsics_in.copy()
    out = preprocess_da3(images, intrinsics_in, case["process_res"], case["method"])
    pixels = data[f"{name}__pixels"]
    # upstream's tensor is exactly normalise(pixels) (asserted when the fixture was made)
    assert out.images.shape == (len(idx), 3, *pixels.shape[1:3])
    assert out.images.dtype == torch.float32
    torch.testing.assert_close(out.images, normalise(pixels), atol=1e-5, rtol=0)
    assert np.abs(out.processed_images.astype(int) - pixels).max() <= 1
    upstream = pixels.astype(np.int16) + data[f"{name}__processed_delta"]
    np.testing.assert_array_equal(upstream_processed_images(out.images), upstream)
    np.testing.assert_allclose(out.intrinsics.numpy(), data[f"{name}__intrinsics"], rtol=1e-5, atol=1e-5)
    for image, copy in zip(images, before):
        np.testing.assert_array_equal(image, copy)
    np.testing.assert_array_equal(intrinsics_in, intrinsics_copy)
    without = preprocess_da3(images, None, case["process_res"], case["method"])
    assert without.intrinsics is None and torch.equal(without.images, out.images)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["name"])
def test_mapping_back_is_consistent_with_intrinsics(case):
    data = fixture()
    idx = case["images"]
    intrinsics_in = data["intrinsics_in"][idx].astype(np.float64)
    out = preprocess_da3([data[f"image_{i}"] for i in idx], intrinsics_in, case["process_res"], case["method"])
    sx, sy = out.scales[:, 0], out.scales[:, 1]
    top, left = out.crop_offsets[:, 0], out.crop_offsets[:, 1]
    expected = intrinsics_in.copy()
    expected[:, 0] *= sx[:, None]
    expected[:, 1] *= sy[:, None]
    expected[:, 0, 2] -= left
    expected[:, 1, 2] -= top
    np.testing.assert_allclose(out.intrinsics.numpy(), expected, rtol=1e-5, atol=1e-4)
    h, w = out.size
    assert (out.crop_offsets[:, 0] + h <= out.resized_sizes[:, 0]).all()
    assert (out.crop_offsets[:, 1] + w <= out.resized_sizes[:, 1]).all()
    np.testing.assert_array_equal(out.original_sizes, [data[f"image_{i}"].shape[:2] for i in idx])


def test_sizes_hand_cases():
    assert bound_resize_size(480, 640, 504, "upper_bound_resize") == (378, 504)
    assert bound_resize_size(480, 640, 504, "lower_bound_crop") == (504, 672)
    assert bound_resize_size(504, 300, 504, "upper_bound_resize") == (504, 300)  # already on the bound
    # Python's round: half to even (45 * 56 / 70 = 36.0, 70 * 98 / 80 = 85.75, 5 * 7 / 2 = 17.5 -> 18)
    assert bound_resize_size(45, 70, 56, "upper_bound_resize") == (36, 56)
    assert bound_resize_size(5, 2, 7, "upper_bound_resize") == (7, 3)  # 2.8 -> 3
    assert bound_resize_size(2, 5, 5, "lower_bound_resize") == (5, 12)  # 12.5 -> 12
    assert snap_size(378, 504, "upper_bound_resize") == (378, 504)
    assert snap_size(371, 500, "upper_bound_resize") == (378, 504)  # 371 = 26.5 x 14: ties go up
    assert snap_size(377, 504, "upper_bound_crop") == (364, 504)
    assert snap_size(5, 20, "lower_bound_resize") == (1, 14)


def test_default_size_and_interpolation_choice():
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, 320:] = 255
    out = preprocess_da3([image])
    assert out.size == (378, 504) and out.images.shape == (1, 3, 378, 504)
    # INTER_AREA when shrinking: no overshoot ring beyond the [0, 255] edge values, which cubic would clip
    row = out.processed_images[0, 100, :, 0].astype(int)
    assert row.min() == 0 and row.max() == 255
    assert np.all(np.diff(row) >= 0)


def test_float_images_keep_precision():
    rng = np.random.default_rng(0)
    image = rng.random((40, 60, 3)).astype(np.float32)
    as_uint8 = np.round(image * 255).astype(np.uint8)
    out_float = preprocess_da3([image], process_res=56)
    out_uint8 = preprocess_da3([as_uint8], process_res=56)
    assert out_float.images.shape == out_uint8.images.shape
    assert out_float.processed_images.dtype == np.uint8
    # float data is not quantised between the two resizes: close to, not equal to, the 8-bit path
    diff = (out_float.images - out_uint8.images).abs()
    assert 0 < float(diff.max()) < 0.1
    assert float(out_float.images.min()) >= (0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD) - 1e-6


def test_accepts_paths_pil_and_tensors(tmp_path):
    image = fixture()["image_0"]
    path = tmp_path / "view.png"
    Image.fromarray(image).save(path)
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    outs = [preprocess_da3([source], process_res=56) for source in (image, str(path), Image.fromarray(image), tensor)]
    for out in outs[1:]:
        assert torch.equal(out.images, outs[0].images)


def test_intrinsics_as_tensor_are_not_modified():
    intrinsics = torch.tensor([[[50.0, 0.0, 30.0], [0.0, 50.0, 20.0], [0.0, 0.0, 1.0]]])
    copy = intrinsics.clone()
    out = preprocess_da3([np.zeros((40, 60, 3), np.uint8)], intrinsics, process_res=56)
    assert torch.equal(intrinsics, copy)
    assert out.intrinsics.dtype == torch.float32
    assert float(out.intrinsics[0, 0, 0]) == pytest.approx(50.0 * 56 / 60)


def test_bad_inputs():
    image = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(InputError):
        preprocess_da3([])
    with pytest.raises(InputError):
        preprocess_da3([image], process_res_method="bicubic")
    with pytest.raises(InputError):
        preprocess_da3([image], process_res=0)
    with pytest.raises(ShapeError):
        preprocess_da3([image], intrinsics=np.eye(3))
    with pytest.raises(InputError):
        preprocess_da3([image], process_res=9, process_res_method="upper_bound_crop")  # 6x9 -> nothing left
    with pytest.raises(ShapeError):
        upstream_processed_images(torch.zeros(3, 4, 4))
    assert len(PROCESS_RES_METHODS) == 4


def test_fixture_is_small():
    assert FIXTURE.stat().st_size < 250_000


def _gradient(height: int, width: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 40 * seed % 256)], -1).astype(np.uint8)


def test_views_reach_the_processing_size_one_at_a_time(tmp_path):
    """Peak memory is one decoded view at full size plus the processed stack, not every view at full size."""
    import tracemalloc

    height, width, count = 600, 800, 8
    paths = []
    for i in range(count):
        paths.append(tmp_path / f"view{i}.png")
        Image.fromarray(_gradient(height, width, i)).save(paths[-1])
    one_view = height * width * 3
    tracemalloc.start()  # numpy (and OpenCV's numpy outputs) report their buffers to tracemalloc
    try:
        out = preprocess_da3(paths, process_res=56)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.images.shape == (count, 3, 42, 56)
    np.testing.assert_array_equal(out.original_sizes, [[height, width]] * count)
    assert peak < 2.5 * one_view, f"peak {peak / one_view:.1f} decoded views at once"


def test_reduce_on_decode_keeps_sizes_and_intrinsics_and_is_close(tmp_path):
    yy, xx = np.mgrid[0:960, 0:1280]
    photo = np.stack([np.sin(xx / 37.0), np.cos(yy / 23.0), np.sin((xx + yy) / 50.0)], -1) * 100 + 128
    Image.fromarray(photo.astype(np.uint8)).save(tmp_path / "photo.jpg", quality=92)
    Image.fromarray(photo[:, :1000].astype(np.uint8)).save(tmp_path / "narrow.jpg", quality=92)
    paths = [tmp_path / "photo.jpg", tmp_path / "narrow.jpg"]
    K = np.array([[[900.0, 0, 640], [0, 900, 480], [0, 0, 1]], [[800.0, 0, 500], [0, 800, 480], [0, 0, 1]]])
    for method in PROCESS_RES_METHODS:
        full = preprocess_da3(paths, K, process_res=140, process_res_method=method)
        reduced = preprocess_da3(paths, K, process_res=140, process_res_method=method, reduce_on_decode=True)
        for name in ("original_sizes", "resized_sizes", "scales", "crop_offsets"):
            np.testing.assert_array_equal(getattr(reduced, name), getattr(full, name), err_msg=name)
        assert torch.equal(reduced.intrinsics, full.intrinsics)
        difference = np.abs(reduced.processed_images.astype(int) - full.processed_images.astype(int))
        assert 0 < difference.mean() < 1.5, method  # decoded reduced: close, not equal
    arrays = [np.asarray(Image.open(p)) for p in paths]  # arrays are never reduced: bit-identical
    assert torch.equal(
        preprocess_da3(arrays, process_res=140, reduce_on_decode=True).images,
        preprocess_da3(paths, process_res=140).images,
    )
