"""Camera paths of the gs_video export: lengths, exact ends, rotations that stay rotations, the pivot kept."""

from __future__ import annotations

import math

import pytest
import torch

from anydepth.errors import InputError
from anydepth.geometry.camera_paths import (
    TRAJECTORIES,
    camera_path,
    dolly_zoom_path,
    gaussian_smooth_path,
    interpolate_poses,
    interpolation_length,
    wander_path,
)

pytestmark = pytest.mark.torch113  # the inference core on torch 1.13 / Python 3.9 too


def _poses(n=4):
    """Camera-to-world poses on an arc, each turned towards the origin area."""
    poses = torch.eye(4).repeat(n, 1, 1)
    for i in range(n):
        a = 0.15 * i
        poses[i, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        poses[i, :3, 3] = torch.tensor([-3 * math.sin(a), 0.05 * i, 3 - 3 * math.cos(a)])
    return poses


K = torch.tensor([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


def _assert_rotations(poses):
    R = poses[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(R), torch.ones(len(R)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", TRAJECTORIES)
def test_every_path_has_the_expected_length_and_valid_cameras(mode):
    poses = _poses(4)
    path, ks = camera_path(mode, poses, K.repeat(4, 1, 1))
    per = interpolation_length(4)  # 16: three segments of 8 would be under 2 s at 24 fps
    interpolated = 3 * (per - 1) + 1
    middle_frames = max(36, min(60, interpolated // 2 // 2))
    expected = {
        "original": 4, "smooth": 4, "interpolate": interpolated, "interpolate_smooth": interpolated,
        "wander": 122, "dolly_zoom": 120, "extend": interpolated + (middle_frames + 2) + middle_frames,
    }[mode]  # fmt: skip
    assert per == 16 and path.shape == (expected, 4, 4) and ks.shape == (expected, 3, 3)
    assert torch.isfinite(path).all() and torch.isfinite(ks).all()
    _assert_rotations(path)
    if mode in ("original", "interpolate"):
        torch.testing.assert_close(path[0], poses[0])
        torch.testing.assert_close(path[-1], poses[-1], atol=1e-5, rtol=0)


def test_interpolation_turns_about_the_focus_point_with_exact_ends():
    a, b = _poses(2)
    t = torch.linspace(0, 1, 9)
    path = interpolate_poses(a, b, t)
    torch.testing.assert_close(path[0], a, atol=1e-6, rtol=0)
    torch.testing.assert_close(path[-1], b, atol=1e-6, rtol=0)
    # both optical axes meet at (0, 0, 3): every frame keeps it on its axis, 3 units ahead
    pivot = torch.tensor([0.0, 0.0, 3.0])
    # the centres climb by 0.05, so the axes do not meet exactly: allow that much
    in_frame = (path[:, :3, :3].transpose(1, 2) @ (pivot - path[:, :3, 3])[..., None])[..., 0]
    torch.testing.assert_close(in_frame[:, :2], torch.zeros(9, 2), atol=0.06, rtol=0)
    torch.testing.assert_close(in_frame[:, 2], torch.full((9,), 3.0), atol=0.06, rtol=0)


def test_smoothing_keeps_a_straight_line_and_a_single_view():
    line = torch.eye(4).repeat(7, 1, 1)
    line[:, 0, 3] = torch.arange(7.0)
    smooth = gaussian_smooth_path(line)
    torch.testing.assert_close(smooth[3], line[3])  # the middle of a straight line stays
    torch.testing.assert_close(gaussian_smooth_path(line[:1]), line[:1])


def test_wander_and_dolly_zoom_by_hand():
    pose = torch.eye(4)
    path, ks = wander_path(pose, K, num_frames=5, max_disparity=30.0)
    assert path.shape == (7, 4, 4)
    radius = 30.0 / 300.0
    torch.testing.assert_close(path[2, :3, 3], torch.tensor([-radius, 0.0, 0.0]), atol=1e-6, rtol=0)  # 90 degrees
    torch.testing.assert_close(path[0], pose)
    torch.testing.assert_close(path[-1], pose)
    path, ks = dolly_zoom_path(pose, K, num_frames=3, max_distance=2.0, focus_distance=30.0)
    assert float(path[1, 2, 3]) == pytest.approx(-2.0)  # half way: furthest back
    assert float(ks[1, 0, 0]) == pytest.approx(300.0 * 30.0 / 32.0)


def test_one_view_gets_the_wander_and_unknown_names_are_refused():
    path, _ = camera_path("interpolate", _poses(1), K[None])
    assert len(path) == 122
    with pytest.raises(InputError, match="unknown gs_video trajectory 'orbit'"):
        camera_path("orbit", _poses(2), K.repeat(2, 1, 1))
