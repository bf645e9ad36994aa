"""DA3 exports (mini_npz, npz, glb, ply, colmap) of a synthetic scene, read back with independent readers."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from anydepth.errors import InputError
from anydepth.export import colmap as colmap_module
from anydepth.export.formats import EXPORTERS, export, parse_export_format
from anydepth.prediction import Prediction

pytestmark = pytest.mark.torch113

trimesh = pytest.importorskip("trimesh")
plyfile = pytest.importorskip("plyfile")
pycolmap = pytest.importorskip("pycolmap")

H, W = 24, 32  # processed resolution
ORIGINAL = (48, 64)  # original (height, width): twice the processed size
PLANE_Z = 5.0  # the scene: the world plane z = 5
SKY_ROWS = 2  # top rows of view 2 are sky


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_x @ about_y


def _colour_of(world: np.ndarray, view: np.ndarray) -> np.ndarray:
    """RGB from the world position (red from x, green from y) and the view (blue)."""
    red = np.clip(np.rint(world[..., 0] * 40 + 128), 0, 255)
    green = np.clip(np.rint(world[..., 1] * 40 + 128), 0, 255)
    blue = np.broadcast_to(view * 60.0, red.shape)
    return np.stack((red, green, blue), axis=-1).astype(np.uint8)


def make_scene() -> Prediction:
    """3 cameras looking at the plane z = 5 from different places; depth, colours and sky computed analytically."""
    centres = np.array([[0.0, 0.0, 0.0], [0.6, -0.2, 0.3], [-0.5, 0.3, -0.2]])
    rotations = [_rotation(0.0, 0.0), _rotation(-0.1, 0.05), _rotation(0.08, -0.06)]  # w2c rotations
    K = np.array([[30.0, 0.0, (W - 1) / 2], [0.0, 30.0, (H - 1) / 2], [0.0, 0.0, 1.0]])
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    pixels = np.stack((u, v, np.ones_like(u)), axis=-1)  # (H, W, 3)
    depth, images, extrinsics = [], [], []
    for view, (centre, R) in enumerate(zip(centres, rotations)):
        rays_cam = pixels @ np.linalg.inv(K).T  # z = 1
        rays_world = rays_cam @ R  # R^T d
        z = (PLANE_Z - centre[2]) / rays_world[..., 2]  # ray parameter = z-depth since the camera ray has z = 1
        world = centre + z[..., None] * rays_world
        depth.append(z)
        images.append(_colour_of(world, np.array(view)))
        extrinsics.append(np.concatenate((R, (-R @ centre)[:, None]), axis=1))
    rng = np.random.default_rng(0)
    depth = np.stack(depth).astype(np.float32)
    sky = np.zeros((3, H, W), dtype=np.float32)
    sky[2, :SKY_ROWS] = 0.9
    depth[2, :SKY_ROWS] = 100.0  # sky: far away and off the plane
    return Prediction(
        depth=depth,
        depth_kind="depth",
        conf=rng.uniform(1.0, 3.0, size=(3, H, W)).astype(np.float32),
        extrinsics=np.stack(extrinsics).astype(np.float32),
        intrinsics=np.tile(K, (3, 1, 1)).astype(np.float32),
        sky=sky,
        processed_images=np.stack(images),
    )


def expected_kept(prediction: Prediction, percentile: float = 40.0) -> np.ndarray:
    """(N, H, W) pixels that should become points: not sky, confidence at or above the percentile of the rest."""
    not_sky = ~prediction.sky
    threshold = np.percentile(prediction.conf[not_sky], percentile)
    return not_sky & (prediction.conf >= threshold)


def world_points(prediction: Prediction) -> np.ndarray:
    """(N, H, W, 3) float64 world points of every pixel, computed here without the library."""
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    out = []
    for d, K, E in zip(prediction.depth, prediction.intrinsics, prediction.extrinsics):
        cam = np.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)), -1) * d[..., None]
        R, t = E[:, :3].astype(np.float64), E[:, 3].astype(np.float64)
        out.append((cam - t) @ R)
    return np.stack(out)


@pytest.fixture
def scene() -> Prediction:
    return make_scene()


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- npz ---------------------------------------------------------------------------------------------------------


def test_mini_npz_and_npz_keys_shapes_values(scene, tmp_path):
    written = export(scene, tmp_path, "mini_npz-npz")
    assert written == {
        "mini_npz": [tmp_path / "exports" / "mini_npz" / "results.npz"],
        "npz": [tmp_path / "exports" / "npz" / "results.npz"],
    }
    with np.load(tmp_path / "exports" / "mini_npz" / "results.npz") as mini:
        assert sorted(mini.files) == ["conf", "depth", "extrinsics", "intrinsics"]
        np.testing.assert_array_equal(mini["depth"], np.round(scene.depth, 8))
        np.testing.assert_array_equal(mini["conf"], np.round(scene.conf, 2))
        np.testing.assert_array_equal(mini["extrinsics"], scene.extrinsics)
        np.testing.assert_array_equal(mini["intrinsics"], scene.intrinsics)
        assert mini["extrinsics"].shape == (3, 3, 4) and mini["depth"].dtype == np.float32
    with np.load(tmp_path / "exports" / "npz" / "results.npz") as full:
        assert sorted(full.files) == ["conf", "depth", "extrinsics", "image", "intrinsics"]
        np.testing.assert_array_equal(full["image"], scene.processed_images)
        assert full["image"].dtype == np.uint8 and full["image"].shape == (3, H, W, 3)
        np.testing.assert_array_equal(full["depth"], np.round(scene.depth, 6))
        np.testing.assert_array_equal(full["conf"], np.round(scene.conf, 2))


def test_top_level_export_is_the_same_function(scene, tmp_path):
    import anydepth
    import anydepth.export.formats  # the submodules stay importable beside the call

    written = anydepth.export(scene, tmp_path, "mini_npz-ply", num_max_points=50)
    assert set(written) == {"mini_npz", "ply"}
    with np.load(written["mini_npz"][0]) as mini:
        np.testing.assert_array_equal(mini["extrinsics"], scene.extrinsics)
    with pytest.raises(InputError, match="bogus"):
        anydepth.export(scene, tmp_path / "x", "bogus")
    assert anydepth.export.formats.export is export and not (tmp_path / "x").exists()


def test_npz_without_optional_arrays(tmp_path):
    depth = np.full((1, 4, 5), 2.0, dtype=np.float32)
    export(Prediction(depth=depth, depth_kind="metric"), tmp_path, "mini_npz")
    with np.load(tmp_path / "exports" / "mini_npz" / "results.npz") as mini:
        assert mini.files == ["depth"]
    with pytest.raises(InputError, match="processed_images") as error:
        export(Prediction(depth=depth, depth_kind="metric"), tmp_path / "b", "npz")
    _one_line(error)
    assert not (tmp_path / "b").exists()


# --- glb ---------------------------------------------------------------------------------------------------------


def _glb_parts(path: Path):
    loaded = trimesh.load(str(path), file_type="glb")
    assert isinstance(loaded, trimesh.Scene)
    clouds = [g for g in loaded.geometry.values() if isinstance(g, trimesh.points.PointCloud)]
    paths = [g for g in loaded.geometry.values() if isinstance(g, trimesh.path.Path3D)]
    return clouds, paths


def test_glb_points_colours_cameras_in_upstream_frame(scene, tmp_path):
    limit = 500
    export(scene, tmp_path, "glb", num_max_points=limit)
    clouds, frusta = _glb_parts(tmp_path / "scene.glb")
    assert len(clouds) == 1 and len(frusta) == 3
    points = np.asarray(clouds[0].vertices, dtype=np.float64)
    colors = np.asarray(clouds[0].colors)[:, :3]
    assert len(points) == limit

    # expected: kept pixels, into camera 0, OpenCV -> glTF (flip y, z), centred on the median of all kept points
    kept = expected_kept(scene)
    world = world_points(scene)[kept]
    E0 = scene.extrinsics[0].astype(np.float64)
    aligned = (world @ E0[:, :3].T + E0[:, 3]) * np.array([1.0, -1.0, -1.0])
    center = np.median(aligned, axis=0)
    aligned -= center
    distance = np.linalg.norm(points[:, None] - aligned[None], axis=-1)
    nearest = distance.argmin(axis=1)
    assert distance.min(axis=1).max() < 1e-4  # every point is a kept pixel's point, in upstream's GLB frame
    np.testing.assert_array_equal(colors, scene.processed_images[kept][nearest])  # and carries its colour
    # glTF looks down -z: the scene is in front of camera 0, whose apex sits at -center
    apexes = np.concatenate([np.asarray(f.vertices) for f in frusta])
    assert np.linalg.norm(apexes - (-center), axis=1).min() < 1e-5
    for E in scene.extrinsics.astype(np.float64):  # every camera centre, through the same transform
        apex = ((-E[:, 3] @ E[:, :3]) @ E0[:, :3].T + E0[:, 3]) * np.array([1.0, -1.0, -1.0]) - center
        assert np.linalg.norm(apexes - apex, axis=1).min() < 1e-5
    assert (points[:, 2] < -center[2]).all()

    export(scene, tmp_path / "plain", "glb", show_cameras=False, num_max_points=10_000)
    clouds, frusta = _glb_parts(tmp_path / "plain" / "scene.glb")
    assert frusta == [] and len(clouds[0].vertices) == kept.sum()


# --- ply ---------------------------------------------------------------------------------------------------------


def test_ply_properties_and_values(scene, tmp_path):
    export(scene, tmp_path, "ply", num_max_points=None)
    data = plyfile.PlyData.read(str(tmp_path / "scene.ply"))
    assert data.text is False and data.byte_order == "<"
    vertex = data["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue", "confidence"]
    kept = expected_kept(scene)
    assert vertex.count == kept.sum()
    xyz = np.stack([vertex[a] for a in "xyz"], axis=1).astype(np.float64)
    np.testing.assert_allclose(xyz[:, 2], PLANE_Z, atol=1e-4)  # every point on the plane: no sky, right frame
    rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1)
    np.testing.assert_array_equal(rgb, scene.processed_images[kept])  # view order, then row-major pixels
    np.testing.assert_allclose(xyz, world_points(scene)[kept], atol=1e-4)
    np.testing.assert_array_equal(vertex["confidence"], scene.conf[kept])


def test_ply_subsampling_is_bounded_and_deterministic(scene, tmp_path):
    export(scene, tmp_path / "a", "ply", num_max_points=100)
    export(scene, tmp_path / "b", "ply", num_max_points=100)
    a = (tmp_path / "a" / "scene.ply").read_bytes()
    assert a == (tmp_path / "b" / "scene.ply").read_bytes()
    assert plyfile.PlyData.read(str(tmp_path / "a" / "scene.ply"))["vertex"].count == 100


def test_prediction_without_cameras_uses_fallback(tmp_path):
    depth = np.full((1, 6, 8), 3.0, dtype=np.float32)
    export(Prediction(depth=depth, depth_kind="metric"), tmp_path, "ply-glb", conf_thresh_percentile=0)
    vertex = plyfile.PlyData.read(str(tmp_path / "scene.ply"))["vertex"]
    assert vertex.count == 48
    np.testing.assert_allclose(vertex["z"], 3.0)  # identity pose: camera frame
    focal = 0.5 * 8 / np.tan(np.radians(60.0) / 2)  # default 60 degree horizontal field of view
    np.testing.assert_allclose(vertex["x"].max(), 3.0 * 3.5 / focal, rtol=1e-5)
    clouds, frusta = _glb_parts(tmp_path / "scene.glb")
    assert len(clouds[0].vertices) == 48 and len(frusta) == 1


# --- colmap ------------------------------------------------------------------------------------------------------


def test_colmap_model_reprojects_with_multiview_tracks(scene, tmp_path):
    written = export(scene, tmp_path, "colmap", colmap={"image_sizes": [ORIGINAL] * 3})
    names = sorted(p.name for p in written["colmap"])
    assert {"cameras.bin", "images.bin", "points3D.bin"} <= set(names)
    assert sorted(os.listdir(tmp_path)) == names  # model files directly in the export folder; no leftovers
    model = pycolmap.Reconstruction(str(tmp_path))
    assert model.num_cameras() == 3 and model.num_reg_images() == 3
    scale = ORIGINAL[1] / W
    for camera_id, camera in model.cameras.items():
        assert (camera.height, camera.width) == ORIGINAL
        assert camera.model == pycolmap.CameraModelId.PINHOLE
        K = scene.intrinsics[camera_id - 1].astype(np.float64)
        np.testing.assert_allclose(
            camera.params, [K[0, 0] * scale, K[1, 1] * scale, (K[0, 2] + 0.5) * scale, (K[1, 2] + 0.5) * scale]
        )
    assert model.num_points3D() == expected_kept(scene).sum()

    # every observation: the 3D point projects onto its 2D point within 1 px, and the ids agree both ways
    observed = {}
    for image_id, image in model.images.items():
        pose = image.cam_from_world().matrix()
        K = model.cameras[image.camera_id].calibration_matrix()
        np.testing.assert_allclose(pose, scene.extrinsics[image_id - 1], atol=1e-5)
        xy = np.array([p.xy for p in image.points2D])
        ids = np.array([p.point3D_id for p in image.points2D])
        xyz = np.array([model.points3D[i].xyz for i in ids])
        cam = xyz @ pose[:, :3].T + pose[:, 3]
        projected = cam[:, :2] / cam[:, 2:] @ K[:2, :2].T + K[:2, 2]
        assert np.abs(projected - xy).max() < 1.0
        observed[image_id] = set(ids.tolist())
    lengths = np.array([point.track.length() for point in model.points3D.values()])
    assert (lengths >= 1).all() and (lengths > 1).sum() > 0.5 * len(lengths)  # the plane is seen by several views
    for point_id, point in model.points3D.items():
        for element in point.track.elements:
            assert model.images[element.image_id].points2D[element.point2D_idx].point3D_id == point_id
            assert point_id in observed[element.image_id]


def test_colmap_skips_views_where_depth_disagrees(scene, tmp_path):
    rows, cols = slice(6, 18), slice(8, 24)
    scene.depth[1, rows, cols] *= 1.2  # view 1 sees something nearer/farther there: other views' points disagree
    export(scene, tmp_path, "colmap", conf_thresh_percentile=0)
    model = pycolmap.Reconstruction(str(tmp_path))
    image = model.images[2]  # view 1
    xy = np.array([p.xy for p in image.points2D])  # no image sizes given: original size = processed size
    u, v = np.rint(xy[:, 0] - 0.5).astype(int), np.rint(xy[:, 1] - 0.5).astype(int)  # COLMAP centres at i + 0.5
    in_block = (v >= rows.start) & (v < rows.stop) & (u >= cols.start) & (u < cols.stop)
    sources = np.array([len(model.points3D[p.point3D_id].track.elements) for p in image.points2D])
    assert in_block.sum() == (rows.stop - rows.start) * (cols.stop - cols.start)  # only view 1's own pixels
    assert (sources[in_block] == 1).all() and (sources[~in_block] > 1).any()


def test_colmap_sizes_from_image_paths(scene, tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"frame_{i}.jpg"))
        Image.new("RGB", (ORIGINAL[1], ORIGINAL[0])).save(paths[-1])
    export(scene, tmp_path / "out", "colmap", image_paths=paths)
    model = pycolmap.Reconstruction(str(tmp_path / "out"))
    assert sorted(image.name for image in model.images.values()) == ["frame_0.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert {(c.height, c.width) for c in model.cameras.values()} == {ORIGINAL}


# --- contracts ---------------------------------------------------------------------------------------------------


def test_all_formats_leave_the_callers_arrays_unchanged(scene, tmp_path):
    before = copy.deepcopy(scene)
    formats = [name for name in EXPORTERS if name not in ("feat_vis", "gs_ply", "gs_video")]  # features, Gaussians
    written = export(scene, tmp_path, "-".join(formats), num_max_points=200, colmap={"image_sizes": [ORIGINAL] * 3})
    assert set(written) == set(formats)
    for name in ("depth", "conf", "extrinsics", "intrinsics", "sky", "processed_images"):
        np.testing.assert_array_equal(getattr(scene, name), getattr(before, name), err_msg=name)
        assert getattr(scene, name).dtype == getattr(before, name).dtype


@pytest.mark.parametrize("fmt", ["mini_npz", "glb", "ply", "colmap"])
def test_failing_export_leaves_no_partial_file(scene, tmp_path, monkeypatch, fmt):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    if fmt == "mini_npz":

        def partial(handle, **arrays):
            handle.write(b"PK\x03\x04 partial")
            raise OSError("disk full")

        monkeypatch.setattr(np, "savez_compressed", partial)
    elif fmt == "glb":
        monkeypatch.setattr(trimesh.Scene, "export", fail)
    elif fmt == "ply":

        def partial_ply(self, stream):
            stream.write(b"ply\nformat binary_little_endian 1.0\n")
            raise OSError("disk full")

        monkeypatch.setattr(plyfile.PlyData, "write", partial_ply)
    else:  # pycolmap refuses the encoded model
        monkeypatch.setattr(colmap_module, "model_bytes", lambda *a: dict.fromkeys(colmap_module.MODEL_FILES, b"bad"))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the writer raises
        export(scene, tmp_path, fmt)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("glb-foo", "'foo'"),
        ("GLB-npz-mesh", "'mesh'"),
        ("glb--npz", "empty part"),
        ("", "empty export format"),
        ("glb-glb", "more than once"),
        ("gs_video-gs_vid", "'gs_vid'"),
    ],
)
def test_bad_format_strings_rejected_in_one_line(spec, bad):
    with pytest.raises(InputError) as error:
        parse_export_format(spec)
    message = _one_line(error)
    assert bad in message
    if "unknown" in message:
        assert "colmap, depth_vis, exr, feat_vis, glb, gs_ply, gs_video, mini_npz, npz, ply, png16" in message


def test_impossible_combinations_rejected_before_writing(scene, tmp_path):
    with pytest.raises(InputError, match="disparity") as error:
        parse_export_format("mini_npz-glb", depth_kind="disparity")
    _one_line(error)
    with pytest.raises(InputError, match="camera poses"):
        parse_export_format("colmap", has_cameras=False, num_views=3)
    assert parse_export_format("colmap", has_cameras=False, num_views=1) == ("colmap",)
    disparity = Prediction(depth=np.ones((1, 4, 4), np.float32), depth_kind="disparity")
    with pytest.raises(InputError):
        export(disparity, tmp_path, "mini_npz-ply")
    with pytest.raises(InputError, match="'num_max_pts'"):
        export(scene, tmp_path, "mini_npz-glb", num_max_pts=10)
    with pytest.raises(InputError, match="'show_cameras' is not an option of 'ply'"):
        export(scene, tmp_path, "mini_npz-ply", ply={"show_cameras": False})
    assert list(tmp_path.iterdir()) == []  # nothing written: every check ran before the first file


def test_glb_also_writes_the_depth_pictures_and_the_thumbnail_as_upstream(scene, tmp_path):
    """Upstream's glb export writes depth_vis/0000.jpg... and scene.jpg (export_depth_vis=True by default), which
    its gallery shows as the scene's thumbnail."""
    from PIL import Image

    written = export(scene, tmp_path / "a", "glb")
    assert written["glb"] == [tmp_path / "a" / "scene.glb"]
    pictures = sorted(p.name for p in (tmp_path / "a" / "depth_vis").iterdir())
    assert pictures == ["0000.jpg", "0001.jpg", "0002.jpg"]
    thumbnail = tmp_path / "a" / "scene.jpg"
    assert thumbnail.read_bytes() == (tmp_path / "a" / "depth_vis" / "0000.jpg").read_bytes()
    with Image.open(thumbnail) as image:  # the processed image beside its depth
        assert image.format == "JPEG" and image.size == (2 * W, H)

    export(scene, tmp_path / "b", "glb", glb={"export_depth_vis": False})
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["scene.glb"]
