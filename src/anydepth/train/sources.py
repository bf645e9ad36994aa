"""Sources of training frames with depth: folders in the evaluator's ground-truth layout, plain folders of images
with depth files beside them, and the synthetic generator.

A *source* is a list of sequences (the views of one scene, or the frames of one video), each a list of frames
that load on demand (:class:`RawFrame`). Three sources:

- :class:`GroundTruthSource`: folders in the evaluator's ground-truth layout (``images/<name>``,
  ``depth/<stem>.npy``, ``cameras.npz``; see :mod:`anydepth.bench.score`), one sequence per folder;
- :class:`DepthFolderSource`: a plain folder of images with a depth file beside each (16-bit PNG in
  millimetres or any unit ``depth_scale`` says, OpenEXR, or ``.npy``) and optionally a mask file;
- :class:`SyntheticSource`: scenes of :mod:`anydepth.bench.synthetic`, rendered when first needed and
  deterministic from a seed.

Folder sources check every item when they are opened: an unreadable image, a depth map of another size or one
without a single valid value is reported with its file name and left out, before any training starts.
:class:`anydepth.train.data.TrainingDataset` draws the samples from a source.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from anydepth.errors import InputError, require

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
PATCH = 14  # the ViT patch size of every family: images must be at least this large
DEPTH_SUFFIXES = (".png", ".npy", ".exr")
"""Depth file kinds of a plain folder: 16-bit PNG (integer units, see ``depth_scale``), npy and OpenEXR (float)."""
FOLDER_LAYOUT = (
    "image files with depth beside each: <stem>_depth.png (16-bit), <stem>_depth.exr / .npy, <stem>.npy / .exr, or "
    "depth/<stem>.png / .npy / .exr; optional masks <stem>_mask.png / .npy or mask/<stem>.png / .npy"
)


@dataclass
class RawFrame:
    """One frame as a source gives it, before any augmentation.

    Attributes:
        image: (H, W, 3) float32 RGB in [0, 1].
        depth: (H, W) float32 z-depth; anything outside ``valid`` is meaningless.
        valid: (H, W) bool pixels with ground truth.
        extrinsics: (3, 4) world-to-camera (OpenCV), where the source has cameras.
        intrinsics: (3, 3) pixel intrinsics, where the source has them.
        name: the file (or synthetic frame) it came from, for messages.
    """

    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    extrinsics: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    name: str = ""


class FrameSource:
    """Sequences of frames with depth; subclasses implement :meth:`sequence_lengths` and :meth:`load`."""

    has_cameras = False
    skipped: List[str]

    def sequence_lengths(self) -> List[int]:
        raise NotImplementedError

    def load(self, sequence: int, frame: int) -> RawFrame:
        raise NotImplementedError

    def describe(self) -> str:
        lengths = self.sequence_lengths()
        return f"{type(self).__name__}: {len(lengths)} sequence(s), {sum(lengths)} frame(s)"


# --- reading ----------------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    from anydepth.io.images import read_image

    image = read_image(path)
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def read_depth_file(path: PathLike, depth_scale: float = 1000.0) -> np.ndarray:
    """A depth map from a file, as float32 (H, W); zero, NaN and inf mean "no depth".

    Args:
        path: ``.npy`` (float or integer array), ``.exr`` (the ``Z`` channel, else ``Y``, ``R`` or the only one;
            OpenEXR when installed, else OpenCV's reader) or ``.png`` (16-bit, integer units).
        depth_scale: PNG values per unit of depth (1000: millimetres -> metres); ``.npy`` and ``.exr`` are read as
            they are.

    Raises:
        InputError: a missing or unreadable file, an 8-bit PNG, or not a 2-D map.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: no such depth file")
    if suffix == ".npy":
        try:
            depth = np.load(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable .npy ({exc})") from None
    elif suffix == ".png":
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise InputError(f"{path}: unreadable PNG")
        if depth.dtype != np.uint16:
            raise InputError(f"{path}: a depth PNG must be 16-bit (this one is {depth.dtype}); see --depth-scale")
        depth = depth.astype(np.float32) / float(depth_scale)
    elif suffix == ".exr":
        depth = _read_exr(path)
    else:
        raise InputError(f"{path}: unknown depth file kind; use one of {', '.join(DEPTH_SUFFIXES)}")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InputError(f"{path}: depth of shape {depth.shape}; expected (H, W)")
    return depth.astype(np.float32)


def _read_exr(path: Path) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError:
        OpenEXR = None
    if OpenEXR is not None and hasattr(OpenEXR, "File"):
        try:
            with OpenEXR.File(str(path)) as exr:
                channels = exr.channels()
                for name in ("Z", "Y", "R", "depth"):
                    if name in channels:
                        return np.asarray(channels[name].pixels)
                if len(channels) == 1:
                    return np.asarray(next(iter(channels.values())).pixels)
        except Exception as exc:  # OpenEXR raises plain RuntimeErrors on corrupt files
            raise InputError(f"{path}: unreadable EXR ({exc})") from None
        raise InputError(f"{path}: no Z, Y, R or depth channel in the EXR ({', '.join(channels)})")
    # IMREAD_UNCHANGED keeps float32 samples (vermin reads `a | b` of two names as a union type: one flag only)
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        require("OpenEXR", "export")  # raises with the extra to install
        raise InputError(f"{path}: unreadable EXR")
    return depth if depth.ndim == 2 else depth[..., 0]


def _read_mask(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        mask = np.load(path)
    else:
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise InputError(f"{path}: unreadable mask")
    return np.asarray(mask) > 0


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _image_size(path: Path) -> Optional[Tuple[int, int]]:
    from anydepth.io.images import read_header

    header = read_header(path)
    return None if header is None else (header.height, header.width)


def _check_pair(image: Path, depth: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[str]:
    """Why ``image`` and its depth (and mask) cannot be trained on, or None when they can."""
    size = _image_size(image)
    if size is None:
        try:
            size = _read_rgb(image).shape[:2]
        except InputError as exc:
            return str(exc)
    if depth.shape != size:
        return f"depth map {depth.shape[1]}x{depth.shape[0]} does not match the {size[1]}x{size[0]} image"
    if mask is not None and mask.shape != size:
        return f"mask {mask.shape[1]}x{mask.shape[0]} does not match the {size[1]}x{size[0]} image"
    valid = _valid_depth(depth) if mask is None else _valid_depth(depth) & mask
    if not valid.any():
        return "no valid depth (all zero, NaN or inf)"
    return None


def _report(skipped: List[str], where: Path) -> None:
    for line in skipped:
        logger.warning("skipped %s", line)
    if skipped:
        logger.warning("%s: %d item(s) skipped", where, len(skipped))


# --- sources ----------------------------------------------------------------------------------------------------


class GroundTruthSource(FrameSource):
    """Scenes in the evaluator's ground-truth layout (each folder: ``images/``, ``depth/<stem>.npy``,
    ``cameras.npz``); every folder is one sequence, its views in the order of ``image_names``.

    Args:
        root: one ground-truth folder, or a folder of them.
        max_depth: depth at or beyond this is not valid (None: no bound).
    """

    has_cameras = True

    def __init__(self, root: PathLike, max_depth: Optional[float] = None) -> None:
        from anydepth.bench.score import GT_LAYOUT, ground_truth_folders, read_cameras

        self.root = Path(root)
        self.max_depth = max_depth
        folders = ground_truth_folders(root)
        if not folders:
            raise InputError(f"{root}: no scene in it (expected {GT_LAYOUT})")
        self.sequences: List[Dict[str, Any]] = []
        self.skipped = []
        for folder in folders:
            try:
                extrinsics, intrinsics, names = read_cameras(folder)
            except InputError as exc:  # one bad scene is skipped, not the run
                self.skipped.append(str(exc))
                continue
            frames = []
            for index, name in enumerate(names):
                image, depth_path = folder / "images" / name, folder / "depth" / (Path(name).stem + ".npy")
                if not image.is_file() or not depth_path.is_file():
                    missing = image if not image.is_file() else depth_path
                    self.skipped.append(f"{missing}: missing")
                    continue
                try:
                    problem = _check_pair(image, read_depth_file(depth_path))
                except InputError as exc:
                    problem = str(exc)
                if problem is not None:
                    self.skipped.append(f"{image}: {problem}")
                    continue
                frames.append((image, depth_path, extrinsics[index], intrinsics[index]))
            if frames:
                self.sequences.append({"folder": folder, "frames": frames})
        _report(self.skipped, self.root)
        if not self.sequences:
            raise InputError(f"{root}: no usable frame ({len(self.skipped)} skipped; see the warnings)")

    def sequence_lengths(self) -> List[int]:
        return [len(s["frames"]) for s in self.sequences]

    def load(self, sequence: int, frame: int) -> RawFrame:
        image, depth_path, extrinsics, intrinsics = self.sequences[sequence]["frames"][frame]
        depth = read_depth_file(depth_path)
        valid = _valid_depth(depth)
        if self.max_depth is not None:
            valid &= depth < self.max_depth
        return RawFrame(_read_rgb(image), np.where(valid, depth, 0).astype(np.float32), valid,
                        extrinsics.copy(), intrinsics.copy(), str(image))  # fmt: skip


class DepthFolderSource(FrameSource):
    """A plain folder of images, each with its depth file beside it (see :data:`FOLDER_LAYOUT`), as one
    sequence in natural file-name order (so the frames of a video, named in order, make clips).

    Args:
        root: the folder.
        depth_scale: 16-bit PNG values per unit of depth (1000 for millimetres -> metres).
        max_depth: depth at or beyond this is not valid (None: no bound).
    """

    def __init__(self, root: PathLike, depth_scale: float = 1000.0, max_depth: Optional[float] = None) -> None:
        from anydepth.io.images import IMAGE_SUFFIXES
        from anydepth.io.inputs import natural_sort_key

        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{root}: no such data folder")
        if depth_scale <= 0:
            raise InputError(f"depth scale {depth_scale}: must be positive")
        self.depth_scale, self.max_depth = float(depth_scale), max_depth
        images = sorted(
            (p for p in self.root.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(("_depth", "_mask"))),
            key=natural_sort_key,
        )  # fmt: skip
        self.frames: List[Tuple[Path, Path, Optional[Path]]] = []
        self.skipped = []
        for image in images:
            depth_path = self._companion(image, ("_depth", ""), "depth", DEPTH_SUFFIXES)
            if depth_path is None:
                self.skipped.append(f"{image}: no depth file beside it ({FOLDER_LAYOUT})")
                continue
            mask_path = self._companion(image, ("_mask",), "mask", (".png", ".npy"))
            try:
                mask = None if mask_path is None else _read_mask(mask_path)
                problem = _check_pair(image, read_depth_file(depth_path, self.depth_scale), mask)
            except InputError as exc:
                problem = str(exc)
            if problem is not None:
                self.skipped.append(f"{image}: {problem}")
                continue
            self.frames.append((image, depth_path, mask_path))
        _report(self.skipped, self.root)
        if not self.frames:
            raise InputError(f"{root}: no image with usable depth ({len(images)} image(s), {len(self.skipped)} "
                             f"skipped); expected {FOLDER_LAYOUT}")  # fmt: skip

    def _companion(self, image: Path, tags: Sequence[str], folder: str, suffixes: Sequence[str]) -> Optional[Path]:
        for tag in tags:
            for suffix in suffixes:
                candidate = image.with_name(image.stem + tag + suffix)
                if candidate != image and candidate.is_file():
                    return candidate
        for suffix in suffixes:
            candidate = self.root / folder / (image.stem + suffix)
            if candidate.is_file():
                return candidate
        return None

    def sequence_lengths(self) -> List[int]:
        return [len(self.frames)]

    def load(self, sequence: int, frame: int) -> RawFrame:
        image, depth_path, mask_path = self.frames[frame]
        depth = read_depth_file(depth_path, self.depth_scale)
        valid = _valid_depth(depth)
        if mask_path is not None:
            valid &= _read_mask(mask_path)
        if self.max_depth is not None:
            valid &= depth < self.max_depth
        return RawFrame(_read_rgb(image), np.where(valid, depth, 0).astype(np.float32), valid, name=str(image))


SYNTHETIC_KINDS = ("indoor", "outdoor", "mixed", "video")
"""Scenes of the synthetic source: rooms, outdoor grounds under the sky, both in turn (orbits of views), or walks
through rooms (smooth trajectories, for video models)."""


SYNTHETIC_CACHE_BYTES = 1 << 30
"""Memory a synthetic source keeps its rendered frames in by default."""


class SyntheticSource(FrameSource):
    """Scenes of :mod:`anydepth.bench.synthetic`, rendered when a sample first needs them (and kept in a small
    cache), deterministic from ``seed``: scene ``i`` is built from seed ``seed + i``.

    Args:
        seed: the first scene's seed (evaluation sets use another range, see :meth:`held_out`).
        scenes: number of scenes.
        views: views (or frames) per scene.
        width, height: rendered size (samples are then resized and cropped).
        kind: one of :data:`SYNTHETIC_KINDS`.
        cache_frames: rendered frames kept in memory (None: every frame of the source, up to
            :data:`SYNTHETIC_CACHE_BYTES`). Samples draw frames at random, so a cache smaller than the source
            renders most frames again on every use: a render costs about as much as a small model's training
            step on one frame.
        max_depth: depth at or beyond this is not valid (None: the generator's own range; outdoors 80).
    """

    has_cameras = True

    def __init__(self, seed: int = 0, scenes: int = 64, views: int = 8, width: int = 160, height: int = 120,
                 kind: str = "mixed", cache_frames: Optional[int] = None,
                 max_depth: Optional[float] = None) -> None:  # fmt: skip
        if kind not in SYNTHETIC_KINDS:
            raise InputError(f"unknown synthetic kind {kind!r}; choose one of {', '.join(SYNTHETIC_KINDS)}")
        if scenes < 1 or views < 1 or width < PATCH or height < PATCH:
            raise InputError(f"a synthetic source needs scenes, views >= 1 and a size of at least {PATCH} px")
        self.seed, self.scenes, self.views = int(seed), int(scenes), int(views)
        self.width, self.height, self.kind = int(width), int(height), kind
        self.max_depth = max_depth
        self.skipped = []
        self._scenes: Dict[int, Tuple[Any, List[np.ndarray]]] = {}
        self._cache: OrderedDict = OrderedDict()
        if cache_frames is None:  # image (uint8 RGB) + depth (float32) + validity (bool) per pixel
            fitting = SYNTHETIC_CACHE_BYTES // (self.width * self.height * 8)
            cache_frames = max(1, min(self.scenes * self.views, fitting))
        self._cache_frames = int(cache_frames)

    def held_out(self, scenes: int = 8) -> SyntheticSource:
        """The same kind of source on scenes whose seeds no training run of this source uses (seed + 10^6)."""
        return SyntheticSource(self.seed + 1_000_000, scenes, self.views, self.width, self.height, self.kind,
                               max_depth=self.max_depth)  # fmt: skip

    def sequence_lengths(self) -> List[int]:
        return [self.views] * self.scenes

    def _scene(self, index: int):
        from anydepth.bench import synthetic

        if index not in self._scenes:
            scene_seed = self.seed + index
            outdoor = self.kind == "outdoor" or (self.kind == "mixed" and index % 2 == 1)
            scene = synthetic.outdoor_scene(scene_seed) if outdoor else synthetic.indoor_scene(scene_seed)
            if self.kind == "video":
                poses = synthetic.walk(scene, self.views, seed=scene_seed)
            else:
                poses = synthetic.orbit(scene, self.views, seed=scene_seed)
            self._scenes[index] = (scene, poses)
        return self._scenes[index]

    def load(self, sequence: int, frame: int) -> RawFrame:
        from anydepth.bench import synthetic

        key = (sequence, frame)
        if key not in self._cache:
            scene, poses = self._scene(sequence)
            K = synthetic.intrinsics_for(self.width, self.height)
            rendered = synthetic.render(scene, poses[frame], K, self.width, self.height)
            self._cache[key] = rendered
            if len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        f = self._cache[key]
        valid = f.valid if self.max_depth is None else f.valid & (f.depth < self.max_depth)
        depth = np.where(valid, f.depth, 0).astype(np.float32)
        name = f"synthetic scene {self.seed + sequence} view {frame}"
        return RawFrame(
            f.image.astype(np.float32) / 255.0, depth, valid, f.extrinsics.copy(), f.intrinsics.copy(), name
        )


def open_source(spec: PathLike, depth_scale: float = 1000.0, max_depth: Optional[float] = None,
                **synthetic: Any) -> FrameSource:  # fmt: skip
    """The source ``spec`` names: ``"synthetic"``, a ground-truth folder (or a folder of them), or a plain
    folder of images with depth. ``synthetic`` keywords go to :class:`SyntheticSource`."""
    if str(spec) == "synthetic":
        return SyntheticSource(max_depth=max_depth, **synthetic)
    root = Path(spec)
    if not root.is_dir():
        raise InputError(f"{spec}: no such data folder (give a folder, or 'synthetic')")
    from anydepth.bench.score import ground_truth_folders

    if ground_truth_folders(root):
        return GroundTruthSource(root, max_depth)
    return DepthFolderSource(root, depth_scale, max_depth)
