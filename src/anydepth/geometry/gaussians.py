"""3D Gaussian splatting on any torch device: EWA projection, 16x16 tile binning, front-to-back compositing.

gsplat renders on CUDA only (its CPU pieces stop at projection); this is a renderer in plain PyTorch that follows
gsplat's reference formulas and thresholds, so that a machine without a GPU can still look at DA3's Gaussians. It
runs on CPU and CUDA tensors alike. The numbers it keeps from gsplat (and 3DGS):

- the 2D covariance gets ``LOW_PASS`` (0.3 px^2) added to its diagonal, a low-pass filter that keeps sub-pixel
  Gaussians visible;
- the screen radius is ``ceil(3 sqrt(lambda_max))`` of that covariance; Gaussians nearer than ``near_plane`` or
  farther than ``far_plane``, with a degenerate covariance, or whose square of that radius misses the image are
  culled;
- per pixel, ``alpha = min(ALPHA_MAX, opacity * exp(-sigma))``; terms with ``sigma < 0`` or
  ``alpha < ALPHA_MIN`` are skipped; compositing stops before the Gaussian that would bring the transmittance to
  ``TRANSMITTANCE_MIN`` or below (that one is not added);
- colours from spherical harmonics get ``+ 0.5`` and are clamped at 0, as gsplat's ``rasterization`` does.

Work is bounded: projection runs over chunks of Gaussians and compositing over runs of tiles of a bounded number
of pixel-Gaussian terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from anydepth.errors import ShapeError
from anydepth.geometry._checks import check_tensor

ALPHA_MAX = 0.999
"""gsplat's clamp of a single Gaussian's alpha (the original 3DGS rasteriser clamps at 0.99)."""
ALPHA_MIN = 1.0 / 255.0
"""Contributions below this alpha are skipped (gsplat and 3DGS)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops before the Gaussian that would take its transmittance to this or below."""
LOW_PASS = 0.3
"""Added to the diagonal of every 2D covariance (``eps2d`` in gsplat), in square pixels."""
TILE_SIZE = 16
SH_C0 = 0.28209479177387814

PROJECTION_CHUNK = 1 << 20
"""Gaussians projected at once (bounds the memory of the per-Gaussian 3x3 products)."""
COMPOSITE_BUDGET = 1 << 21
"""Pixel-Gaussian terms evaluated at once while compositing (a run of whole tiles; about 100 bytes each)."""
DEPTH_CHUNK = 1 << 17
"""Gaussians composited per front-to-back chunk; tiles saturated by the chunks in front skip the rest."""


def quaternion_scale_to_covariance(quaternions: Tensor, scales: Tensor) -> Tensor:
    """3D covariances ``R S S^T R^T`` from quaternions and axis lengths (gsplat's ``quat_scale_to_covar``).

    Args:
        quaternions: (..., 4) in (w, x, y, z) order, as gsplat reads them; normalised here.
        scales: (..., 3) standard deviations along the rotated axes.

    Returns:
        (..., 3, 3) symmetric covariances.

    Example:
        >>> q = torch.tensor([1.0, 0.0, 0.0, 0.0])
        >>> quaternion_scale_to_covariance(q, torch.tensor([1.0, 2.0, 3.0])).diagonal()
        tensor([1., 4., 9.])
    """
    check_tensor(quaternions, "quaternions", (4,))
    check_tensor(scales, "scales", (3,))
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    rotation = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quaternions.shape[:-1], 3, 3)  # fmt: skip
    m = rotation * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def sh_basis(degree: int, directions: Tensor) -> Tensor:
    """Real spherical-harmonic basis of the 3DGS convention (gsplat's ordering and signs) at unit directions.

    Args:
        degree: 0 to 3.
        directions: (..., 3) unit vectors.

    Returns:
        (..., (degree + 1) ** 2).
    """
    if not 0 <= degree <= 3:
        raise ShapeError(f"spherical-harmonic degree must be 0 to 3, got {degree}")
    x, y, z = directions.unbind(-1)
    terms = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        c1 = 0.4886025119029199
        terms += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    return torch.stack(terms, dim=-1)


def sh_colors(harmonics: Tensor, directions: Tensor, degree: int) -> Tensor:
    """RGB of Gaussians seen along ``directions``: the SH expansion up to ``degree``, + 0.5, clamped at 0.

    Args:
        harmonics: (N, 3, K) coefficients per colour channel (our Gaussians' layout), K >= (degree + 1) ** 2;
            higher coefficients are ignored.
        directions: (N, 3) from the camera centre to the Gaussian (normalised here).
        degree: how many bands to use.

    Returns:
        (N, 3).
    """
    count = (degree + 1) ** 2
    if harmonics.shape[-1] < count:
        raise ShapeError(f"sh_degree {degree} needs {count} coefficients, the Gaussians have {harmonics.shape[-1]}")
    basis = sh_basis(degree, F.normalize(directions, dim=-1))
    return ((harmonics[..., :count] * basis[:, None, :]).sum(-1) + 0.5).clamp_min(0.0)


@dataclass
class ProjectedGaussians:
    """The Gaussians that one camera sees, on its image plane.

    Attributes:
        indices: (M,) positions in the input of the visible Gaussians.
        means2d: (M, 2) pixel coordinates (x, y) of the centres (pixel centres at +0.5).
        conics: (M, 3) the inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy.
        depths: (M,) camera z of the centres.
        radii: (M,) screen radii in pixels, > 0.
    """

    indices: Tensor
    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def project_gaussians(
    means: Tensor,
    covariances: Tensor,
    world_to_camera: Tensor,
    intrinsics: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    low_pass: float = LOW_PASS,
) -> ProjectedGaussians:
    """EWA projection of 3D Gaussians into one pinhole camera, keeping the visible ones (gsplat's formulas).

    The Jacobian of the perspective map is taken at the centre, with ``x/z`` and ``y/z`` clamped to 1.3 times the
    half field of view, as gsplat does, so that Gaussians far off screen do not blow up.

    Args:
        means: (N, 3) world centres.
        covariances: (N, 3, 3) world covariances.
        world_to_camera: (3|4, 4) OpenCV world-to-camera.
        intrinsics: (3, 3) pixel intrinsics.
        width, height: image size in pixels.
        near_plane, far_plane: z range kept.
        low_pass: added to the 2D covariance's diagonal.

    Returns:
        :class:`ProjectedGaussians` of the visible ones, in input order.
    """
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    parts = []
    for start in range(0, means.shape[0], PROJECTION_CHUNK):
        stop = min(start + PROJECTION_CHUNK, means.shape[0])
        cam = means[start:stop] @ rotation.T + translation  # (n, 3)
        z = cam[:, 2]
        in_range = (z > near_plane) & (z < far_plane)
        index = torch.nonzero(in_range).squeeze(1)
        cam, z = cam[index], z[index]
        cov = rotation @ covariances[start:stop][index] @ rotation.T  # (m, 3, 3) camera covariances
        tx = z * torch.clamp(cam[:, 0] / z, min=-lim_x_neg, max=lim_x_pos)
        ty = z * torch.clamp(cam[:, 1] / z, min=-lim_y_neg, max=lim_y_pos)
        zeros = torch.zeros_like(z)
        jacobian = [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)]
        jacobian = torch.stack(jacobian, dim=-1).reshape(-1, 2, 3)
        cov2d = jacobian @ cov @ jacobian.transpose(-1, -2)
        a = cov2d[:, 0, 0] + low_pass
        b = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
        c = cov2d[:, 1, 1] + low_pass
        det = a * c - b * b
        mid = 0.5 * (a + c)
        radius = torch.ceil(3.0 * torch.sqrt(mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.01))))
        means2d = torch.stack([fx * cam[:, 0] / z + cx, fy * cam[:, 1] / z + cy], dim=-1)
        visible = (
            (det > 0)
            & (means2d[:, 0] + radius > 0)
            & (means2d[:, 0] - radius < width)
            & (means2d[:, 1] + radius > 0)
            & (means2d[:, 1] - radius < height)
        )
        keep = torch.nonzero(visible).squeeze(1)
        det = det[keep]
        conics = torch.stack([c[keep] / det, -b[keep] / det, a[keep] / det], dim=-1)
        parts.append((index[keep] + start, means2d[keep], conics, z[keep], radius[keep]))
    if not parts:
        empty = means.new_zeros((0,))
        return ProjectedGaussians(empty.long(), means.new_zeros((0, 2)), means.new_zeros((0, 3)), empty, empty)
    return ProjectedGaussians(*(torch.cat(values) for values in zip(*parts)))


@dataclass
class RenderedViews:
    """Renders of V cameras.

    Attributes:
        colors: (V, H, W, 3) RGB, the background composited behind.
        depth: (V, H, W) expected z-depth: the alpha-weighted mean of the Gaussians' centre depths, divided by
            the accumulated alpha (gsplat's "ED"); 0 where nothing was hit.
        alpha: (V, H, W) accumulated opacity, 1 - final transmittance.
    """

    colors: Tensor
    depth: Tensor
    alpha: Tensor


def render_gaussians(
    means: Tensor,
    quaternions: Tensor,
    scales: Tensor,
    opacities: Tensor,
    harmonics: Tensor,
    world_to_camera: Tensor,
    intrinsics: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    background: Optional[Tensor] = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    tile_size: int = TILE_SIZE,
    budget: int = COMPOSITE_BUDGET,
    depth_chunk: int = DEPTH_CHUNK,
) -> RenderedViews:
    """Render 3D Gaussians from V pinhole cameras (what gsplat's ``rasterization`` gives in "RGB+ED" mode).

    Args:
        means: (N, 3) world centres.
        quaternions: (N, 4) rotations, (w, x, y, z) as gsplat reads them.
        scales: (N, 3) axis standard deviations (not logarithms).
        opacities: (N,) in [0, 1] (not logits).
        harmonics: (N, 3, K) SH coefficients per colour channel, or (N, 3) plain RGB colours.
        world_to_camera: (V, 3|4, 4) OpenCV world-to-camera.
        intrinsics: (V, 3, 3) pixel intrinsics for ``width`` x ``height``.
        width, height: output size in pixels.
        sh_degree: SH bands to evaluate; None uses all that ``harmonics`` holds (ignored for plain colours).
        background: (3,) or (V, 3) colour behind the Gaussians; black if None.
        near_plane, far_plane: camera z range rendered.
        tile_size: side of the square tiles Gaussians are binned into.
        budget: pixel-Gaussian terms composited at once (bounds the memory; the image does not depend on it).
        depth_chunk: Gaussians composited per front-to-back chunk (the image does not depend on it either).

    Returns:
        :class:`RenderedViews` in float32 on the device of ``means``.
    """
    check_tensor(means, "means", (3,))
    N = means.shape[0]
    for name, value, trailing in (
        ("quaternions", quaternions, (4,)), ("scales", scales, (3,)), ("opacities", opacities, ()),
    ):  # fmt: skip
        check_tensor(value, name, trailing, min_ndim=len(trailing) + 1)
        if value.shape[0] != N or value.dim() != len(trailing) + 1:
            raise ShapeError(f"{name} must have {N} rows like means, got shape {tuple(value.shape)}")
    if harmonics.shape[:2] != (N, 3) or harmonics.dim() not in (2, 3):
        raise ShapeError(f"harmonics must be (N, 3, K) or (N, 3) with N = {N}, got {tuple(harmonics.shape)}")
    check_tensor(world_to_camera, "world_to_camera", ((3, 4), 4), min_ndim=3)
    check_tensor(intrinsics, "intrinsics", (3, 3), min_ndim=3)
    V = world_to_camera.shape[0]
    if world_to_camera.dim() != 3 or intrinsics.shape != (V, 3, 3):
        raise ShapeError(
            f"world_to_camera must be (V, 3|4, 4) and intrinsics (V, 3, 3), got {tuple(world_to_camera.shape)} "
            f"and {tuple(intrinsics.shape)}"
        )
    if int(width) < 1 or int(height) < 1:
        raise ShapeError(f"image size must be positive, got {width}x{height}")
    device = means.device
    means, scales, opacities = means.float(), scales.float(), opacities.float()
    harmonics = harmonics.float()
    if harmonics.dim() == 3:
        degree = math.isqrt(harmonics.shape[-1]) - 1 if sh_degree is None else int(sh_degree)
    world_to_camera, intrinsics = world_to_camera.float().to(device), intrinsics.float().to(device)
    bg = torch.zeros(V, 3, device=device) if background is None else torch.as_tensor(background).float().to(device)
    bg = bg.expand(V, 3)
    covariances = means.new_zeros((N, 3, 3))
    for s in range(0, N, PROJECTION_CHUNK):  # world covariances once, shared by every view
        chunk = slice(s, s + PROJECTION_CHUNK)
        covariances[chunk] = quaternion_scale_to_covariance(quaternions[chunk].float(), scales[chunk])
    colors, depths, alphas = [], [], []
    for v in range(V):
        view = project_gaussians(
            means, covariances, world_to_camera[v], intrinsics[v], width, height, near_plane, far_plane
        )
        if harmonics.dim() == 3:
            rotation, translation = world_to_camera[v, :3, :3], world_to_camera[v, :3, 3]
            centre = -rotation.T @ translation
            rgb = sh_colors(harmonics[view.indices], means[view.indices] - centre, degree)
        else:
            rgb = harmonics[view.indices]
        features = torch.cat([rgb, view.depths[:, None]], dim=-1)
        image, alpha = composite(
            view.means2d, view.conics, opacities[view.indices], features, view.depths, view.radii,
            width, height, tile_size, budget, depth_chunk,
        )  # fmt: skip
        colors.append(image[..., :3] + (1.0 - alpha)[..., None] * bg[v])
        depths.append(image[..., 3] / alpha.clamp_min(1e-10))
        alphas.append(alpha)
    return RenderedViews(torch.stack(colors), torch.stack(depths), torch.stack(alphas))


def bin_to_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, tiles_x: int, tiles_y: int, tile_size: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Every (tile, Gaussian) overlap, sorted by tile and, within a tile, front to back.

    A Gaussian covers the tiles of the square ``centre +- radius`` (gsplat's ``isect_tiles``).

    Returns:
        gaussian_ids: (P,) Gaussian index of each overlap, grouped by tile, nearest first.
        tile_starts: (tiles_y * tiles_x,) where each tile's run begins.
        tile_counts: (tiles_y * tiles_x,) its length.
    """
    device = means2d.device
    order = torch.argsort(depths, stable=True)  # front to back; the stable tile sort below keeps this order
    centre, radius = means2d[order] / tile_size, radii[order, None] / tile_size
    low = torch.floor(centre - radius).long()
    high = torch.ceil(centre + radius).long()
    x0, x1 = low[:, 0].clamp(0, tiles_x), high[:, 0].clamp(0, tiles_x)
    y0, y1 = low[:, 1].clamp(0, tiles_y), high[:, 1].clamp(0, tiles_y)
    span_x = x1 - x0
    counts = span_x * (y1 - y0)
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=device) - first[owner]
    tile = (y0[owner] + local // span_x[owner]) * tiles_x + x0[owner] + local % span_x[owner]
    tile, perm = torch.sort(tile, stable=True)
    tile_counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    tile_starts = torch.cumsum(tile_counts, 0) - tile_counts
    return order[owner[perm]], tile_starts, tile_counts


def composite(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    tile_size: int = TILE_SIZE,
    budget: int = COMPOSITE_BUDGET,
    depth_chunk: int = DEPTH_CHUNK,
) -> Tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of projected Gaussians over 16x16 tiles, with gsplat's thresholds.

    gsplat evaluates every pixel of every tile a Gaussian's square touches; a pixel-aligned DA3 Gaussian is a few
    pixels wide, so most of those evaluations are below ``ALPHA_MIN``. Here each (tile, Gaussian) overlap only
    visits the pixels of the tile inside the box where ``alpha >= ALPHA_MIN`` is possible (``sigma <=
    log(255 opacity)``): the same terms gsplat adds, a fraction of the work.

    Gaussians go front to back in chunks of ``depth_chunk``; within a chunk the overlaps come from
    :func:`bin_to_tiles` (per tile, front to back) and a stable sort by pixel keeps that order per pixel. The
    transmittance is a per-pixel cumulative product, taken as a float64 running sum of ``log(1 - alpha)`` carried
    from chunk to chunk; the early stop is a mask on it (the transmittance only falls, so the terms kept are a
    prefix) and marks the pixel done. Tiles whose pixels are all done drop out of later chunks, which is where
    dense scenes (many views of the same surfaces) save most of their work. The overlaps of a chunk are
    composited in runs of about ``budget`` pixel-Gaussian terms, in order, so a pixel's terms may span runs.

    Args:
        means2d, conics, opacities, depths, radii: (M, ...) as :class:`ProjectedGaussians`, opacities (M,).
        features: (M, C) what is accumulated (colour, depth, ...).
        width, height: image size.

    Returns:
        accumulated: (H, W, C) the weighted sums of ``features``; alpha: (H, W), 1 - final transmittance.
    """
    device, C = means2d.device, features.shape[1]
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    num_tiles, tile_pixels = tiles_x * tiles_y, tile_size * tile_size
    accumulated = torch.zeros(num_tiles * tile_pixels, C, device=device)
    log_transmittance = torch.zeros(num_tiles * tile_pixels, dtype=torch.float64, device=device)
    done = torch.zeros(num_tiles * tile_pixels, dtype=torch.bool, device=device)
    if len(means2d):
        # half sizes of the box holding sigma <= log(255 opacity), from the 2D covariance (the conic's inverse)
        a, b, c = conics.unbind(-1)
        det = (a * c - b * b).clamp_min(1e-30)
        reach = 2.0 * torch.log((opacities / ALPHA_MIN).clamp_min(1.0))
        half = torch.stack([torch.sqrt(reach * c / det), torch.sqrt(reach * a / det)], dim=-1) * 1.001 + 1e-3
        # pixels whose centres (index + 0.5) lie in mean +- half, x and y: [low, high)
        low = torch.floor(means2d - half - 0.5).long()
        high = torch.floor(means2d + half - 0.5).long() + 1
        # one contiguous column per attribute: gathers by a 1D index are the cheap kind
        columns = [v.contiguous() for v in (*means2d.unbind(-1), *conics.unbind(-1), opacities)]
        buffers = (accumulated, log_transmittance, done)
        front_to_back = torch.argsort(depths, stable=True)
        for chunk in front_to_back.split(depth_chunk):
            tile_done = done.view(num_tiles, tile_pixels).all(dim=1)
            if bool(tile_done.all()):
                break
            order, _, tile_counts = bin_to_tiles(
                means2d[chunk], radii[chunk], depths[chunk], tiles_x, tiles_y, tile_size
            )
            gaussian_ids = chunk[order]
            tile_of = torch.repeat_interleave(torch.arange(num_tiles, device=device), tile_counts)
            live = torch.nonzero(~tile_done[tile_of]).squeeze(1)
            gaussian_ids, tile_of = gaussian_ids[live], tile_of[live]
            # pixels each overlap visits: its box clipped to its tile
            tile_x0, tile_y0 = (tile_of % tiles_x) * tile_size, (tile_of // tiles_x) * tile_size
            x0 = torch.maximum(low[gaussian_ids, 0], tile_x0)
            x1 = torch.minimum(high[gaussian_ids, 0], tile_x0 + tile_size)
            y0 = torch.maximum(low[gaussian_ids, 1], tile_y0)
            y1 = torch.minimum(high[gaussian_ids, 1], tile_y0 + tile_size)
            span_x = (x1 - x0).clamp_min(0)
            visits = span_x * (y1 - y0).clamp_min(0)
            # runs of about `budget` visits: a pixel's terms may span runs, which go front to back like the chunks
            ends = torch.cumsum(visits, 0)
            first = 0
            while first < len(visits):
                limit = (int(ends[first - 1]) if first else 0) + budget
                last = max(first + 1, int(torch.searchsorted(ends, limit, right=True)))
                run = slice(first, last)
                _composite_run(
                    gaussian_ids[run], x0[run], y0[run], span_x[run], visits[run], tile_of[run], columns, features,
                    tiles_x, tile_size, buffers,
                )  # fmt: skip
                first = last

    # tile-major pixels back to the image, cropping the partial tiles at the right and bottom
    def to_image(values: Tensor) -> Tensor:
        shaped = values.reshape(tiles_y, tiles_x, tile_size, tile_size, -1).permute(0, 2, 1, 3, 4)
        return shaped.reshape(tiles_y * tile_size, tiles_x * tile_size, -1)[:height, :width]

    alpha = 1.0 - torch.exp(log_transmittance).float()
    return to_image(accumulated), to_image(alpha[:, None])[..., 0]


def _composite_run(
    gaussian_ids: Tensor,
    x0: Tensor,
    y0: Tensor,
    span_x: Tensor,
    visits: Tensor,
    tile_of: Tensor,
    columns: List[Tensor],
    features: Tensor,
    tiles_x: int,
    tile_size: int,
    buffers: Tuple[Tensor, Tensor, Tensor],
) -> None:
    """Composite a run of overlaps (front to back within each tile, behind everything composited before) into
    the tile-major pixel buffers ``(accumulated (P, C), log_transmittance (P,), done (P,))``."""
    accumulated, log_transmittance, done = buffers
    device = gaussian_ids.device
    owner = torch.repeat_interleave(torch.arange(len(visits), device=device), visits)
    local = torch.arange(len(owner), device=device) - (torch.cumsum(visits, 0) - visits)[owner]
    px = x0[owner] + local % span_x[owner]
    py = y0[owner] + local // span_x[owner]
    tile = tile_of[owner]
    pixel = tile * (tile_size * tile_size) + (py - (tile // tiles_x) * tile_size) * tile_size
    pixel += px - (tile % tiles_x) * tile_size
    open_pixel = torch.nonzero(~done[pixel]).squeeze(1)  # terms of stopped pixels cost nothing further
    pixel, px, py, ids = pixel[open_pixel], px[open_pixel], py[open_pixel], gaussian_ids[owner[open_pixel]]
    mean_x, mean_y, conic_a, conic_b, conic_c, opacity = (column.index_select(0, ids) for column in columns)
    dx = mean_x - (px + 0.5)
    dy = mean_y - (py + 0.5)
    sigma = 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy
    alpha = torch.clamp_max(opacity * torch.exp(-sigma), ALPHA_MAX)
    use = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
    pixel, order = torch.sort(pixel[use], stable=True)  # per pixel, still front to back
    use = use[order]
    alpha, ids = alpha[use], ids[use]
    log_keep = torch.log1p(-alpha.double())
    running = torch.cumsum(log_keep, 0)
    new_pixel = torch.ones_like(pixel, dtype=torch.bool)
    new_pixel[1:] = pixel[1:] != pixel[:-1]
    starts = torch.nonzero(new_pixel).squeeze(1)
    segment = torch.cumsum(new_pixel, 0) - 1
    # log transmittance after each term: the pixel's earlier chunks, then this run's terms up to it
    after = log_transmittance[pixel] + running - (running - log_keep)[starts][segment]
    kept = after > math.log(TRANSMITTANCE_MIN)  # a prefix of each pixel's terms
    weights = torch.where(kept, alpha * torch.exp(after - log_keep).float(), torch.zeros_like(alpha))
    accumulated.index_add_(0, pixel, weights[:, None] * features[ids])
    log_transmittance.index_add_(0, pixel, torch.where(kept, log_keep, torch.zeros_like(log_keep)))
    done[pixel[~kept]] = True  # stopped before a term: nothing behind it counts
