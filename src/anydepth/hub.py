"""Find a preset's weights: a local file or folder, or the Hugging Face hub through its cache."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path
from typing import Optional, Union

from anydepth.errors import WeightsError
from anydepth.presets import Preset, WeightsSpec

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_licenses_shown = set()


OFFLINE_MODEL_HINT = (
    ". Or, with no hub at all: --model anydepth-nano, the small built-in model (trained on synthetic scenes, for "
    "offline use and tests; not a substitute for the official checkpoints)"
)


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


BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
"""Where the package's own weights and model cards live (``WeightsSpec.bundled``)."""


def bundled_path(spec: WeightsSpec) -> Path:
    """The file of a bundled ``spec`` inside the installed package.

    Raises:
        WeightsError: the file is missing (an installation that left out the package data).
    """
    path = BUILTIN_DIR / spec.filename
    if not path.is_file():
        raise WeightsError(f"{spec.filename} is missing from the installed package ({BUILTIN_DIR}); reinstall "
                           "anydepth, or pass the file with --weights PATH")  # fmt: skip
    return path


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    huggingface_hub retries a failed connection for about 25 s before it falls back to its cache; this probe
    lets an offline machine use the cache, or fail with one message, at once.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_hub_logs():
    # huggingface_hub logs every retry on its own handler; our error message says it once
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def manual_download_hint(spec: WeightsSpec, revision: Optional[str] = None) -> str:
    """How to get ``spec``'s weights by hand and hand them over: the address, and the option in each interface."""
    rev = revision or spec.revision
    page = f"https://huggingface.co/{spec.repo_id}/tree/{rev}"
    if spec.layout == "da3":
        what = f"Download config.json and {spec.filename} from {page} into one folder and pass the folder"
    elif spec.layout == "diffusers":
        what = f"Download the repo's folders from {page} into one folder and pass the folder"
    else:
        what = f"Download https://huggingface.co/{spec.repo_id}/resolve/{rev}/{spec.filename} and pass the file"
    return f"{what} with --weights PATH (WEIGHTS=PATH with make run, weights=PATH in Python)"


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
    offline = local_files_only or not hub_reachable()
    try:
        with _quiet_hub_logs():
            path = hf_hub_download(
                repo_id=spec.repo_id,
                filename=spec.filename,
                revision=rev,
                cache_dir=None if cache_dir is None else str(cache_dir),
                local_files_only=offline,
            )
    except Exception as exc:  # offline, 401/404, interrupted download: one message for all of them
        if offline:
            reason = "the hub is unreachable or offline mode is on, and the file is not in the local cache"
        else:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"
        raise WeightsError(
            f"cannot get {spec.filename} from the Hugging Face hub repo {spec.repo_id} (revision {rev}): "
            f"{reason}. {manual_download_hint(spec, rev)}{OFFLINE_MODEL_HINT}"
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
            file from; None downloads the preset's own weights (a bundled preset's are read from the package).
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
        if looks_like_repo and preset.weights is not None and not preset.weights.bundled:
            spec = WeightsSpec(text, preset.weights.filename, preset.weights.license, layout=preset.weights.layout)
            return download(spec, revision, cache_dir, local_files_only)
        raise WeightsError(f"{weights}: no such weights file or folder")
    if preset.weights is None:
        raise WeightsError(f"{preset.name} has no published checkpoint; pass one with --weights PATH (weights=PATH)")
    if preset.weights.bundled:
        return bundled_path(preset.weights)
    return download(preset.weights, revision, cache_dir, local_files_only)
