"""Read checkpoint files, convert foreign key layouts to ours by explicit tables, and load them strictly."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from anydepth.errors import WeightsError

logger = logging.getLogger(__name__)

StateDict = Dict[str, Tensor]

# torch >= 2.1: torch.load maps the file instead of reading it, and load_state_dict can take the tensors as the
# module's own instead of copying them into freshly allocated ones (torch 1.13 has neither and copies).
_LOAD_MMAP = "mmap" in inspect.signature(torch.load).parameters
_ASSIGN = "assign" in inspect.signature(nn.Module.load_state_dict).parameters

_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_", "orthogonal_")  # fmt: skip
_skip_init = threading.local()
_patch_lock = threading.Lock()
_patch_users = [0]  # contexts open in any thread; nn.init is patched while there is one


def _skipping(original: Any) -> Any:
    def init(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if getattr(_skip_init, "active", False):
            return tensor
        return original(tensor, *args, **kwargs)  # another thread, building as usual

    init.anydepth_original = original  # type: ignore[attr-defined]
    return init


@contextlib.contextmanager
def skip_random_init() -> Iterator[None]:
    """Modules built inside (in this thread) skip ``torch.nn.init``'s random initialisations: their weights are
    whatever memory they got until a checkpoint fills them. Only for a network that a strict load fills next; it
    saves the time a network spends drawing numbers that the load throws away. Other threads build as usual."""
    with _patch_lock:
        if _patch_users[0] == 0:
            for name in _RANDOM_INITS:
                if hasattr(nn.init, name):
                    setattr(nn.init, name, _skipping(getattr(nn.init, name)))
        _patch_users[0] += 1
    previous = getattr(_skip_init, "active", False)
    _skip_init.active = True
    try:
        yield
    finally:
        _skip_init.active = previous
        with _patch_lock:
            _patch_users[0] -= 1
            if _patch_users[0] == 0:
                for name in _RANDOM_INITS:
                    patched = getattr(nn.init, name, None)
                    if patched is not None and hasattr(patched, "anydepth_original"):
                        setattr(nn.init, name, patched.anydepth_original)


def read_state_dict(path: Union[str, Path]) -> StateDict:
    """Tensors of a ``.safetensors``, ``.pth``, ``.pt`` or ``.bin`` file, on the CPU.

    Pickled files are read with ``weights_only=True``: no code in a checkpoint is ever run. Wrappers such as
    ``{"model": ...}`` / ``{"state_dict": ...}`` and a ``module.`` prefix (DataParallel) are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = _torch_load(path)
    except Exception as exc:  # corrupt, truncated or not a checkpoint at all
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}


def _torch_load(path: Path) -> Any:
    if _LOAD_MMAP:
        try:  # the zip format of torch.save maps; the legacy format (torch < 1.6) does not and is read below
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
    return torch.load(str(path), map_location="cpu", weights_only=True)


def detect_v2_layout(sd: Mapping[str, Tensor]) -> str:
    """Layout name: "v2" for the official ``pretrained.*``/``depth_head.*`` keys, "hf" for the transformers layout."""
    if any(k.startswith("pretrained.") for k in sd):
        return "v2"
    if any(k.startswith("backbone.embeddings.") for k in sd):
        return "hf"
    sample = ", ".join(sorted(sd)[:3])
    raise WeightsError(f"unrecognised Depth Anything V2 checkpoint layout (first keys: {sample})")


def hf_to_v2_key_table(depth: int, swiglu: bool = False) -> List[Tuple[str, str]]:
    """Rename table (transformers key, official key) for a Depth Anything V2 ``-hf`` checkpoint.

    The query/key/value projections are not in the table: transformers stores them apart and the official
    layout packs them into one ``qkv`` matrix, which :func:`convert_hf_to_v2` concatenates.
    """
    table = [
        ("backbone.embeddings.cls_token", "pretrained.cls_token"),
        ("backbone.embeddings.mask_token", "pretrained.mask_token"),
        ("backbone.embeddings.position_embeddings", "pretrained.pos_embed"),
        ("backbone.embeddings.patch_embeddings.projection", "pretrained.patch_embed.proj"),
        ("backbone.layernorm", "pretrained.norm"),
    ]
    ffn = [("weights_in", "w12"), ("weights_out", "w3")] if swiglu else [("fc1", "fc1"), ("fc2", "fc2")]
    for i in range(depth):
        src, dst = f"backbone.encoder.layer.{i}.", f"pretrained.blocks.{i}."
        table += [
            (src + "norm1", dst + "norm1"),
            (src + "attention.output.dense", dst + "attn.proj"),
            (src + "layer_scale1.lambda1", dst + "ls1.gamma"),
            (src + "norm2", dst + "norm2"),
            (src + "layer_scale2.lambda1", dst + "ls2.gamma"),
        ]
        table += [(src + f"mlp.{a}", dst + f"mlp.{b}") for a, b in ffn]
    for i in range(4):
        table.append((f"neck.reassemble_stage.layers.{i}.projection", f"depth_head.projects.{i}"))
        if i != 2:  # level 2 keeps the patch resolution: no resize weights
            table.append((f"neck.reassemble_stage.layers.{i}.resize", f"depth_head.resize_layers.{i}"))
        table.append((f"neck.convs.{i}", f"depth_head.scratch.layer{i + 1}_rn"))
    # transformers orders the fusion stage from the deepest level: its layer j is refinenet(4 - j)
    for j in range(4):
        src, dst = f"neck.fusion_stage.layers.{j}.", f"depth_head.scratch.refinenet{4 - j}."
        table.append((src + "projection", dst + "out_conv"))
        for unit in (1, 2):
            for conv in (1, 2):
                table.append((src + f"residual_layer{unit}.convolution{conv}", dst + f"resConfUnit{unit}.conv{conv}"))
    table += [
        ("head.conv1", "depth_head.scratch.output_conv1"),
        ("head.conv2", "depth_head.scratch.output_conv2.0"),
        ("head.conv3", "depth_head.scratch.output_conv2.2"),
    ]
    return table


