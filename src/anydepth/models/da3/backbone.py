"""Depth Anything 3 backbone: DINOv2 alternating per-view and cross-view attention, camera tokens and 2D RoPE."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from anydepth.errors import InputError, ShapeError
from anydepth.layers.precision import PrecisionPolicy, fast_paths_enabled, precision_region
from anydepth.layers.rope import Rope, RopeTables, grid_positions, partial_rope, rope_tables
from anydepth.models.da3.reference_view import (
    MIN_VIEWS_FOR_REF_SELECTION,
    check_strategy,
    reorder_by_reference,
    restore_input_order,
    select_reference_view,
)
from anydepth.models.dinov2 import ENCODERS, Block, DinoV2Config, FreezablePositionGrid, PatchEmbed, PosEmbedCache

# (first alternating / q-k-norm / RoPE block, output blocks) of the any-view models, per encoder
_ANYVIEW_LAYOUT = {
    "vits": (4, (5, 7, 9, 11)),
    "vitb": (4, (5, 7, 9, 11)),
    "vitl": (8, (11, 15, 19, 23)),
    "vitg": (13, (19, 27, 33, 39)),
}
# DA3MONO-LARGE and DA3METRIC-LARGE: per-view attention only, the output blocks of Depth Anything V2-L
_MONOCULAR_OUT_LAYERS = {"vitl": (4, 11, 17, 23)}

# (tokens (B, S, N, C), camera token (B, S, C)) of one output block
LayerOutput = Tuple[Tensor, Tensor]


@dataclass(frozen=True)
class DA3BackboneConfig:
    """Architecture of a Depth Anything 3 backbone.

    Block ``i`` attends within each view, except that from ``alt_start`` on every odd block attends over all
    views of a scene at once. Upstream writes a disabled start as -1; here it is None.

    Attributes:
        encoder: the DINOv2 (width, depth, heads, FFN, block-norm epsilon 1e-6, position-embedding grid).
        out_layers: blocks whose outputs feed the heads, strictly ascending.
        alt_start: first block of the alternating schedule, where the class-token slot becomes the camera token
            (and the reference view is chosen just before); None: per-view attention only, no camera token.
        qknorm_start: first block with LayerNorm on queries and keys; None: none.
        rope_start: first block with 2D rotary position embedding; None: none.
        rope_freq: RoPE frequency base.
        cat_token: output tokens (and camera tokens) are ``[last per-view output, normed current output]``
            (width 2D) instead of the normed current output (width D).
        norm_eps: epsilon of the final LayerNorm (upstream builds it with torch's default, 1e-5).
    """

    encoder: DinoV2Config
    out_layers: Tuple[int, ...]
    alt_start: Optional[int] = None
    qknorm_start: Optional[int] = None
    rope_start: Optional[int] = None
    rope_freq: float = 100.0
    cat_token: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        depth = self.encoder.depth
        layers = tuple(int(i) for i in self.out_layers)
        object.__setattr__(self, "out_layers", layers)
        if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= depth:
            raise ValueError(f"out_layers {layers} must be strictly ascending block indices below {depth}")
        for name in ("alt_start", "qknorm_start", "rope_start"):
            start = getattr(self, name)
            if start is not None and not 0 <= start < depth:
                raise ValueError(f"{name} {start} is outside 0..{depth - 1}; use None to disable (upstream's -1)")
        if self.rope_start is not None:
            if self.rope_freq <= 0:
                raise ValueError(f"rope_freq must be positive, got {self.rope_freq}")
            if (self.encoder.embed_dim // self.encoder.num_heads) % 4:
                raise ValueError("2D RoPE needs a head dimension divisible by 4")

    @property
    def alternating(self) -> bool:
        """Whether the backbone has cross-view blocks and a camera token."""
        return self.alt_start is not None

    @property
    def out_dim(self) -> int:
        """Width of the output tokens and camera tokens: 2D with ``cat_token``, else D."""
        return self.encoder.embed_dim * (2 if self.cat_token else 1)

    def is_global(self, block: int) -> bool:
        """Whether block ``block`` attends over all views of a scene (odd blocks from ``alt_start`` on)."""
        return self.alt_start is not None and block >= self.alt_start and block % 2 == 1

    def has_qk_norm(self, block: int) -> bool:
        return self.qknorm_start is not None and block >= self.qknorm_start

    def has_rope(self, block: int) -> bool:
        return self.rope_start is not None and block >= self.rope_start

    @classmethod
    def from_name(cls, name: str, monocular: bool = False, **overrides: Any) -> DA3BackboneConfig:
        """Configuration of an official DA3 backbone.

        Args:
            name: encoder size, "vits", "vitb", "vitl" or "vitg" (DA3-SMALL / BASE / LARGE / GIANT).
            monocular: the backbone of DA3MONO-LARGE and DA3METRIC-LARGE (ViT-L only): per-view attention,
                no camera token, q/k norm or RoPE, no token concatenation.
            overrides: field values to replace (e.g. ``out_layers``).
        """
        if name not in _ANYVIEW_LAYOUT:
            raise InputError(f"unknown DA3 encoder {name!r}; expected one of {sorted(_ANYVIEW_LAYOUT)}")
        if monocular:
            if name not in _MONOCULAR_OUT_LAYERS:
                raise InputError(f"the monocular DA3 backbone exists for {sorted(_MONOCULAR_OUT_LAYERS)}, not {name!r}")
            cfg = cls(encoder=ENCODERS[name], out_layers=_MONOCULAR_OUT_LAYERS[name], cat_token=False)
        else:
            start, out_layers = _ANYVIEW_LAYOUT[name]
            cfg = cls(
                encoder=ENCODERS[name],
                out_layers=out_layers,
                alt_start=start,
                qknorm_start=start,
                rope_start=start,
                cat_token=True,
            )
        return replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def from_upstream(cls, net: Mapping[str, Any]) -> DA3BackboneConfig:
        """Configuration from upstream's ``net`` section (config YAML or hub ``config.json``).

        Reads ``name``, ``out_layers``, ``alt_start``, ``qknorm_start``, ``rope_start`` and ``cat_token``;
        a start of -1 (upstream's "disabled") becomes None.
        """
        name = net["name"]
        if name not in ENCODERS:
            raise InputError(f"unknown DA3 encoder {name!r}; expected one of {sorted(ENCODERS)}")

        def start(key: str) -> Optional[int]:
            value = int(net.get(key, -1))
            return None if value == -1 else value

        return cls(
            encoder=ENCODERS[name],
            out_layers=tuple(int(i) for i in net["out_layers"]),
            alt_start=start("alt_start"),
            qknorm_start=start("qknorm_start"),
            rope_start=start("rope_start"),
            cat_token=bool(net.get("cat_token", True)),
        )


# upstream presets by config name; DA3NESTED-GIANT-LARGE holds one da3-giant and one da3metric-large backbone
PRESETS = {
    "da3-small": DA3BackboneConfig.from_name("vits"),
    "da3-base": DA3BackboneConfig.from_name("vitb"),
    "da3-large": DA3BackboneConfig.from_name("vitl"),
    "da3-giant": DA3BackboneConfig.from_name("vitg"),
    "da3mono-large": DA3BackboneConfig.from_name("vitl", monocular=True),
    "da3metric-large": DA3BackboneConfig.from_name("vitl", monocular=True),
}


class DA3Encoder(FreezablePositionGrid, nn.Module):
    """The DINOv2 parameters of DA3, keys ``cls_token``, ``camera_token`` (alternating models only),
    ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}`` (``attn.q_norm`` / ``attn.k_norm`` from
    ``qknorm_start``) and ``norm``; unlike DINOv2 there is no ``mask_token``. Its position grid can be frozen for
    one input size (:class:`~anydepth.models.dinov2.FreezablePositionGrid`)."""

    def __init__(self, cfg: DA3BackboneConfig) -> None:
        super().__init__()
        enc = cfg.encoder
        D = enc.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        if cfg.alternating:
            # [:, 0] goes to the reference view, [:, 1] to every other view
            self.camera_token: Optional[nn.Parameter] = nn.Parameter(torch.zeros(1, 2, D))
            nn.init.normal_(self.camera_token)
        else:
            self.register_parameter("camera_token", None)
        self.pos_embed = nn.Parameter(torch.zeros(1, enc.pos_grid**2 + 1, D))
        self.patch_size = enc.patch_size
        self.patch_embed = PatchEmbed(enc.patch_size, D)
        self.blocks = nn.ModuleList(Block(enc, qk_norm=cfg.has_qk_norm(i)) for i in range(enc.depth))
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.interpolate_offset = enc.interpolate_offset
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self._pos_cache = PosEmbedCache()

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """(V, 3, H, W) images -> (V, 1 + N, D): class token first, position embeddings added."""
        V, _, H, W = x.shape
        p = self.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(V, -1, -1).to(tokens.dtype), tokens), dim=1)
        return tokens + self.interpolate_pos_encoding(H // p, W // p).to(tokens.dtype)


class DA3Backbone(nn.Module):
    """Depth Anything 3 backbone over the S views of B scenes; keys ``pretrained.*`` as upstream's ``backbone``.

    Per block: views attend within themselves (local) or, at odd blocks from ``alt_start`` on, all tokens of
    a scene attend to each other (global). At ``alt_start`` each view's class token is replaced by a camera
    token: a learned one for the reference view and one shared by the others, or the camera encoder's token
    of each view when poses are known. Without known poses and with at least three views, the reference view is
    chosen from the class tokens entering block ``alt_start - 1`` and moved first; outputs are returned in
    input view order.

    RoPE positions: per-view blocks rotate patch ``(y, x)`` by ``(y + 1, x + 1)`` and the class/camera token
    by 0; cross-view blocks put every patch at ``(1, 1)``, so attention across views sees no patch offsets.
    """

    frozen_input: Optional[Tuple[int, int, int]] = None  # (height, width, views) while frozen
    # set by PrecisionPolicy.apply (set_precision): the dtype of this mixed region, and the RoPE fast path
    compute_dtype: Optional[torch.dtype] = None
    partial_global_rope = False

    def __init__(self, cfg: DA3BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pretrained = DA3Encoder(cfg)

    def set_precision(self, policy: PrecisionPolicy) -> None:
        self.compute_dtype = policy.compute_dtype
        # mixed precision: the cross-view blocks rotate the camera tokens only (see _build_rope_tables)
        self.partial_global_rope = policy.mixed and policy.fast_paths

    @property
    def patch_size(self) -> int:
        return self.cfg.encoder.patch_size

    def freeze_input_size(self, height: int, width: int, num_views: int = 1) -> None:
        """Fix the input to ``num_views`` views of ``height`` x ``width`` pixels, for static-shape exports.

        The resized position embedding (:meth:`DA3Encoder.freeze_input_size`) and the RoPE tables of the
        per-view and the cross-view sequences (full float32 tables, as the reference path computes them) become
        non-persistent buffers, so a traced graph holds neither the bicubic resize nor the position-grid
        construction. Other sizes or view counts then raise :class:`~anydepth.errors.ShapeError` until
        :meth:`unfreeze_input_size`. Call it after loading weights.
        """
        if num_views < 1:
            raise ShapeError(f"freeze_input_size: num_views must be at least 1, not {num_views}")
        self.pretrained.freeze_input_size(height, width)
        p = self.patch_size
        if self.cfg.rope_start is not None:
            pos = self.pretrained.pos_embed
            local, global_ = self._build_rope_tables(
                height // p, width // p, num_views, pos.device, pos.dtype, partial=False
            )
            for name, table in zip(("local_cos", "local_sin", "global_cos", "global_sin"), (*local, *global_)):
                self.register_buffer(f"rope_{name}", table.clone(), persistent=False)
        self.frozen_input = (int(height), int(width), int(num_views))

    def unfreeze_input_size(self) -> None:
        """Take any input size and number of views again."""
        self.pretrained.unfreeze_input_size()
        for name in ("local_cos", "local_sin", "global_cos", "global_sin"):
            self._buffers.pop(f"rope_{name}", None)
        self.frozen_input = None

    def forward(
        self,
        images: Tensor,
        cam_token: Optional[Tensor] = None,
        ref_view_strategy: str = "saddle_balanced",
        export_feat_layers: Sequence[int] = (),
    ) -> Tuple[Tuple[LayerOutput, ...], Tuple[Tensor, ...]]:
        """Features of the output blocks, and optionally of more blocks.

        Args:
            images: (B, S, 3, H, W) normalised images, H and W multiples of 14; B independent scenes of S views.
            cam_token: (B, S, D) camera-encoder tokens of known poses; they take the camera-token slot and
                disable reference-view selection. Only for alternating backbones.
            ref_view_strategy: "first", "middle", "saddle_balanced" or "saddle_sim_range" (see
                :func:`anydepth.models.da3.reference_view.select_reference_view`); used with S >= 3 and no
                ``cam_token``.
            export_feat_layers: blocks whose normed outputs to return as well (feature visualisation).

        Returns:
            ``(outputs, features)``: per block of ``cfg.out_layers`` in that order, ``(tokens (B, S, N, C),
            camera_token (B, S, C))`` with N = (H / 14) * (W / 14) and C = ``cfg.out_dim``; the camera token
            is not normed (with ``cat_token``: the last per-view output's class slot next to the current one).
            ``features``: (B, S, N, D) per entry of ``export_feat_layers``, in the order given. All in input
            view order (upstream leaves the exported features in reference-first order).
        """
        cfg = self.cfg
        check_strategy(ref_view_strategy)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ShapeError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        B, S, _, H, W = images.shape
        p = self.patch_size
        if H % p or W % p:
            raise ShapeError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        if self.frozen_input is not None and (int(H), int(W), int(S)) != self.frozen_input:
            frozen_h, frozen_w, frozen_s = self.frozen_input
            raise ShapeError(
                f"this backbone is frozen to {frozen_s} view(s) of {frozen_h}x{frozen_w} (freeze_input_size), not "
                f"{S} of {H}x{W}; call unfreeze_input_size() to run other sizes"
            )
        D = cfg.encoder.embed_dim
        if cam_token is not None:
            if not cfg.alternating:
                raise InputError("this backbone has no camera-token slot (alt_start is None); pass cam_token=None")
            if tuple(cam_token.shape) != (B, S, D):
                raise ShapeError(f"cam_token must be (B, S, D) = {(B, S, D)}, got {tuple(cam_token.shape)}")
        feat_layers = [int(i) for i in export_feat_layers]
        if any(not 0 <= i < cfg.encoder.depth for i in feat_layers):
            raise InputError(f"export_feat_layers {feat_layers} must be block indices below {cfg.encoder.depth}")

        with precision_region(images.device, self.compute_dtype):  # the mixed region of the precision policy
            return self._blocks(images, cam_token, ref_view_strategy, feat_layers)

    def _blocks(
        self, images: Tensor, cam_token: Optional[Tensor], ref_view_strategy: str, feat_layers: Sequence[int]
    ) -> Tuple[Tuple[LayerOutput, ...], Tuple[Tensor, ...]]:
        """The forward after its checks: tokens through the blocks (see :meth:`forward`)."""
        cfg = self.cfg
        enc = self.pretrained
        B, S, _, H, W = images.shape
        p = self.patch_size
        D = cfg.encoder.embed_dim
        grid_h, grid_w = H // p, W // p
        x = enc.prepare_tokens(images.reshape(B * S, 3, H, W))
        T = x.shape[1]  # 1 + N: class (later camera) token, then patches
        x = x.reshape(B, S, T, D)
        local_rope, global_rope = (
            self._rope_tables(grid_h, grid_w, S, x) if cfg.rope_start is not None else (None, None)
        )

        last = max(cfg.out_layers[-1], *feat_layers) if feat_layers else cfg.out_layers[-1]
        reference: Optional[Tensor] = None  # (B,) reference view per scene, once views are reordered
        local_x = x  # output of the latest per-view block: the first half of cat_token outputs
        outputs, features = {}, {}
        for i, block in enumerate(enc.blocks[: last + 1]):
            if cfg.alt_start is not None:
                if i == cfg.alt_start - 1 and cam_token is None and S >= MIN_VIEWS_FOR_REF_SELECTION:
                    reference = select_reference_view(x[:, :, 0], ref_view_strategy)
                    x = reorder_by_reference(x, reference)
                if i == cfg.alt_start:
                    x = torch.cat((self._camera_tokens(B, S, cam_token).to(x.dtype).unsqueeze(2), x[:, :, 1:]), dim=2)
                    # upstream writes the camera token in place, so the latest per-view output carries it too
                    local_x = x
            if cfg.is_global(i):
                rope = global_rope if cfg.has_rope(i) else None
                x = block(x.reshape(B, S * T, D), rope=rope).reshape(B, S, T, D)
            else:
                rope = local_rope if cfg.has_rope(i) else None
                x = block(x.reshape(B * S, T, D), rope=rope).reshape(B, S, T, D)
                local_x = x
            if i in cfg.out_layers:
                outputs[i] = self._layer_output(local_x, x, reference)
            if i in feat_layers:
                feature = enc.norm(x[:, :, 1:])
                features[i] = feature if reference is None else restore_input_order(feature, reference)
        # tuples, not lists: torch.jit.trace accepts nested tuples (and an empty one) as outputs
        return tuple(outputs[i] for i in cfg.out_layers), tuple(features[i] for i in feat_layers)

    def _camera_tokens(self, B: int, S: int, cam_token: Optional[Tensor]) -> Tensor:
        """(B, S, D): the given tokens, or the learned reference token for view 0 and the other token for the rest."""
        if cam_token is not None:
            return cam_token
        learned = self.pretrained.camera_token
        D = learned.shape[-1]
        return torch.cat((learned[:, :1].expand(B, 1, D), learned[:, 1:].expand(B, S - 1, D)), dim=1)

    def _layer_output(self, local_x: Tensor, x: Tensor, reference: Optional[Tensor]) -> LayerOutput:
        norm = self.pretrained.norm
        if self.cfg.cat_token:
            tokens = torch.cat((local_x[:, :, 1:], norm(x[:, :, 1:])), dim=-1)
            camera = torch.cat((local_x[:, :, 0], x[:, :, 0]), dim=-1)
        else:
            tokens, camera = norm(x[:, :, 1:]), x[:, :, 0]
        if reference is not None:
            tokens, camera = restore_input_order(tokens, reference), restore_input_order(camera, reference)
        return tokens, camera

    def _rope_tables(self, grid_h: int, grid_w: int, num_views: int, like: Tensor) -> Tuple[RopeTables, Rope]:
        """The RoPE of this forward: the frozen tables (:meth:`freeze_input_size`) or new ones."""
        if self.frozen_input is not None:
            local = (self.rope_local_cos, self.rope_local_sin)
            global_ = (self.rope_global_cos, self.rope_global_sin)
            if like.dtype != local[0].dtype:
                local = (local[0].to(like.dtype), local[1].to(like.dtype))
                global_ = (global_[0].to(like.dtype), global_[1].to(like.dtype))
            return local, global_
        partial = (  # inference only: PartialRope rotates queries and keys in place
            self.partial_global_rope
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and fast_paths_enabled(compilable=True)
        )
        dtype = like.dtype
        if self.compute_dtype is not None and like.device.type in ("cpu", "cuda"):
            # the blocks' queries and keys come out of their projections in the mixed region's dtype: tables in
            # that dtype keep the rotation there, instead of promoting it to float32 and casting back for SDPA
            dtype = self.compute_dtype
        return self._build_rope_tables(grid_h, grid_w, num_views, like.device, dtype, partial)

    def _build_rope_tables(
        self, grid_h: int, grid_w: int, num_views: int, device: torch.device, dtype: torch.dtype, partial: bool
    ) -> Tuple[RopeTables, Rope]:
        """RoPE of the per-view sequence (T, head_dim) and of a scene's sequence (S * T tokens).

        Computed from the static grid (constants under tracing) and shared by all blocks. In a scene's sequence
        every patch sits at (1, 1) and only the S camera tokens at (0, 0). With ``partial`` (a mixed-precision
        policy's fast path) that sequence gets a :class:`PartialRope`: the camera tokens rotate by (-1, -1) and the
        patches not at all, the same attention logits (in exact arithmetic) for S instead of S x T rotated tokens
        per query and key. Otherwise the full tables: the reference's arithmetic, bit for bit.
        """
        enc = self.cfg.encoder
        head_dim = enc.embed_dim // enc.num_heads
        patches = grid_positions(grid_h, grid_w, device) + 1  # (N, 2); 0 is the class/camera token's
        special = torch.zeros(1, 2, dtype=patches.dtype, device=device)
        local_pos = torch.cat((special, patches), dim=0)  # (T, 2)
        local = rope_tables(local_pos, head_dim, self.cfg.rope_freq, dtype)
        tokens = local_pos.shape[0]
        if partial:
            cameras = torch.arange(num_views, device=device) * tokens
            return local, partial_rope(
                special.expand(num_views, 2), cameras, (1, 1), head_dim, self.cfg.rope_freq, dtype
            )
        global_pos = torch.cat((special, torch.ones_like(patches)), dim=0).repeat(num_views, 1)  # (S * T, 2)
        global_ = rope_tables(global_pos, head_dim, self.cfg.rope_freq, dtype)
        return local, global_
