"""Make the Depth Anything 3 camera and geometry parity fixtures by running the UPSTREAM code (float32, CPU).

How to regenerate
-----------------
Run from the repository root, in the side environment that holds the upstream package (never in the project's
own venv; this script does not import ``anydepth``)::

    /work/upvenv/bin/python scripts/make_da3_camera_fixtures.py

That environment is CPU-only Python 3.11 with torch 2.13, numpy < 2 and ``depth-anything-3==0.1.1`` (import
name ``depth_anything_3``; its ``einops``, ``addict`` and ``omegaconf`` come with it). It takes about a minute and
3 GB of memory (the giant camera encoder is built at full size), and overwrites, in ``tests/fixtures/``:

- ``da3_camera.npz``: inputs and upstream outputs, ``<case>__<name>`` per array, plus ``cases_json`` (the cases
  and their parameters) and ``meta_json`` (versions). Cases:

  * ``quat_to_mat``, ``mat_to_quat``, ``affine_inverse``: ``model/utils/transform.py`` / ``utils/geometry.py``.
  * ``encode``, ``decode``: ``extri_intri_to_pose_encoding`` and ``pose_encoding_to_extri_intri``.
  * ``ray_<name>``: ``get_extrinsic_from_camray`` on synthetic ray maps with confidences (``c2w``, ``focal``,
    ``pp``) and ``DepthAnything3Net._process_ray_pose_estimation`` (``extrinsics``, ``intrinsics``). Upstream
    draws its RANSAC groups from torch's global generator; they are recorded (``groups``) so that the tests
    can pass the same ones. ``ray_large`` has 8,064 rays: more inliers than upstream's cap of 8,000, where
    it keeps the 8,000 most confident (the random subset it then draws is all of them).
  * ``align``: ``utils/alignment.py`` helpers; ``nested_<name>``: ``NestedDepthAnything3Net``'s metric scaling,
    alignment and sky handling; ``mono_sky``: ``DepthAnything3Net._process_mono_sky_estimation``. All have
    fewer than 100,000 pixels, so upstream's random subsampling before quantiles does not happen.
  * ``cam_dec_<size>`` / ``cam_enc_<size>`` for small, base, large, giant: the modules' outputs. Their weights
    come from ``tests/helpers/random_weights.py`` (seed in ``cases_json``) and the decoder's input tokens from
    ``numpy.random.RandomState(token_seed).standard_normal(shape)`` in float32; neither is stored.

- ``da3_camera_keys.json``: ``{"cam_dec": {size: {key: shape}}, "cam_enc": {...}}`` of the upstream modules.

The output is deterministic: rerunning on the same versions reproduces the same arrays.
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from addict import Dict  # noqa: E402
from depth_anything_3.model.cam_dec import CameraDec  # noqa: E402
from depth_anything_3.model.cam_enc import CameraEnc  # noqa: E402
from depth_anything_3.model.da3 import DepthAnything3Net, NestedDepthAnything3Net  # noqa: E402
from depth_anything_3.model.utils import transform as up_transform  # noqa: E402
from depth_anything_3.utils import alignment as up_alignment  # noqa: E402
from depth_anything_3.utils import geometry as up_geometry  # noqa: E402
from depth_anything_3.utils import ray_utils  # noqa: E402
from tests.helpers.random_weights import random_state_dict, shapes_of, write_key_lists  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SIZES = {"small": (384, 768), "base": (768, 1536), "large": (1024, 2048), "giant": (1536, 3072)}  # enc, dec
DEC_SEED, ENC_SEED = 11, 12
IMAGE_SIZE = (280, 378)  # (H, W) of the network input the cameras refer to


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def n(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32) if x.is_floating_point() else x.detach().cpu().numpy()


def quat_to_rotation(q: np.ndarray) -> np.ndarray:
    """(..., 4) xyzw -> (..., 3, 3) in float64, own formula (the inputs only need to be rotations)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return R.reshape((*q.shape[:-1], 3, 3))


def small_rotations(rs: np.random.RandomState, shape, spread: float) -> np.ndarray:
    """Rotations of moderate angle: quaternions (spread * normal, 1), normalised."""
    q = np.concatenate([spread * rs.standard_normal((*shape, 3)), np.ones((*shape, 1))], -1)
    return quat_to_rotation(q)


