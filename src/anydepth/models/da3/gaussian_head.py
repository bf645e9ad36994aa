"""Depth Anything 3 Gaussian-splat head (GS-DPT) and the adapter that turns its output into world-space Gaussians."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from anydepth.errors import ShapeError
from anydepth.geometry.rotations import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion
from anydepth.layers.precision import float32_region
from anydepth.models.da3.heads import DEFAULT_CHUNK_SIZE, DPTTrunk, output_branch

# Real spherical-harmonic constants of degrees 1 and 2 in the 3D Gaussian Splatting basis (gsplat / graphdeco):
# degree 1 is C1 * (-y, z, -x); degree 2 is C2 * (xy, yz, 2zz - xx - yy, xz, xx - yy).
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SCALE_MULTIPLIER = 0.1


@dataclass(frozen=True)
class GaussianDPTConfig:
    """Architecture of the GS-DPT head (DA3-GIANT, and the any-view branch of DA3NESTED).

    Attributes:
        dim_in: token width fed to the head (twice the ViT width).
        features: width of the fusion path.
        out_channels: widths of the four reassembled levels.
        output_dim: raw Gaussian channels + 1 density channel (``GaussianAdapterConfig.raw_dim + 1``).
        patch_size: ViT patch size.
        pos_embed: add the UV sine embedding to the reassembled levels and before the output convs.
    """

    dim_in: int
    features: int
    out_channels: Tuple[int, int, int, int]
    output_dim: int = 38
    patch_size: int = 14
    pos_embed: bool = True


@dataclass(frozen=True)
class GaussianAdapterConfig:
    """How raw Gaussian channels are read (defaults: the official DA3-GIANT config, not upstream's class defaults).

    Attributes:
        sh_degree: spherical-harmonic degree of the colours (0..2 implemented).
        pred_color: the network predicts one colour per channel instead of SH coefficients.
        pred_offset_depth: the last raw channel is added to the depth.
        pred_offset_xy: the first two raw channels shift the pixel centre (in pixels).
        scale_min, scale_max: range of the sigmoid-mapped scales, before the depth and focal factors.
    """

    sh_degree: int = 2
    pred_color: bool = False
    pred_offset_depth: bool = True
    pred_offset_xy: bool = True
    scale_min: float = 1e-5
    scale_max: float = 30.0

    def __post_init__(self) -> None:
        if not self.pred_color and not 0 <= self.sh_degree <= 2:
            raise ValueError(f"sh_degree {self.sh_degree} is not implemented (0..2; the official models use 2)")

    @property
    def sh_coefficients(self) -> int:
        """Coefficients per colour channel."""
        return 1 if self.pred_color else (self.sh_degree + 1) ** 2

    @property
    def raw_dim(self) -> int:
        """Raw channels per pixel: [xy offset (2)], scales (3), quaternion (4), colour (3 x d_sh), [depth offset]."""
        return 2 * self.pred_offset_xy + 3 + 4 + 3 * self.sh_coefficients + int(self.pred_offset_depth)


# The GS head of the official DA3-GIANT config (configs/da3-giant.yaml)
GAUSSIAN_DPT_CONFIG_VITG = GaussianDPTConfig(dim_in=3072, features=256, out_channels=(256, 512, 1024, 1024))


@dataclass
class GaussianHeadOutput:
    """Per-pixel Gaussian parameters in camera space, as the GS-DPT predicts them.

    Attributes:
        raw_gaussians: (B, S, H, W, output_dim - 1) float32, unactivated (read by :class:`GaussianAdapter`).
        densities: (B, S, H, W) float32 in (0, 1). Upstream maps them to opacities with ``map_pdf_to_opacity``,
            which is the identity at inference (exponent 2**0), so they are the opacities.
    """

    raw_gaussians: Tensor
    densities: Tensor


@dataclass
class Gaussians:
    """World-space 3D Gaussians of B scenes, N = S * H * W per scene in (view, row, column) order.

    Attributes:
        means: (B, N, 3) centres.
        scales: (B, N, 3) axis lengths.
        rotations: (B, N, 4) unit quaternions with a non-negative LAST component, exactly as upstream returns
            them (upstream names them "wxyz" and its renderer and PLY writer read them that way).
        harmonics: (B, N, 3, d_sh) colour SH coefficients per RGB channel, rotated to world axes.
        opacities: (B, N).
    """

    means: Tensor
    scales: Tensor
    rotations: Tensor
    harmonics: Tensor
    opacities: Tensor


def scale_gaussians(gaussians: Gaussians, scale: Tensor) -> Gaussians:
    """The same Gaussians in units ``scale`` times larger: centres and axis lengths scaled, about the world origin.

    A world scaled by ``s`` about its origin (every camera centre and depth times ``s``, as the nested model's
    metric step does to depth and camera translations) carries each Gaussian's centre to ``s`` times it and its
    covariance to ``s^2`` times it, i.e. its axis lengths times ``s``; rotations, colours and opacities stay.
    Upstream scales depth and cameras but not the Gaussians, which then look about 40 times too large (or small)
    against the metric cameras.

    Args:
        gaussians: B scenes of Gaussians.
        scale: (B,) factors.

    Returns:
        New :class:`Gaussians`; the input is not modified.

    Example:
        >>> g = Gaussians(torch.ones(1, 2, 3), torch.ones(1, 2, 3), torch.ones(1, 2, 4), torch.ones(1, 2, 3, 1),
        ...               torch.ones(1, 2))
        >>> scale_gaussians(g, torch.tensor([2.0])).means[0, 0].tolist()
        [2.0, 2.0, 2.0]
    """
    return transform_gaussians(gaussians, scale)


def transform_gaussians(
    gaussians: Gaussians, scale: Tensor, rotation: Optional[Tensor] = None, translation: Optional[Tensor] = None
) -> Gaussians:
    """The Gaussians moved by the similarity ``x -> scale * rotation @ x + translation`` of their world.

    Centres move with it, axis lengths scale, orientations and the view-dependent colour bands turn with
    ``rotation``; opacities stay. The quaternions are read and written in (w, x, y, z) order, the way the renderers
    and the PLY viewers read :attr:`Gaussians.rotations`, so that what is drawn turns with the world.

    Args:
        gaussians: B scenes of Gaussians.
        scale: (B,) factors.
        rotation: (B, 3, 3) rotations, or None for none.
        translation: (B, 3), or None for none.

    Returns:
        New :class:`Gaussians`.
    """
    means = gaussians.means
    factor = scale.reshape(-1, 1, 1).to(means)
    harmonics, rotations = gaussians.harmonics, gaussians.rotations
    if rotation is not None:
        rot = rotation.to(means)  # (B, 3, 3)
        means = means @ rot.transpose(-1, -2)
        w_first = gaussians.rotations.float()
        matrices = quaternion_to_rotation_matrix(w_first[..., [1, 2, 3, 0]])  # (B, N, 3, 3)
        turned = rotation_matrix_to_quaternion(rot[:, None].float() @ matrices)
        rotations = turned[..., [3, 0, 1, 2]].to(gaussians.rotations)
        if harmonics.shape[-1] > 1:
            harmonics = rotate_sh(harmonics, rot[:, None, None].to(harmonics))
    means = means * factor
    if translation is not None:
        means = means + translation.reshape(-1, 1, 3).to(means)
    return Gaussians(
        means=means,
        scales=gaussians.scales * factor.to(gaussians.scales),
        rotations=rotations,
        harmonics=harmonics,
        opacities=gaussians.opacities,
    )


class GaussianDPTHead(DPTTrunk):
    """GS-DPT: a DPT whose fused map is enriched with image features, predicting raw Gaussians per pixel.

    Keys: projects.{0-3}, resize_layers.{0,1,3}, scratch.layer{1-4}_rn, scratch.refinenet{1-4},
    scratch.output_conv1, scratch.output_conv2.{0,2}, images_merger.{0,2,4}.
    """

    def __init__(self, cfg: GaussianDPTConfig) -> None:
        super().__init__(cfg.dim_in, cfg.features, cfg.out_channels, cfg.patch_size, cfg.pos_embed, token_norm=False)
        self.cfg = cfg
        self.scratch.output_conv2 = output_branch(cfg.features // 2, cfg.output_dim)
        width = cfg.features // 2
        self.images_merger = nn.Sequential(
            nn.Conv2d(3, width // 4, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(width // 4, width // 2, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(width // 2, width, kernel_size=3, padding=1),
            nn.GELU(),
        )

    def forward(
        self,
        features: Sequence[Tuple[Tensor, Tensor]],
        images: Tensor,
        patch_start_idx: int = 0,
        chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE,
    ) -> GaussianHeadOutput:
        """Raw Gaussians for every pixel, in float32 even under autocast.

        Args:
            features: four ``(tokens (B, S, N, C), camera_token)`` pairs, as for the depth head.
            images: (B, S, 3, H, W) the network's input images (normalised as fed to the backbone); H and W are
                multiples of the patch size.
            patch_start_idx: tokens before this index are not patches.
            chunk_size: views per pass through the head; None runs all B * S views at once.

        Returns:
            GaussianHeadOutput at (H, W).
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ShapeError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ShapeError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        batch_views, (raw, densities) = self._run(
            features, height, width, patch_start_idx, chunk_size, per_view=[images]
        )
        return GaussianHeadOutput(
            raw_gaussians=raw.reshape(*batch_views, *raw.shape[1:]),
            densities=densities.reshape(*batch_views, *densities.shape[1:]),
        )

    def _forward_views(
        self, tokens: List[Tensor], height: int, width: int, *per_view: Tensor, **options: Any
    ) -> Tuple[Tensor, ...]:
        (images,) = per_view
        fused = self._main_map(self._level_maps(tokens, height, width), height, width)
        fused = self._add_pos_embed(fused + self.images_merger(images), width / height)
        logits = self.scratch.output_conv2(fused).permute(0, 2, 3, 1)
        return logits[..., :-1], torch.sigmoid(logits[..., -1])


class GaussianAdapter(nn.Module):
    """Turns per-pixel raw Gaussians, depth and cameras into world-space Gaussians (upstream ``gs_adapter``).

    It has no weights: upstream's only buffer (``sh_mask``) is not persistent, so checkpoints hold no
    ``gs_adapter.*`` keys.
    """

    sh_mask: Tensor

    def __init__(self, cfg: GaussianAdapterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # damps the view-dependent SH bands (0.1 * 0.25**degree), as in training
        mask = torch.ones(cfg.sh_coefficients)
        if not cfg.pred_color:
            for degree in range(1, cfg.sh_degree + 1):
                mask[degree**2 : (degree + 1) ** 2] = 0.1 * 0.25**degree
        self.register_buffer("sh_mask", mask, persistent=False)

    def forward(
        self,
        extrinsics: Tensor,
        intrinsics: Tensor,
        depth: Tensor,
        opacities: Tensor,
        raw_gaussians: Tensor,
        pose_scales: Optional[Tensor] = None,
    ) -> Gaussians:
        """World-space Gaussians, computed in float32.

        Args:
            extrinsics: (B, S, 3|4, 4) world-to-camera, OpenCV (the PREDICTED cameras, in which depth is defined).
            intrinsics: (B, S, 3, 3) in pixels.
            depth: (B, S, H, W) predicted depth.
            opacities: (B, S, H, W), e.g. ``GaussianHeadOutput.densities``.
            raw_gaussians: (B, S, H, W, raw_dim) from :class:`GaussianDPTHead`.
            pose_scales: optional (B,) factors applied to camera translations and depths; upstream uses the
                Umeyama scale from the predicted to the given camera centres, clamped to [1/3, 3], when the
                caller passed cameras that differ from the predicted ones.

        Returns:
            Gaussians with N = S * H * W per scene. The means lie at ``depth`` along the unit pixel ray (upstream
            treats depth as distance along the ray here, not as z).
        """
        cfg = self.cfg
        B, S, H, W = depth.shape
        if raw_gaussians.shape != (B, S, H, W, cfg.raw_dim):
            raise ShapeError(f"raw_gaussians {tuple(raw_gaussians.shape)}, expected {(B, S, H, W, cfg.raw_dim)}")
        with float32_region(depth.device):
            raw = raw_gaussians.float()
            depth = depth.float()
            world_to_cam = extrinsics.float()[..., :3, :4]
            rotation = world_to_cam[..., :3].transpose(-1, -2)  # camera-to-world rotation (B, S, 3, 3)
            origin = -(rotation @ world_to_cam[..., 3:])[..., 0]  # camera centre (B, S, 3)
            # intrinsics normalised by the image size, as upstream's 3DGS code uses them
            size = torch.tensor([W, H, 1.0], dtype=torch.float32, device=depth.device)
            norm_intrinsics = intrinsics.float() / size[:, None]

            if cfg.pred_offset_depth:
                depth, raw = depth + raw[..., -1], raw[..., :-1]
            if pose_scales is not None:
                scale = pose_scales.float()
                origin = origin * scale[:, None, None]
                depth = depth * scale[:, None, None, None]

            pixel_size = 1.0 / torch.tensor([W, H], dtype=torch.float32, device=depth.device)
            xy = _pixel_centres(H, W, depth.device).expand(B, S, H, W, 2)
            if cfg.pred_offset_xy:
                xy, raw = xy + raw[..., :2] * pixel_size, raw[..., 2:]
            means = _unproject_along_rays(xy, depth, norm_intrinsics, rotation, origin)

            raw_scales, raw_rotations, raw_colours = raw.split((3, 4, 3 * cfg.sh_coefficients), dim=-1)
            scales = cfg.scale_min + (cfg.scale_max - cfg.scale_min) * raw_scales.sigmoid()
            # scales are predicted in pixels: depth / focal turns them into world units
            focal_factor = torch.inverse(norm_intrinsics[..., :2, :2]) @ pixel_size
            scales = scales * depth[..., None] * (_SCALE_MULTIPLIER * focal_factor.sum(-1))[:, :, None, None, None]

            rotations = _world_rotations(raw_rotations, rotation)

            harmonics = raw_colours.reshape(B, S, H, W, 3, cfg.sh_coefficients)
            if not cfg.pred_color:
                harmonics = harmonics * self.sh_mask
                if cfg.sh_degree > 0:
                    harmonics = rotate_sh(harmonics, rotation[:, :, None, None, None])

        def flat(x: Tensor) -> Tensor:
            return x.reshape(B, S * H * W, *x.shape[4:])

        return Gaussians(
            means=flat(means),
            scales=flat(scales),
            rotations=flat(rotations),
            harmonics=flat(harmonics),
            opacities=opacities.float().reshape(B, S * H * W),
        )


def _pixel_centres(height: int, width: int, device: torch.device) -> Tensor:
    """(H, W, 2) pixel centres (x, y) normalised to (0, 1)."""
    y = (torch.arange(height, device=device) + 0.5) / height
    x = (torch.arange(width, device=device) + 0.5) / width
    return torch.stack([x[None, :].expand(height, -1), y[:, None].expand(-1, width)], dim=-1)


def _unproject_along_rays(
    xy: Tensor, distance: Tensor, norm_intrinsics: Tensor, rotation: Tensor, origin: Tensor
) -> Tensor:
    """World points ``origin + distance * unit_ray(xy)``.

    Args:
        xy: (B, S, H, W, 2) normalised pixel coordinates.
        distance: (B, S, H, W).
        norm_intrinsics: (B, S, 3, 3) intrinsics divided by the image size.
        rotation, origin: (B, S, 3, 3) camera-to-world rotation, (B, S, 3) camera centre.

    Returns:
        (B, S, H, W, 3).
    """
    homogeneous = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
    rays = torch.einsum("bsij,bshwj->bshwi", torch.inverse(norm_intrinsics), homogeneous)
    rays = rays / rays.norm(dim=-1, keepdim=True)
    rays = torch.einsum("bsij,bshwj->bshwi", rotation, rays)
    return origin[:, :, None, None] + rays * distance[..., None]


def _world_rotations(raw: Tensor, cam_to_world: Tensor) -> Tensor:
    """Per-pixel camera-space quaternions -> world-space quaternions, reproducing upstream's channel order.

    Upstream reorders the predicted (q0, q1, q2, q3) to (q3, q0, q1, q2), calling it w-first, and then reads that
    with a scalar-LAST quaternion-to-matrix function; kept as is for parity with upstream and its checkpoints.

    Args:
        raw: (B, S, H, W, 4) unnormalised quaternions.
        cam_to_world: (B, S, 3, 3).

    Returns:
        (B, S, H, W, 4) unit quaternions, scalar last, scalar >= 0.
    """
    unit = raw / (raw.norm(dim=-1, keepdim=True) + 1e-8)
    cam_rotation = quaternion_to_rotation_matrix(unit[..., [3, 0, 1, 2]])
    return rotation_matrix_to_quaternion(cam_to_world[:, :, None, None] @ cam_rotation)


def rotate_sh(harmonics: Tensor, rotation: Tensor) -> Tensor:
    """Rotate 3DGS-basis SH colour coefficients (degree <= 2): the new colour along d is the old one along R^T d.

    Upstream does this with e3nn's Wigner matrices after changing axes; in the 3DGS basis each degree l is a set
    of polynomials p_m(d) (linear for l = 1, quadratic forms for l = 2), and p_m(R^T d) expands exactly in the same
    set, which gives the rotation matrix of the band without Euler angles.

    Args:
        harmonics: (..., d_sh) coefficients, d_sh in (1, 4, 9).
        rotation: (..., 3, 3) rotations, broadcastable against ``harmonics[..., 0]``.

    Returns:
        (..., d_sh) rotated coefficients.
    """
    d_sh = harmonics.shape[-1]
    if d_sh not in (1, 4, 9):
        raise ValueError(f"rotate_sh handles degrees 0..2 (1, 4 or 9 coefficients), got {d_sh}")
    bands = [harmonics[..., :1]]
    if d_sh >= 4:
        bands.append(_apply_band(_band_rotation(rotation, _degree1_basis(rotation)), harmonics[..., 1:4]))
    if d_sh >= 9:
        bands.append(_apply_band(_band_rotation(rotation, _degree2_basis(rotation)), harmonics[..., 4:9]))
    return torch.cat(bands, dim=-1)


def _degree1_basis(like: Tensor) -> Tensor:
    """(3, 3): row m holds the vector a_m with p_m(d) = a_m . d."""
    x, y, z = torch.eye(3, dtype=like.dtype, device=like.device)
    return _SH_C1 * torch.stack([-y, z, -x])


def _degree2_basis(like: Tensor) -> Tensor:
    """(5, 3, 3): symmetric traceless Q_m with p_m(d) = d^T Q_m d (mutually orthogonal under the Frobenius product)."""
    e = torch.eye(3, dtype=like.dtype, device=like.device)

    def sym(a: int, b: int) -> Tensor:
        return 0.5 * (e[:, a : a + 1] @ e[b : b + 1] + e[:, b : b + 1] @ e[a : a + 1])

    x, y, z = 0, 1, 2
    polys = [sym(x, y), sym(y, z), 2 * sym(z, z) - sym(x, x) - sym(y, y), sym(x, z), sym(x, x) - sym(y, y)]
    return torch.stack([c * p for c, p in zip(_SH_C2, polys)])


def _band_rotation(rotation: Tensor, basis: Tensor) -> Tensor:
    """Matrix D with new_coefficients = D @ coefficients for one SH band.

    p_m(R^T d) is p_m with its vector / form conjugated by R; projecting that on the orthogonal basis gives
    p_m(R^T d) = sum_n M[m, n] p_n(d), and so D = M^T.
    """
    if basis.dim() == 2:  # linear: R a_m
        moved = torch.einsum("...ij,mj->...mi", rotation, basis)
        overlap = torch.einsum("...mi,ni->...mn", moved, basis)
    else:  # quadratic: R Q_m R^T
        moved = torch.einsum("...ij,mjk,...lk->...mil", rotation, basis, rotation)
        overlap = torch.einsum("...mil,nil->...mn", moved, basis)
    norms = (basis * basis).flatten(1).sum(-1)
    return (overlap / norms).transpose(-1, -2)


def _apply_band(band_rotation: Tensor, coefficients: Tensor) -> Tensor:
    return (band_rotation @ coefficients[..., None])[..., 0]
