"""Camera pose and intrinsics from DA3's per-pixel ray maps (its ``use_ray_pose`` path), by weighted RANSAC."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from anydepth.errors import ShapeError
from anydepth.geometry._checks import check_image_size, check_tensor
from anydepth.geometry.cameras import affine_inverse, make_intrinsics, to_homogeneous

RAY_DIM = 6  # direction (3) then origin (3), world frame
DECOMPOSITIONS = ("ql", "qr")
# reprojection errors are computed for (views x iterations x rays) at once; views are chunked below this count
_SCORE_BUDGET = 1 << 24


def ray_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None
) -> Tensor:
    """Normalised coordinates of the cell centres of a ray map, the image spanning ``[-1, 1]``.

    Column ``j`` of ``width`` is at ``x = (2 j + 1) / width - 1``, row ``i`` at ``y = (2 i + 1) / height - 1``.

    Returns:
        (height, width, 2) as ``(x, y)``.

    Example:
        >>> ray_grid(1, 4)[0, :, 0]
        tensor([-0.7500, -0.2500,  0.2500,  0.7500])
    """
    y = torch.linspace(1.0 / height - 1.0, 1.0 - 1.0 / height, height, dtype=dtype, device=device)
    x = torch.linspace(1.0 / width - 1.0, 1.0 - 1.0 / width, width, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack((xx, yy), dim=-1)


def _weighted_homography(src: Tensor, dst: Tensor, weight: Tensor) -> Tensor:
    """Weighted DLT: the ``H`` (with ``H[2, 2] = 1``) minimising ``sum_i w_i |rows_i(H)|^2``.

    src, dst: (..., N, 2); weight: (..., N). Returns (..., 3, 3) with ``dst ~ H (src, 1)``.
    """
    w = weight.sqrt()[..., None]
    x, y = src[..., 0:1], src[..., 1:2]
    u, v = dst[..., 0:1], dst[..., 1:2]
    zeros = torch.zeros_like(x)
    rows_u = torch.cat((-x * w, -y * w, -w, zeros, zeros, zeros, x * u * w, y * u * w, u * w), dim=-1)
    rows_v = torch.cat((zeros, zeros, zeros, -x * w, -y * w, -w, x * v * w, y * v * w, v * w), dim=-1)
    system = torch.cat((rows_u, rows_v), dim=-2)  # (..., 2N, 9)
    # the thin SVD has the same right singular vectors; upstream's full one also builds a (2N, 2N) U
    null = torch.linalg.svd(system, full_matrices=False).Vh[..., -1, :]
    homography = null.reshape((*null.shape[:-1], 3, 3))
    return homography / homography[..., 2:3, 2:3]


def _split_rotation(matrix: Tensor, decomposition: str) -> Tuple[Tensor, Tensor]:
    """``matrix = Q T`` with ``Q`` orthogonal and ``T`` lower ("ql") or upper ("qr") triangular, ``diag(T) > 0``."""
    if decomposition == "ql":
        # QL through QR of the column-reversed matrix: A P = Q' R'  =>  A = (Q' P) (P R' P), P the reversal
        q, r = torch.linalg.qr(matrix.flip(-1))
        q, t = q.flip(-1), r.flip(-1).flip(-2)
    else:
        q, t = torch.linalg.qr(matrix)
    sign = torch.sign(torch.diagonal(t, dim1=-2, dim2=-1))
    return q * sign[..., None, :], t * sign[..., :, None]


def _limit_inliers(inlier: Tensor, weight: Tensor, max_inliers: int, generator: torch.Generator) -> Tensor:
    """At most ``max_inliers`` of the inliers of one view: a random subset of the most confident 95%."""
    count = int(inlier.sum())
    if count <= max_inliers:
        return inlier
    index = inlier.nonzero().squeeze(-1)
    order = torch.sort(weight[index], descending=True, stable=True).indices
    keep = max(int(count * 0.95), max_inliers)
    pick = torch.randperm(keep, generator=generator)[:max_inliers].to(index.device)
    limited = torch.zeros_like(inlier)
    limited[index[order[:keep]][pick]] = True
    return limited


def solve_ray_camera(
    rays: Tensor,
    confidence: Tensor,
    *,
    decomposition: str = "ql",
    reprojection_threshold: float = 0.2,
    num_iterations: int = 100,
    sample_ratio: float = 0.3,
    sample_size: int = 8,
    max_inliers: int = 8000,
    z_threshold: float = 1e-4,
    sample_groups: Optional[Tensor] = None,
    seed: int = 0,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Camera-to-world pose, focal lengths and principal point of each ray map, in normalised image units.

    A ray map holds, for each cell of a grid over the image, the world-frame direction ``d`` of the ray through
    the cell centre and the camera centre it starts from. With the image spanning ``[-1, 1]`` both ways
    (coordinates ``(x, y)``, :func:`ray_grid`), a pinhole camera gives ``d ~ R K^-1 (x, y, 1)``: the homography
    ``A = R K^-1`` maps cell coordinates to ``(d_x / d_z, d_y / d_z)``.

    The steps and constants are DA3's ``get_extrinsic_from_camray``:

    1. Rays with ``|d_z| <= z_threshold`` get weight 0 (in the fit and in the camera centre); the others map
       their cell's ``(x, y)`` to ``(d_x / d_z, d_y / d_z)``.
    2. RANSAC: ``num_iterations`` groups of ``sample_size`` rays are drawn from the ``max(sample_size,
       int(N * sample_ratio))`` most confident; each group gives a weighted-DLT homography; the one whose inliers
       (reprojection error ``< reprojection_threshold``) have the largest summed weight wins.
    3. Its inliers (at most ``max_inliers``: a random subset of the most confident 95% when there are more) are
       refit by weighted DLT; ``A = H / H[2, 2]``, negated when ``det(A) < 0``.
    4. ``A = Q T``; ``Q`` is the rotation, ``T`` (scaled to ``T[2, 2] = 1``) gives the intrinsics.
    5. The camera centre is the weighted mean of all ray origins.

    ``decomposition="ql"`` is DA3's: ``T`` lower triangular, focal ``1 / T[0, 0], 1 / T[1, 1]``, principal point
    ``T[2, 0] + 1, T[2, 1] + 1``. It is exact only for a principal point at the image centre: ``A = R K^-1`` with
    ``K^-1`` upper triangular, so an off-centre principal point tilts the rotation (3 to 4 degrees for one 4% of
    the width off centre), biases the focal and returns the principal point near the centre, on the wrong side.
    ``decomposition="qr"`` splits ``A = R U`` with ``U`` upper triangular, which recovers any pinhole camera
    exactly (principal point ``-U[0, 2] / U[0, 0] + 1``, ``-U[1, 2] / U[1, 1] + 1``); both agree for a centred
    principal point.

    Randomness: upstream draws the RANSAC groups and the inlier subset from torch's global generator. Here they
    come from a private CPU generator seeded with ``seed`` (so results repeat and the global generator is not
    touched), or the groups are given as ``sample_groups``. The groups are shared by all views, as upstream.

    Args:
        rays: (..., h, w, 6) ray maps: world direction (3), then origin (3).
        confidence: (..., h, w) non-negative weights (DA3's ``ray_conf``); not modified (upstream zeroes the
            caller's tensor in place where ``|d_z|`` is small).
        decomposition: "ql" (DA3) or "qr" (exact for off-centre principal points).
        reprojection_threshold: inlier threshold in normalised units.
        num_iterations: RANSAC groups.
        sample_ratio: fraction of the rays, by confidence, that groups are drawn from.
        sample_size: rays per group.
        max_inliers: most rays in the final fit.
        z_threshold: rays with ``|d_z|`` at most this are ignored.
        sample_groups: optional (num_iterations, sample_size) int64 positions into the confidence-sorted
            candidates (upstream's ``rand_sample_iters_idx``), to reproduce a given draw.
        seed: seed of the private generator.

    Returns:
        ``(cam_to_world (..., 4, 4), focal (..., 2), principal_point (..., 2))`` in float32 or float64 (half
        precision rays are solved in float32): focal lengths for an image
        2 units wide and high (pixels: ``fx = focal_x * W / 2``), principal point in ``[0, 2]`` with the centre
        at 1 (pixels: ``cx = pp_x * W / 2``).
    """
    check_tensor(rays, "rays", (None, None, RAY_DIM))
    check_tensor(confidence, "confidence", (None, None))
    if confidence.shape != rays.shape[:-1]:
        raise ShapeError(
            f"confidence must have shape {tuple(rays.shape[:-1])} to match rays, got {tuple(confidence.shape)}"
        )
    if decomposition not in DECOMPOSITIONS:
        raise ValueError(f"decomposition must be one of {DECOMPOSITIONS}, not {decomposition!r}")
    h, w = rays.shape[-3:-1]
    N = h * w
    if sample_size > N:
        raise ShapeError(f"a ray map needs at least {sample_size} rays, got {h}x{w}")
    batch = rays.shape[:-3]
    if rays.dtype not in (torch.float32, torch.float64):  # half precision has no SVD or QR
        rays = rays.float()
    dtype, device = rays.dtype, rays.device
    rays = rays.reshape(-1, N, RAY_DIM)
    directions, origins = rays[..., :3], rays[..., 3:]
    valid = directions[..., 2].abs() > z_threshold
    weight = torch.where(valid, confidence.reshape(-1, N).to(dtype), torch.zeros((), dtype=dtype, device=device))
    src = ray_grid(h, w, dtype=dtype, device=device).reshape(N, 2)
    dst = torch.where(valid[..., None], directions[..., :2] / directions[..., 2:3], directions[..., :2])

    generator = torch.Generator().manual_seed(int(seed))
    num_candidates = max(sample_size, int(N * sample_ratio))
    if sample_groups is None:
        sample_groups = torch.stack(
            [torch.randperm(num_candidates, generator=generator)[:sample_size] for _ in range(num_iterations)]
        )
    else:
        check_tensor(sample_groups, "sample_groups", (None, None), floating=False)
        if sample_groups.ndim != 2 or int(sample_groups.max()) >= num_candidates or int(sample_groups.min()) < 0:
            raise ShapeError(
                f"sample_groups must be (iterations, group size) positions below {num_candidates}, "
                f"got shape {tuple(sample_groups.shape)}"
            )
    sample_groups = sample_groups.to(device=device, dtype=torch.long)
    candidates = torch.sort(weight, dim=-1, descending=True, stable=True).indices[:, :num_candidates]
    src_h = to_homogeneous(src)  # (N, 3)

    views = rays.shape[0]
    chunk = max(1, _SCORE_BUDGET // (sample_groups.shape[0] * N))
    homographies = []
    for start in range(0, views, chunk):
        sl = slice(start, min(start + chunk, views))
        picked = candidates[sl][:, sample_groups]  # (C, I, k)
        C = picked.shape[0]
        groups_h = _weighted_homography(
            src[picked],
            torch.gather(dst[sl], 1, picked.reshape(C, -1, 1).expand(-1, -1, 2)).reshape((*picked.shape, 2)),
            torch.gather(weight[sl], 1, picked.reshape(C, -1)).reshape(picked.shape),
        )  # (C, I, 3, 3)
        projected = src_h @ groups_h.transpose(-1, -2)  # (C, I, N, 3)
        error = (projected[..., :2] / projected[..., 2:3] - dst[sl, None]).pow(2).sum(-1).sqrt()
        inlier = error < reprojection_threshold  # (C, I, N)
        score = (inlier * weight[sl, None]).sum(-1)
        best = inlier[torch.arange(C, device=device), score.argmax(-1)]  # (C, N)
        best = torch.stack([_limit_inliers(best[i], weight[sl][i], max_inliers, generator) for i in range(C)])
        # a weighted fit over all rays with the outliers at weight 0 equals the fit over the inliers alone
        homographies.append(_weighted_homography(src.expand(C, N, 2), dst[sl], weight[sl] * best))
    homography = torch.cat(homographies)  # (V, 3, 3)
    homography = torch.where(torch.linalg.det(homography)[:, None, None] < 0, -homography, homography)

    rotation, triangular = _split_rotation(homography, decomposition)
    triangular = triangular / triangular[:, 2:3, 2:3]
    inv_focal = torch.stack((triangular[:, 0, 0], triangular[:, 1, 1]), dim=-1)
    if decomposition == "ql":
        centre = torch.stack((triangular[:, 2, 0], triangular[:, 2, 1]), dim=-1)
    else:
        centre = -torch.stack((triangular[:, 0, 2], triangular[:, 1, 2]), dim=-1) / inv_focal
    translation = (origins * weight[..., None]).sum(1) / weight.sum(-1, keepdim=True)

    cam_to_world = torch.zeros(views, 4, 4, dtype=dtype, device=device)
    cam_to_world[:, :3, :3] = rotation
    cam_to_world[:, :3, 3] = translation
    cam_to_world[:, 3, 3] = 1.0
    return (
        cam_to_world.reshape((*batch, 4, 4)),
        (1.0 / inv_focal).reshape((*batch, 2)),
        (centre + 1.0).reshape((*batch, 2)),
    )


def camera_from_rays(rays: Tensor, confidence: Tensor, image_size: Sequence[int], **options) -> Tuple[Tensor, Tensor]:
    """World-to-camera extrinsics and pixel intrinsics from ray maps, as DA3 returns them with ``use_ray_pose``.

    Args:
        rays: (..., h, w, 6) ray maps (world direction, then origin); their grid need not match the image.
        confidence: (..., h, w) weights.
        image_size: ``(H, W)`` of the network input, which the intrinsics are for.
        **options: passed to :func:`solve_ray_camera` (``decomposition``, ``seed``, ``sample_groups``, ...).

    Returns:
        ``(extrinsics (..., 3, 4) world-to-camera, intrinsics (..., 3, 3))`` with ``fx = focal_x W / 2``,
        ``fy = focal_y H / 2``, ``cx = pp_x W / 2``, ``cy = pp_y H / 2``.
    """
    H, W = check_image_size(image_size)
    cam_to_world, focal, principal_point = solve_ray_camera(rays, confidence, **options)
    half = torch.tensor([W / 2, H / 2], dtype=focal.dtype, device=focal.device)
    intrinsics = make_intrinsics(focal * half, principal_point * half)
    return affine_inverse(cam_to_world)[..., :3, :], intrinsics