def pose_matrices(rs: np.random.RandomState, shape, spread: float = 0.3) -> np.ndarray:
    """(..., 4, 4) rigid transforms with moderate rotations and translations of order 1."""
    T = np.zeros((*shape, 4, 4))
    T[..., :3, :3] = small_rotations(rs, shape, spread)
    T[..., :3, 3] = rs.standard_normal((*shape, 3))
    T[..., 3, 3] = 1.0
    return T


def pixel_intrinsics(rs: np.random.RandomState, shape, image_size) -> np.ndarray:
    H, W = image_size
    K = np.zeros((*shape, 3, 3))
    K[..., 0, 0] = rs.uniform(0.6, 1.4, size=shape) * W
    K[..., 1, 1] = K[..., 0, 0] * rs.uniform(0.9, 1.1, size=shape)
    K[..., 0, 2] = W / 2 + rs.uniform(-5, 5, size=shape)
    K[..., 1, 2] = H / 2 + rs.uniform(-5, 5, size=shape)
    K[..., 2, 2] = 1.0
    return K


# ------------------------------------------------------------------------------------------------ functions


def make_rotation_cases(arrays: dict, cases: list) -> None:
    rs = np.random.RandomState(1)
    q = rs.standard_normal((32, 4)) * rs.uniform(0.5, 2.0, size=(32, 1))  # not unit, both signs of w
    arrays["quat_to_mat__q"] = q.astype(np.float32)
    arrays["quat_to_mat__R"] = n(up_transform.quat_to_mat(t(q)))
    cases.append({"name": "quat_to_mat", "kind": "function"})

    special = [
        np.eye(3),
        np.diag([1.0, -1.0, -1.0]),  # 180 degrees about x, y, z: w = 0
        np.diag([-1.0, 1.0, -1.0]),
        np.diag([-1.0, -1.0, 1.0]),
        quat_to_rotation(np.array([1.0, 1.0, 0.0, 0.0])),  # 180 degrees about (1, 1, 0)
        quat_to_rotation(np.array([0.0, 0.0, 1.0, 1.0])),  # 90 degrees about z
        quat_to_rotation(np.array([0.3, -0.2, 0.9, 1e-3])),  # just short of 180 degrees
        quat_to_rotation(np.array([0.3, -0.2, 0.9, -1e-3])),
    ]
    random = quat_to_rotation(rs.standard_normal((32, 4)))
    R = np.concatenate([np.stack(special), random]).astype(np.float32)
    arrays["mat_to_quat__R"] = R
    arrays["mat_to_quat__q"] = n(up_transform.mat_to_quat(t(R)))
    cases.append({"name": "mat_to_quat", "kind": "function", "special": len(special)})

    A = pose_matrices(rs, (2, 3))
    arrays["affine_inverse__A"] = A.astype(np.float32)
    arrays["affine_inverse__inv"] = n(up_geometry.affine_inverse(t(A)))
    cases.append({"name": "affine_inverse", "kind": "function"})


def make_pose_encoding_cases(arrays: dict, cases: list) -> None:
    rs = np.random.RandomState(2)
    c2w = pose_matrices(rs, (2, 3))
    K = pixel_intrinsics(rs, (2, 3), IMAGE_SIZE)
    arrays["encode__c2w"] = c2w.astype(np.float32)
    arrays["encode__K"] = K.astype(np.float32)
    arrays["encode__enc"] = n(up_transform.extri_intri_to_pose_encoding(t(c2w), t(K), IMAGE_SIZE))
    cases.append({"name": "encode", "kind": "function", "image_size": list(IMAGE_SIZE)})

    enc = np.concatenate(
        [
            rs.standard_normal((2, 3, 3)),
            rs.standard_normal((2, 3, 4)) * rs.uniform(0.5, 2.0, size=(2, 3, 1)),
            rs.uniform(0.5, 1.6, size=(2, 3, 2)),
        ],
        -1,
    )
    enc[1, 2, 7:] = 0.0  # the decoder's ReLU can output a zero field of view: tan is floored at 1e-6
    arrays["decode__enc"] = enc.astype(np.float32)
    c2w_out, K_out = up_transform.pose_encoding_to_extri_intri(t(enc), IMAGE_SIZE)
    arrays["decode__c2w"] = n(c2w_out)
    arrays["decode__K"] = n(K_out)
    cases.append({"name": "decode", "kind": "function", "image_size": list(IMAGE_SIZE)})


