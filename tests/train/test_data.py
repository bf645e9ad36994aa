"""Training samples: seeded, cropped to multiples of 14, flipped and resized with cameras that stay consistent with
the depth; ground-truth folders as multi-view samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anydepth.bench.synthetic import indoor_scene, orbit, render_views, write_ground_truth
from anydepth.errors import InputError
from anydepth.presets import IMAGENET_MEAN, IMAGENET_STD
from anydepth.train.data import TrainingDataset, parse_size
from anydepth.train.sources import GroundTruthSource, SyntheticSource, open_source

SIZE = (42, 56)


def _dataset(source, **kw):
    return TrainingDataset(source, SIZE, IMAGENET_MEAN, IMAGENET_STD, **kw)


@pytest.fixture(scope="module")
def synthetic():
    return SyntheticSource(seed=3, scenes=3, views=4, width=80, height=60, kind="mixed")


def test_samples_depend_on_seed_and_key_only(synthetic):
    a, b = _dataset(synthetic, seed=1), _dataset(synthetic, seed=1)
    first = a.sample(5)
    a.sample(9)  # drawing others in between changes nothing
    again = b.sample(5)
    torch.testing.assert_close(first.images, again.images, rtol=0, atol=0)
    torch.testing.assert_close(first.depth, again.depth, rtol=0, atol=0)
    assert not torch.equal(_dataset(synthetic, seed=2).sample(5).images, first.images)
    # the synthetic source itself is deterministic from its seed
    other = SyntheticSource(seed=3, scenes=3, views=4, width=80, height=60, kind="mixed")
    np.testing.assert_array_equal(other.load(1, 2).depth, synthetic.load(1, 2).depth)


def test_sample_layout(synthetic):
    sample = _dataset(synthetic, frames=3, clip=True).sample(0)
    assert sample.images.shape == (3, 3, *SIZE) and sample.images.dtype == torch.float32
    assert sample.depth.shape == (3, *SIZE) and sample.valid.dtype == torch.bool
    assert sample.extrinsics.shape == (3, 3, 4) and sample.intrinsics.shape == (3, 3, 3)
    views = [int(n.rsplit(" ", 1)[1]) for n in sample.names]
    assert views == list(range(views[0], views[0] + 3))  # a clip: consecutive frames
    assert (sample.depth[~sample.valid] == 0).all()
    # normalised as the presets' preprocessing: a pixel of value v is (v / 255 - mean) / std
    assert sample.images.min() < -1.0 and sample.images.max() > 0.5
    batch = _dataset(synthetic, frames=2).batch([0, 1, 2])
    assert batch.images.shape == (3, 2, 3, *SIZE) and batch.extrinsics.shape == (3, 2, 3, 4)


def test_parse_size_and_its_errors():
    assert parse_size("70x42") == (42, 70)
    for bad in ("70x40", "abc", "0x14", "14x14x14"):
        with pytest.raises(InputError):
            parse_size(bad)


def _reprojection_agreement(sample) -> float:
    """Share of view 0's valid pixels that land in view 1 at the depth view 1 has there (within 3%)."""
    depth, valid = sample.depth.double(), sample.valid
    K, ext = sample.intrinsics.double(), sample.extrinsics.double()
    H, W = depth.shape[-2:]
    grid = torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5
    v, u = torch.meshgrid(*grid, indexing="ij")
    pix = torch.stack((u, v, torch.ones_like(u)), -1)[valid[0]]  # (N, 3)
    cam0 = (torch.linalg.inv(K[0]) @ pix.T).T * depth[0][valid[0]][:, None]
    world = (ext[0, :, :3].T @ (cam0 - ext[0, :, 3]).T).T
    cam1 = (ext[1, :, :3] @ world.T).T + ext[1, :, 3]
    proj = (K[1] @ cam1.T).T
    uv = proj[:, :2] / proj[:, 2:3]
    col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (cam1[:, 2] > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    col, row, z = col[inside], row[inside], cam1[inside, 2]
    seen = valid[1][row, col]
    agree = (depth[1][row, col] - z).abs() < 0.03 * z
    return float((agree & seen).sum() / max(int(seen.sum()), 1)), int(seen.sum())


def test_crops_resizes_and_flips_keep_the_cameras_consistent():
    source = SyntheticSource(seed=5, scenes=2, views=3, width=96, height=72, kind="indoor")
    flipping, plain = _dataset(source, frames=2, seed=4), _dataset(source, frames=2, seed=4, flip=False)
    flipped = 0
    for key in range(6):
        sample = flipping.sample(key)
        if not torch.equal(sample.images, plain.sample(key).images):
            flipped += 1
            torch.testing.assert_close(sample.images, plain.sample(key).images.flip(-1))
        agreement, seen = _reprojection_agreement(sample)
        assert seen > 100 and agreement > 0.8, (key, agreement, seen)
        # the extrinsics stay rotations (det +1), flipped or not
        assert torch.allclose(
            torch.linalg.det(sample.extrinsics[:, :, :3].double()), torch.ones(2, dtype=torch.float64)
        )
    assert 0 < flipped < 6


def test_evaluation_samples_are_fixed_centre_crops(synthetic):
    data = _dataset(synthetic, train=False)
    assert len(data) == 12
    torch.testing.assert_close(data.sample(4).images, data.sample(4).images, rtol=0, atol=0)
    assert data.sample(4).names == [synthetic.load(1, 0).name]


def test_ground_truth_folders(tmp_path):
    scene = indoor_scene(2)
    frames = list(render_views(scene, orbit(scene, 3, seed=2), 64, 48))
    write_ground_truth(tmp_path / "scene-a", iter(frames), scene)
    (tmp_path / "scene-a" / "depth" / "000002.npy").unlink()  # one view lost its depth
    source = open_source(tmp_path)
    assert isinstance(source, GroundTruthSource) and source.sequence_lengths() == [2]
    assert any("000002.npy" in line for line in source.skipped)
    frame = source.load(0, 1)
    np.testing.assert_array_equal(frame.depth, frames[1].depth)
    np.testing.assert_allclose(frame.extrinsics, frames[1].extrinsics)
    sample = _dataset(source, frames=2, seed=0).sample(3)
    assert sample.extrinsics.shape == (2, 3, 4)
    assert _reprojection_agreement(sample)[0] > 0.8
