"""Readers of public benchmarks: each converts a dataset, under a root the user downloaded, into the ground-truth
layout :mod:`anydepth.bench.score` reads (``images/``, ``depth/<stem>.npy``, ``cameras.npz``, ``scene.json``), one
folder per scene, with the frame sampling, crops and depth ranges of the evaluation it reproduces written down in
the reader and seeded.

:data:`DATASETS` lists them; :func:`convert` runs one by name. Each scene's ``scene.json``
(:func:`write_scene_meta`) carries what scoring needs beyond the arrays: the F-score threshold and units
upstream uses for that dataset, the depth range scored, whether the cameras are ground truth, and the reference
geometry (a mesh or point cloud) where reconstruction is scored against one instead of the fused depth maps.

Frame sampling (:func:`sample_frames`), as upstream DA3's evaluator: a scene with more than ``max_frames`` frames
(upstream's default 100) keeps ``sorted(shuffled[:max_frames])`` of its frame indices, shuffled by Python's
``random`` seeded with 42.
"""

from __future__ import annotations

import importlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from anydepth.errors import InputError

META_FILE = "scene.json"


@dataclass(frozen=True)
class Dataset:
    """One benchmark reader.

    Attributes:
        name: the name ``bench convert`` / ``bench run --dataset`` take.
        kind: "scene" (multi-view scenes: depth, pose, reconstruction) or "video" (sequences: video depth).
        converter: ``"module:function"``, ``fn(root, out, scenes=None, max_frames=...) -> [scene folders]``,
            imported on first use.
        modes: the scoring modes its evaluation reports.
        summary: one line for listings (what it is, as whom it is evaluated).
    """

    name: str
    kind: str
    converter: str
    modes: tuple
    summary: str


def _entry(name: str, kind: str, module: str, function: str, modes: tuple, summary: str) -> Dataset:
    return Dataset(name, kind, f"anydepth.bench.datasets.{module}:{function}", modes, summary)


_SCENE_MODES = ("depth", "pose", "recon-posed", "recon-unposed")
_VIDEO_MODES = ("video",)

DATASETS: Dict[str, Dataset] = {
    d.name: d
    for d in (
        _entry("7scenes", "scene", "sevenscenes", "convert_7scenes", _SCENE_MODES,
               "Microsoft 7-Scenes, as upstream DA3 evaluates it"),
        _entry("eth3d", "scene", "eth3d", "convert_eth3d", _SCENE_MODES, "ETH3D high-res, as upstream DA3"),
        _entry("scannetpp", "scene", "scannetpp", "convert_scannetpp", _SCENE_MODES, "ScanNet++, as upstream DA3"),
        _entry("hiroom", "scene", "hiroom", "convert_hiroom", _SCENE_MODES, "HiRoom, as upstream DA3"),
        _entry("dtu", "scene", "dtu", "convert_dtu", ("depth", "recon-posed"),
               "DTU MVS (millimetres), as upstream DA3"),
        _entry("dtu64", "scene", "dtu64", "convert_dtu64", ("pose",), "DTU 64-view pose benchmark, as upstream DA3"),
        _entry("sintel", "video", "sintel", "convert_sintel", _VIDEO_MODES, "MPI Sintel, as the video papers"),
        _entry("scannet", "video", "scannet", "convert_scannet", _VIDEO_MODES, "ScanNet, as the video papers"),
        _entry("kitti", "video", "kitti", "convert_kitti", _VIDEO_MODES, "KITTI depth, as the video papers"),
        _entry("bonn", "video", "bonn", "convert_bonn", _VIDEO_MODES, "Bonn RGB-D Dynamic, as the video papers"),
        _entry("nyuv2", "video", "nyuv2", "convert_nyuv2", _VIDEO_MODES, "NYU Depth V2, as the video papers"),
    )
}  # fmt: skip


def dataset(name: str) -> Dataset:
    """The reader called ``name``; an unknown name is one :class:`InputError` listing the known ones."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def convert(
    name: str,
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: Optional[int] = None,
) -> List[Path]:
    """Convert the dataset ``name`` under ``root`` into scene folders under ``out`` (scenes already converted
    are kept); ``max_frames`` None keeps the reader's own default. Returns the scene folders."""
    module, _, attribute = dataset(name).converter.partition(":")
    function = getattr(importlib.import_module(module), attribute)
    if max_frames is None:
        return function(root, out, scenes)
    return function(root, out, scenes, max_frames)


def sample_frames(count: int, max_frames: int, seed: int = 42) -> List[int]:
    """The frame indices upstream DA3 evaluates: all of them when ``count <= max_frames`` (or ``max_frames <= 0``),
    else ``max_frames`` of them, as its evaluator draws them.

    Example:
        >>> sample_frames(5, 10)
        [0, 1, 2, 3, 4]
        >>> len(sample_frames(1000, 100)), sample_frames(1000, 100) == sample_frames(1000, 100)
        (100, True)
    """
    if max_frames <= 0 or count <= max_frames:
        return list(range(count))
    state = random.getstate()  # the caller's generator is left as it was
    try:
        random.seed(seed)
        indices = list(range(count))
        random.shuffle(indices)
    finally:
        random.setstate(state)
    return sorted(indices[:max_frames])


def write_scene_meta(
    folder: Union[str, Path],
    dataset: str,
    scene: str,
    units: str = "m",
    fscore_threshold: Optional[float] = None,
    min_depth: Optional[float] = None,
    max_depth: Optional[float] = None,
    has_poses: bool = True,
    reference: Optional[str] = None,
    **extra: Any,
) -> Path:
    """Write ``<folder>/scene.json``: what scoring needs beyond the arrays.

    Args:
        dataset, scene: where the scene comes from.
        units: the unit of depth, poses and thresholds ("m", or "mm" for DTU).
        fscore_threshold: the reconstruction F-score distance upstream uses for the dataset, in ``units``.
        min_depth, max_depth: the ground-truth depth range scored (the evaluation's depth cap).
        has_poses: False where the dataset has no ground-truth cameras (camera modes are then refused).
        reference: a file in the folder (``.ply`` point cloud or mesh) that reconstruction is scored against
            instead of the fused ground-truth depth maps.
        extra: anything else worth keeping (crops, frame ranges, the source files), as JSON.
    """
    meta = {"dataset": dataset, "scene": scene, "units": units, "fscore_threshold": fscore_threshold,
            "min_depth": min_depth, "max_depth": max_depth, "has_poses": has_poses, "reference": reference}  # fmt: skip
    meta.update(extra)
    path = Path(folder) / META_FILE
    path.write_text(json.dumps(meta, indent=1))
    return path


def read_scene_meta(folder: Union[str, Path]) -> Dict[str, Any]:
    """``<folder>/scene.json`` as a dict ({} where there is none); unreadable JSON is one :class:`InputError`."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object")
    return meta


__all__ = ["DATASETS", "META_FILE", "Dataset", "convert", "dataset", "read_scene_meta", "sample_frames",
           "write_scene_meta"]  # fmt: skip