def synthetic_rays(rs, shape, grid, focal, centre, noise=0.0, outliers=0.0, flat=0, origin_noise=0.0):
    """Ray maps (..., h, w, 6) of pinhole cameras in DA3's normalised image (spanning [-1, 1]).

    Returns the rays, the float64 cameras (c2w rotation, centre) and the indices of the rays made flat.
    """
    h, w = grid
    R = small_rotations(rs, shape, 0.25)
    C = rs.standard_normal((*shape, 3))
    x = (2 * np.arange(w) + 1) / w - 1
    y = (2 * np.arange(h) + 1) / h - 1
    xx, yy = np.meshgrid(x, y)  # (h, w)
    f = np.asarray(focal, dtype=np.float64).reshape((*shape, 1, 1, 2))
    c = np.asarray(centre, dtype=np.float64).reshape((*shape, 1, 1, 2))
    cam = np.stack([(xx - c[..., 0]) / f[..., 0], (yy - c[..., 1]) / f[..., 1], np.ones((*shape, h, w))], -1)
    cam = cam + noise * rs.standard_normal(cam.shape) * np.array([1.0, 1.0, 0.0])
    d = np.einsum("...ij,...hwj->...hwi", R, cam)
    d = d * rs.uniform(0.5, 2.0, size=(*d.shape[:-1], 1))  # directions need not be unit
    if outliers > 0:
        bad = rs.uniform(size=d.shape[:-1]) < outliers
        d[bad] = rs.standard_normal((int(bad.sum()), 3))
    o = np.broadcast_to(C[..., None, None, :], d.shape).copy()
    o = o + origin_noise * rs.standard_normal(o.shape)
    flat_index = []
    if flat:
        flat_shape = d.shape[:-1]
        for k in rs.choice(int(np.prod(flat_shape)), size=flat, replace=False):
            i = np.unravel_index(k, flat_shape)
            d[(*i, 2)] = 0.0  # |d_z| below DA3's threshold: the ray is ignored
            o[i] += 100.0  # and would move the camera centre if it were not
            flat_index.append(int(k))
    return np.concatenate([d, o], -1), R, C


RAY_CASES = [
    # name, (B, S), (h, w), focal (B, S, 2) spec, centre offset, noise, outliers, flat rays, origin noise
    ("ray_exact", (1, 2), (12, 16), 0.0, 0.0, 0.0, 0, 0.0),
    ("ray_noisy", (2, 2), (24, 32), 0.0, 0.003, 0.15, 6, 0.01),
    ("ray_offcentre", (1, 2), (12, 16), 0.08, 0.0, 0.0, 0, 0.0),
    ("ray_large", (1, 1), (72, 112), 0.0, 0.001, 0.0, 0, 0.0),
]


