"""Find a preset's weights: a local file or folder, or the Hugging Face hub through its cache."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from anydepth.errors import WeightsError
from anydepth.presets import Preset, WeightsSpec

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_licenses_shown = set()


def _announce_license(spec: WeightsSpec) -> None:
    if spec.repo_id not in _licenses_shown:
        _licenses_shown.add(spec.repo_id)
        logger.warning("weights %s/%s are licensed %s", spec.repo_id, spec.filename, spec.license)


def _from_folder(folder: Path, preset: Preset) -> Path:
    if preset.weights is not None and (folder / preset.weights.filename).is_file():
        return folder / preset.weights.filename
    candidates = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    expected = preset.weights.filename if preset.weights else "one weights file"
    found = ", ".join(p.name for p in candidates) or "no weights files"
    raise WeightsError(f"{folder}: expected {expected} in the folder, found {found}; pass the file itself")


def download(
    spec: WeightsSpec,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
) -> Path:
    """Path of ``spec.filename`` in the local hub cache, downloading it first if needed.

    Raises:
        WeightsError: offline, not found or not allowed; the message names the repo, the file and the
            ``--weights`` way round it.
    """
    from huggingface_hub import hf_hub_download

    rev = revision or spec.revision
    try:
        path = hf_hub_download(
            repo_id=spec.repo_id,
            filename=spec.filename,
            revision=rev,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
        )
    except Exception as exc:  # offline, 401/404, interrupted download: one message for all of them
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"cannot get {spec.filename} from the Hugging Face hub repo {spec.repo_id} (revision {rev}): "
            f"{type(exc).__name__}: {reason[:200]}. Download the file yourself and pass it with --weights PATH "
            "(weights=PATH in Python)"
        ) from None
    _announce_license(spec)
    return Path(path)


def resolve_weights(
    preset: Preset,
    weights: Optional[Union[str, Path]] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
) -> Path:
    """Where to read ``preset``'s weights from.

    Args:
        preset: the model.
        weights: a local file, a local folder holding it, or a hub repo id ("org/name") to take the preset's
            file from; None downloads the preset's own weights.
        revision: hub branch, tag or commit; defaults to the preset's.
        cache_dir: hub cache folder; defaults to huggingface_hub's.
        local_files_only: never touch the network, use the cache only.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            return _from_folder(path, preset)
        text = str(weights)
        looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.suffix
        if looks_like_repo and preset.weights is not None:
            spec = WeightsSpec(text, preset.weights.filename, preset.weights.license, layout=preset.weights.layout)
            return download(spec, revision, cache_dir, local_files_only)
        raise WeightsError(f"{weights}: no such weights file or folder")
    if preset.weights is None:
        raise WeightsError(f"{preset.name} has no published checkpoint; pass one with --weights PATH (weights=PATH)")
    return download(preset.weights, revision, cache_dir, local_files_only)