def convert_hf_to_v2(sd: Mapping[str, Tensor], depth: int, swiglu: bool = False) -> StateDict:
    """Convert a transformers Depth Anything V2 state dict to the official layout.

    Every source key must be consumed; a leftover key means the table or the checkpoint is wrong, and the
    error names it instead of silently dropping weights.
    """
    rest = dict(sd)
    out: StateDict = {}
    for src, dst in hf_to_v2_key_table(depth, swiglu):
        for suffix in ("", ".weight", ".bias"):
            if src + suffix in rest:
                out[dst + suffix] = rest.pop(src + suffix)
    for i in range(depth):
        prefix = f"backbone.encoder.layer.{i}.attention.attention."
        for suffix in ("weight", "bias"):
            parts = [rest.pop(f"{prefix}{n}.{suffix}", None) for n in ("query", "key", "value")]
            if all(p is not None for p in parts):
                out[f"pretrained.blocks.{i}.attn.qkv.{suffix}"] = torch.cat(parts, dim=0)
            elif any(p is not None for p in parts):
                raise WeightsError(f"layer {i}: query/key/value {suffix} are incomplete in the checkpoint")
    if rest:
        raise WeightsError(f"unexpected keys in the transformers checkpoint: {_short_list(sorted(rest))}")
    return out


def convert_da3_state_dict(sd: Mapping[str, Tensor]) -> StateDict:
    """A DA3 hub checkpoint (``model.safetensors``) in our network's layout.

    The hub files hold the upstream API wrapper's state, so every key starts with ``model.``; and safetensors
    stores the LayerNorm that the DualDPT head shares between its four aux levels only once, so the three
    aliases are recreated (see :func:`anydepth.models.da3.heads.expand_shared_head_keys`).
    """
    from anydepth.models.da3.heads import expand_shared_head_keys

    prefix = "model."
    if sd and all(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return expand_shared_head_keys(sd)


def complete_vda_state_dict(sd: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """A Video Depth Anything state dict with its temporal position tables (``*.pos_encoder.pe``) filled in
    from ``model`` where the file lacks them.

    The official ``.pth`` files store these fixed sinusoids; a file saved without buffers still loads, and every
    other missing key is left for :func:`load_strict` to report.
    """
    out = dict(sd)
    for key, value in model.state_dict().items():
        if key.endswith(".pos_encoder.pe") and key not in out:
            out[key] = value
    return out


def _short_list(keys: List[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_strict(
    model: nn.Module, sd: Mapping[str, Tensor], source: str = "checkpoint", assign: bool = False
) -> nn.Module:
    """``load_state_dict(strict=True)`` with one error that lists missing, unexpected and mis-shaped keys.

    ``assign=True`` (for tensors nobody else holds, as those just read from a file): the module takes the tensors
    themselves, in its own dtypes, instead of copying them into its own (torch >= 2.1; older versions copy).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mis_shaped = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(sd))
        if sd[k].shape != own[k].shape
    ]
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches (checkpoint vs model): {_short_list(mis_shaped)}")
        raise WeightsError(
            f"{source} does not match the {type(model).__name__} architecture ({'; '.join(parts)}); "
            "check that the weights belong to the chosen model"
        )
    own_tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())} if assign else {}
    if assign and _ASSIGN and all(k in own_tensors for k in own):
        # the checkpoint's tensors become the module's (no second copy, no copy time); each in the module's dtype,
        # and a tensor that two keys share is cloned so that loading never ties two weights together
        seen = set()
        state = {}
        for key, value in sd.items():
            value = value.to(own_tensors[key].dtype)
            if id(value) in seen or value.data_ptr() in seen:
                value = value.clone()
            seen.update((id(value), value.data_ptr()))
            state[key] = value
        model.load_state_dict(state, strict=True, assign=True)
    else:
        model.load_state_dict(dict(sd), strict=True)
    return model