def make_ray_cases(arrays: dict, cases: list) -> None:
    rs = np.random.RandomState(3)
    recorded = {}
    original = ray_utils.get_params_for_ransac

    def recording(N, device):
        params = original(N, device)
        recorded["groups"] = params[3].clone()
        return params

    ray_utils.get_params_for_ransac = recording
    try:
        for seed, (name, shape, grid, offset, noise, outliers, flat, origin_noise) in enumerate(RAY_CASES):
            focal = rs.uniform(0.8, 2.0, size=(*shape, 2))
            centre = np.zeros((*shape, 2))
            centre[..., 0], centre[..., 1] = offset, -0.6 * offset
            rays, R, C = synthetic_rays(rs, shape, grid, focal, centre, noise, outliers, flat, origin_noise)
            conf = rs.uniform(0.5, 3.0, size=rays.shape[:-1])
            prefix = name + "__"
            arrays[prefix + "rays"] = rays.astype(np.float32)
            arrays[prefix + "conf"] = conf.astype(np.float32)
            arrays[prefix + "true_R"] = R.astype(np.float32)
            arrays[prefix + "true_C"] = C.astype(np.float32)
            arrays[prefix + "true_focal"] = focal.astype(np.float32)
            arrays[prefix + "true_pp"] = (centre + 1.0).astype(np.float32)

            torch.manual_seed(1000 + seed)
            c2w, f, pp = ray_utils.get_extrinsic_from_camray(t(rays), t(conf), grid[0], grid[1])
            groups = recorded.pop("groups")
            arrays[prefix + "groups"] = groups.numpy().astype(np.int64)
            arrays[prefix + "c2w"], arrays[prefix + "focal"], arrays[prefix + "pp"] = n(c2w), n(f), n(pp)

            torch.manual_seed(1000 + seed)  # the same draws again, through the network's own method
            out = DepthAnything3Net._process_ray_pose_estimation(
                None, Dict(ray=t(rays), ray_conf=t(conf)), IMAGE_SIZE[0], IMAGE_SIZE[1]
            )
            assert torch.equal(recorded.pop("groups"), groups)
            arrays[prefix + "extrinsics"], arrays[prefix + "intrinsics"] = n(out.extrinsics), n(out.intrinsics)
            cases.append(
                {
                    "name": name,
                    "kind": "ray",
                    "views": list(shape),
                    "grid": list(grid),
                    "noise": noise,
                    "outliers": outliers,
                    "flat_rays": flat,
                    "principal_offset": offset,
                    "image_size": list(IMAGE_SIZE),
                }
            )
    finally:
        ray_utils.get_params_for_ransac = original


def make_alignment_cases(arrays: dict, cases: list) -> None:
    rs = np.random.RandomState(4)
    B, S, H, W = 1, 2, 12, 16
    yy = np.arange(H)[:, None] * np.ones((1, W))
    for name, metric_gain in (("nested_near", 1.0), ("nested_far", 100.0)):
        depth = rs.uniform(0.5, 4.0, size=(B, S, H, W))
        depth[..., 0, :3] = 0.0  # fails the depth > 1e-3 test
        conf = rs.uniform(1.0, 5.0, size=(B, S, H, W))
        sky = np.broadcast_to(np.where(yy < 3, 0.9, 0.05), (B, S, H, W)) + rs.uniform(-0.04, 0.04, size=(B, S, H, W))
        K = pixel_intrinsics(rs, (B, S), (H * 30, W * 30))
        metric = metric_gain * depth * 300.0 / K[..., :1, :1].mean(-1)[..., None] * 0.7
        metric = metric * rs.uniform(0.95, 1.05, size=metric.shape)
        metric[..., 5, 4:6] = 0.0  # fails the metric > 1e-2 test
        ext = pose_matrices(rs, (B, S))[..., :3, :]
        prefix = name + "__"
        for key, value in (("depth", depth), ("conf", conf), ("sky", sky), ("K", K), ("metric", metric), ("ext", ext)):
            arrays[prefix + key] = value.astype(np.float32)
        output = Dict(depth=t(depth), depth_conf=t(conf), extrinsics=t(ext), intrinsics=t(K))
        metric_output = Dict(depth=t(metric), sky=t(sky))
        output = NestedDepthAnything3Net._apply_metric_scaling(None, output, metric_output)
        output = NestedDepthAnything3Net._apply_depth_alignment(None, output, metric_output)
        output = NestedDepthAnything3Net._handle_sky_regions(None, output, metric_output)
        arrays[prefix + "out_depth"] = n(output.depth)
        arrays[prefix + "out_conf"] = n(output.depth_conf)
        arrays[prefix + "out_ext"] = n(output.extrinsics)
        arrays[prefix + "scale"] = np.float32(output.scale_factor)
        cases.append({"name": name, "kind": "nested"})

    # the helpers one by one, on the first nested case's inputs
    p = "nested_near__"
    depth, conf, sky, K, metric = (t(arrays[p + k]) for k in ("depth", "conf", "sky", "K", "metric"))
    scaled = up_alignment.apply_metric_scaling(metric, K)
    non_sky = up_alignment.compute_sky_mask(sky, threshold=0.3)
    median = torch.quantile(up_alignment.sample_tensor_for_quantile(conf[non_sky], max_samples=100000), 0.5)
    mask = up_alignment.compute_alignment_mask(conf, non_sky, depth, scaled, median)
    scale = up_alignment.least_squares_scale_scalar(scaled[mask], depth[mask])
    filled, filled_conf = up_alignment.set_sky_regions_to_max_depth(depth, conf, non_sky, max_depth=7.5)
    arrays["align__metric_scaled"] = n(scaled)
    arrays["align__non_sky"] = n(non_sky)
    arrays["align__median_conf"] = n(median)
    arrays["align__mask"] = n(mask)
    arrays["align__scale"] = n(scale)
    arrays["align__filled"] = n(filled)
    arrays["align__filled_conf"] = n(filled_conf)
    cases.append({"name": "align", "kind": "function", "inputs": "nested_near", "sky_depth": 7.5})

    out = DepthAnything3Net._process_mono_sky_estimation(None, Dict(depth=depth.clone(), sky=sky))
    arrays["mono_sky__depth"] = n(out.depth)
    cases.append({"name": "mono_sky", "kind": "function", "inputs": "nested_near"})


