"""Find and load DepthCrafter's networks: the ``unet/`` folder of tencent/DepthCrafter and Stable Video Diffusion's
``vae/``, ``image_encoder/``, ``scheduler/`` and ``feature_extractor/`` folders, from local folders or the hub cache.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from anydepth.errors import InputError, MissingDependencyError, WeightsError, require
from anydepth.presets import Preset, WeightsSpec

logger = logging.getLogger(__name__)

CPU_OFFLOADS = ("model", "sequential")
# files to fetch from each repo: alternatives in order of preference. Upstream loads SVD's fp16 files.
UNET_FILES: Sequence[Tuple[str, ...]] = (
    ("unet/config.json",),
    ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors"),
)
SVD_FILES: Sequence[Tuple[str, ...]] = (
    ("vae/config.json",),
    ("vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors"),
    ("image_encoder/config.json",),
    ("image_encoder/model.fp16.safetensors", "image_encoder/model.safetensors"),
    ("scheduler/scheduler_config.json",),
    ("feature_extractor/preprocessor_config.json",),
)
SVD_FOLDERS = ("vae", "image_encoder", "scheduler", "feature_extractor")
PathLike = Union[str, Path]


def _dtype(precision: str, device: torch.device) -> torch.dtype:
    """By default float16 on CUDA (upstream's choice), and on the CPU bf16 where "auto" runs bf16 for every family
    (native bf16 matmuls measured faster: :func:`~anydepth.pipelines.runtime.auto_picks_cpu_bf16`), else float32.
    fp16 on a CPU is refused (slow, and upstream never does).

    bf16 on the CPU: 2.1x float32 on the real networks' shapes, 0.67% mean relative error against upstream's float32
    output (random weights; ``benchmarks/depthcrafter_speed.py``, benchmarks/RESULTS.md), inside the 1% that
    "auto" allows.
    """
    choices = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        from anydepth.pipelines.runtime import auto_picks_cpu_bf16

        return torch.bfloat16 if device.type == "cpu" and auto_picks_cpu_bf16() else torch.float32
    if precision not in choices:
        raise InputError(f"unknown precision {precision!r}; use one of fp32, bf16, fp16, auto")
    if precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 on the CPU is not supported; use --precision fp32 or bf16")
    return choices[precision]


def check_cpu_offload(cpu_offload: Optional[str], device: torch.device) -> None:
    """Refuse an unknown offload mode, a missing accelerate, or offloading without a GPU to offload from."""
    if cpu_offload is None:
        return
    if cpu_offload not in CPU_OFFLOADS:
        raise InputError(f"cpu_offload {cpu_offload!r}: choose model, sequential or none")
    if importlib.util.find_spec("accelerate") is None:
        raise MissingDependencyError(
            "cpu_offload needs the accelerate package; install it with `pip install anydepth[depthcrafter]`"
        )
    if device.type != "cuda":
        raise InputError(f"cpu_offload moves the networks between CPU memory and a GPU; it needs a CUDA device, "
                         f"not {device}")  # fmt: skip


def _fetch_repo(
    repo_id: str,
    files: Sequence[Tuple[str, ...]],
    license: str,
    option: str,
    revision: Optional[str],
    cache_dir: Optional[PathLike],
    offline: bool,
) -> Path:
    """Download (or find in the hub cache) one file of each group of alternatives; returns the snapshot folder."""
    from anydepth.hub import download

    root = None
    for alternatives in files:
        for filename in alternatives:
            try:
                path = download(WeightsSpec(repo_id, filename, license), revision, cache_dir, offline)
            except WeightsError:
                continue
            root = path.parents[filename.count("/")]
            break
        else:
            where = "the local hub cache" if offline else "the Hugging Face hub"
            raise WeightsError(
                f"cannot get {' or '.join(alternatives)} of {repo_id} (revision {revision or 'main'}) from {where}; "
                f"download the repo's folders yourself and pass the folder with {option} PATH"
            )
    assert root is not None
    return root


def _unet_folder(path: Path) -> Optional[Path]:
    for folder in (path / "unet", path):
        if (folder / "config.json").is_file():
            return folder
    return None


def _missing_svd_folders(path: Path) -> List[str]:
    return [name for name in SVD_FOLDERS if not (path / name).is_dir()]


def _is_repo_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def resolve_folders(
    preset: Preset,
    weights: Optional[PathLike] = None,
    svd_weights: Optional[PathLike] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
) -> Tuple[Path, Path]:
    """``(unet folder, SVD folder)`` for DepthCrafter.

    Args:
        weights: the DepthCrafter repo id, or a folder holding ``unet/`` (or the ``unet`` folder itself); a folder
            that also holds SVD's folders serves as both. None: the preset's repo (tencent/DepthCrafter).
        svd_weights: Stable Video Diffusion's repo id, or a folder with ``vae/``, ``image_encoder/``,
            ``scheduler/`` and ``feature_extractor/``. None: the preset's (stable-video-diffusion-img2vid-xt).
        revision: hub revision of the DepthCrafter repo.
        cache_dir, local_files_only: as for the hub.
    """
    from anydepth.hub import hub_reachable

    assert preset.weights is not None and preset.base_weights is not None
    unet_dir = svd_dir = None
    offline: Optional[bool] = None
    if weights is not None and not _is_repo_id(str(weights)):
        path = Path(weights).expanduser()
        if not path.is_dir():
            raise WeightsError(f"{weights}: no such folder; DepthCrafter's weights are a folder holding unet/")
        unet_dir = _unet_folder(path)
        if unet_dir is None:
            raise WeightsError(f"{weights}: no unet/config.json in it; pass the folder of tencent/DepthCrafter")
        if svd_weights is None and not _missing_svd_folders(path):
            svd_dir = path
    if svd_weights is not None and not _is_repo_id(str(svd_weights)):
        path = Path(svd_weights).expanduser()
        missing = _missing_svd_folders(path) if path.is_dir() else list(SVD_FOLDERS)
        if missing:
            raise WeightsError(f"{svd_weights}: not a Stable Video Diffusion folder (missing {', '.join(missing)}/)")
        svd_dir = path
    if unet_dir is None:
        offline = local_files_only or not hub_reachable()
        repo = str(weights) if weights is not None else preset.weights.repo_id
        root = _fetch_repo(repo, UNET_FILES, preset.weights.license, "--weights", revision, cache_dir, offline)
        unet_dir = root / "unet"
    if svd_dir is None:
        offline = offline if offline is not None else local_files_only or not hub_reachable()
        base = preset.base_weights
        repo = str(svd_weights) if svd_weights is not None else base.repo_id
        svd_dir = _fetch_repo(repo, SVD_FILES, base.license, "--svd-weights", base.revision, cache_dir, offline)
    return unet_dir, svd_dir


def _variant(folder: Path, stem: str) -> Optional[str]:
    """ "fp16" where the folder has the fp16 file (upstream's choice), None for the full-precision one."""
    return "fp16" if (folder / f"{stem}.fp16.safetensors").is_file() else None


def load_depthcrafter(
    preset: Preset,
    weights: Optional[PathLike] = None,
    svd_weights: Optional[PathLike] = None,
    device: Union[str, torch.device] = "auto",
    precision: str = "auto",
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    cpu_offload: Optional[str] = None,
    compile: bool = False,
):
    """A ready :class:`~anydepth.pipelines.depthcrafter.pipeline.DepthCrafterModel` (see :func:`resolve_folders`).

    Args:
        precision: "auto" (float16 on CUDA; on the CPU bf16 where it is native, else float32), "fp32", "fp16"
            or "bf16".
        cpu_offload: "model" (one network on the GPU at a time), "sequential" (layer by layer, least memory) or
            None (everything on ``device``); needs accelerate and a CUDA device.
        compile: run the UNet, nearly all of the arithmetic, through ``torch.compile`` (not with ``cpu_offload``,
            whose hooks move the weights between calls).
    """
    from anydepth.pipelines.runtime import compile_network, resolve_device

    dev = resolve_device(device)
    dtype = _dtype(precision, dev)
    check_cpu_offload(cpu_offload, dev)
    if compile and cpu_offload is not None:
        raise InputError(f"compile and cpu_offload={cpu_offload!r} do not combine; drop one of them")
    require("diffusers", "depthcrafter")
    require("transformers", "depthcrafter")
    unet_dir, svd_dir = resolve_folders(preset, weights, svd_weights, revision, cache_dir, local_files_only)

    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPVisionModelWithProjection

    from anydepth.models.depthcrafter.unet import DepthCrafterUNet
    from anydepth.pipelines.depthcrafter.components import DepthCrafterComponents
    from anydepth.pipelines.depthcrafter.pipeline import DepthCrafterModel

    try:
        unet = DepthCrafterUNet.from_pretrained(
            unet_dir, torch_dtype=dtype, variant=_variant(unet_dir, "diffusion_pytorch_model"), local_files_only=True
        )
        vae_dir, encoder_dir = svd_dir / "vae", svd_dir / "image_encoder"
        vae = AutoencoderKLTemporalDecoder.from_pretrained(
            vae_dir, torch_dtype=dtype, variant=_variant(vae_dir, "diffusion_pytorch_model"), local_files_only=True
        )
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            encoder_dir, variant=_variant(encoder_dir, "model"), local_files_only=True
        ).to(dtype)
        scheduler = EulerDiscreteScheduler.from_pretrained(svd_dir / "scheduler", local_files_only=True)
        extractor = json.loads((svd_dir / "feature_extractor" / "preprocessor_config.json").read_text())
        mean, std = extractor["image_mean"], extractor["image_std"]
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load DepthCrafter from {unet_dir} and {svd_dir}: {text}") from None
    if dtype == torch.float16 and vae.config.force_upcast:
        vae.encoder.float()  # upstream encodes in float32 (SVD's VAE overflows in float16) and decodes in float16
        vae.quant_conv.float()
    for net in (unet, vae, image_encoder):
        net.eval().requires_grad_(False)
    components = DepthCrafterComponents(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler)
    components.set_progress_bar_config(disable=True)
    if cpu_offload == "model":
        components.enable_model_cpu_offload(device=dev)
    elif cpu_offload == "sequential":
        components.enable_sequential_cpu_offload(device=dev)
    else:
        components.to(dev)
    if compile:
        components.unet = compile_network(components.unet, dev)
    logger.info("loaded DepthCrafter from %s and %s on %s (%s)", unet_dir, svd_dir, dev, dtype)
    return DepthCrafterModel(components, preset, dev, dtype, mean, std, cpu_offload=cpu_offload)