# -------------------------------------------------------------------------------------------------- modules


def make_module_cases(arrays: dict, cases: list) -> dict:
    keys = {"cam_dec": {}, "cam_enc": {}}
    rs = np.random.RandomState(5)
    ext = pose_matrices(rs, (1, 4)).astype(np.float32)
    K = pixel_intrinsics(rs, (1, 4), IMAGE_SIZE).astype(np.float32)
    arrays["cam_enc__ext"], arrays["cam_enc__K"] = ext, K
    for i, (size, (enc_dim, dec_dim)) in enumerate(SIZES.items()):
        dec = CameraDec(dim_in=dec_dim)
        keys["cam_dec"][size] = shapes_of(dec.state_dict())
        dec.load_state_dict(random_state_dict(keys["cam_dec"][size], DEC_SEED), strict=True)
        token_seed = 200 + i
        tokens = np.random.RandomState(token_seed).standard_normal((2, 3, dec_dim)).astype(np.float32)
        with torch.no_grad():
            arrays[f"cam_dec_{size}__out"] = n(dec.eval()(t(tokens)))
        cases.append({"name": f"cam_dec_{size}", "kind": "cam_dec", "size": size, "dim_in": dec_dim,
                      "seed": DEC_SEED, "token_seed": token_seed, "token_shape": [2, 3, dec_dim]})  # fmt: skip
        del dec

        enc = CameraEnc(dim_out=enc_dim)
        keys["cam_enc"][size] = shapes_of(enc.state_dict())
        enc.load_state_dict(random_state_dict(keys["cam_enc"][size], ENC_SEED), strict=True)
        with torch.no_grad():
            arrays[f"cam_enc_{size}__out"] = n(enc.eval()(t(ext), t(K), IMAGE_SIZE))
        cases.append({"name": f"cam_enc_{size}", "kind": "cam_enc", "size": size, "dim_out": enc_dim,
                      "seed": ENC_SEED, "image_size": list(IMAGE_SIZE)})  # fmt: skip
        del enc
    return keys


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    arrays: dict = {}
    cases: list = []
    make_rotation_cases(arrays, cases)
    make_pose_encoding_cases(arrays, cases)
    make_ray_cases(arrays, cases)
    make_alignment_cases(arrays, cases)
    keys = make_module_cases(arrays, cases)
    from importlib.metadata import version

    meta = {
        "depth_anything_3": version("depth-anything-3"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for name, value in arrays.items():
        assert np.all(np.isfinite(value)), name
    FIXTURES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        FIXTURES / "da3_camera.npz",
        cases_json=np.array(json.dumps(cases)),
        meta_json=np.array(json.dumps(meta)),
        **arrays,
    )
    write_key_lists(FIXTURES / "da3_camera_keys.json", keys)
    size = (FIXTURES / "da3_camera.npz").stat().st_size
    print(f"wrote {len(arrays)} arrays, {len(cases)} cases, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
