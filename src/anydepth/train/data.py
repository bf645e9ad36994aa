"""Training data: sources of frames with depth (folders, the synthetic generator) and the seeded samples drawn
from them (crops and resizes to multiples of 14, flips with their cameras, groups of views, clips of frames).

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

:class:`TrainingDataset` turns a source into samples. Sample ``key`` is drawn by ``numpy.random.default_rng((seed,
key))``, so a sample depends only on the seed and its key, never on what was drawn before: a training run that
resumes at step ``k`` draws exactly the samples an uninterrupted run draws there.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor

from anydepth.errors import InputError, require

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
PATCH = 14  # the ViT patch size of every family: crops are multiples of it
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


def ground_truth_folders(root: PathLike) -> List[Path]:
    """``root`` itself when it holds ``cameras.npz``, else its sub-folders that do, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    if (root / "cameras.npz").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "cameras.npz").is_file())


class GroundTruthSource(FrameSource):
    """Scenes in the evaluator's ground-truth layout (each folder: ``images/``, ``depth/<stem>.npy``,
    ``cameras.npz``); every folder is one sequence, its views in the order of ``image_names``.

    Args:
        root: one ground-truth folder, or a folder of them.
        max_depth: depth at or beyond this is not valid (None: no bound).
    """

    has_cameras = True

    def __init__(self, root: PathLike, max_depth: Optional[float] = None) -> None:
        from anydepth.bench.score import GT_LAYOUT

        self.root = Path(root)
        self.max_depth = max_depth
        folders = ground_truth_folders(root)
        if not folders:
            raise InputError(f"{root}: no scene in it (expected {GT_LAYOUT})")
        self.sequences: List[Dict[str, Any]] = []
        self.skipped = []
        for folder in folders:
            cameras = folder / "cameras.npz"
            try:
                with np.load(cameras) as data:
                    extrinsics = np.asarray(data["extrinsics"], np.float64)
                    intrinsics = np.asarray(data["intrinsics"], np.float64)
                    names = [str(n) for n in data["image_names"]]
            except (KeyError, ValueError, OSError) as exc:
                self.skipped.append(f"{cameras}: unreadable or incomplete ({exc}); expected {GT_LAYOUT}")
                continue
            if extrinsics.shape != (len(names), 3, 4) or intrinsics.shape != (len(names), 3, 3):
                self.skipped.append(f"{cameras}: extrinsics {extrinsics.shape} and intrinsics {intrinsics.shape} do "
                                    f"not match {len(names)} image names")  # fmt: skip
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


class SyntheticSource(FrameSource):
    """Scenes of :mod:`anydepth.bench.synthetic`, rendered when a sample first needs them (and kept in a small
    cache), deterministic from ``seed``: scene ``i`` is built from seed ``seed + i``.

    Args:
        seed: the first scene's seed (evaluation sets use another range, see :meth:`held_out`).
        scenes: number of scenes.
        views: views (or frames) per scene.
        width, height: rendered size (samples are then resized and cropped).
        kind: one of :data:`SYNTHETIC_KINDS`.
        cache_frames: rendered frames kept in memory.
        max_depth: depth at or beyond this is not valid (None: the generator's own range; outdoors 80).
    """

    has_cameras = True

    def __init__(self, seed: int = 0, scenes: int = 64, views: int = 8, width: int = 160, height: int = 120,
                 kind: str = "mixed", cache_frames: int = 1024, max_depth: Optional[float] = None) -> None:  # fmt: skip
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
        self._cache_frames = cache_frames

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
    if ground_truth_folders(root):
        return GroundTruthSource(root, max_depth)
    return DepthFolderSource(root, depth_scale, max_depth)


# --- samples ----------------------------------------------------------------------------------------------------


@dataclass
class TrainingSample:
    """One sample: V frames (one image, the views of a scene, or a clip) at one size.

    Attributes:
        images: (V, 3, h, w) float32 normalised as the family's preprocessing does (``(rgb - mean) / std``).
        depth: (V, h, w) float32 z-depth, 0 where not valid.
        valid: (V, h, w) bool.
        extrinsics: (V, 3, 4) world-to-camera, or None.
        intrinsics: (V, 3, 3) of the (h, w) images, or None.
        names: the frames it was made of.
    """

    images: Tensor
    depth: Tensor
    valid: Tensor
    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None
    names: List[str] = field(default_factory=list)


@dataclass
class Batch:
    """B samples stacked: ``images (B, V, 3, h, w)``, ``depth`` and ``valid (B, V, h, w)``, cameras
    ``(B, V, 3, 4)`` / ``(B, V, 3, 3)`` when every sample has them."""

    images: Tensor
    depth: Tensor
    valid: Tensor
    extrinsics: Optional[Tensor] = None
    intrinsics: Optional[Tensor] = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(*(move(t) for t in (self.images, self.depth, self.valid, self.extrinsics, self.intrinsics)))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def collate(samples: Sequence[TrainingSample]) -> Batch:
    """Stack samples of one size into a :class:`Batch` (cameras only where every sample has them)."""
    cams = all(s.extrinsics is not None and s.intrinsics is not None for s in samples)
    return Batch(
        images=torch.stack([s.images for s in samples]),
        depth=torch.stack([s.depth for s in samples]),
        valid=torch.stack([s.valid for s in samples]),
        extrinsics=torch.stack([s.extrinsics for s in samples]) if cams else None,  # type: ignore[misc]
        intrinsics=torch.stack([s.intrinsics for s in samples]) if cams else None,  # type: ignore[misc]
    )


def parse_size(value: Union[str, int, Sequence[int]]) -> Tuple[int, int]:
    """``"WxH"``, one int (square) or ``(h, w)`` -> ``(h, w)``, both multiples of 14.

    >>> parse_size("126x98"), parse_size(56)
    ((98, 126), (56, 56))
    """
    if isinstance(value, str):
        try:
            parts = [int(v) for v in value.lower().split("x")]
        except ValueError:
            raise InputError(f"size {value!r}: write WIDTHxHEIGHT, e.g. 126x98") from None
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise InputError(f"size {value!r}: write WIDTHxHEIGHT, e.g. 126x98")
        h, w = parts[1], parts[0]
    elif isinstance(value, int):
        h = w = value
    else:
        h, w = (int(v) for v in value)
    if h <= 0 or w <= 0 or h % PATCH or w % PATCH:
        raise InputError(f"size {w}x{h}: both sides must be positive multiples of {PATCH} (the patch size)")
    return h, w


class TrainingDataset(torch.utils.data.Dataset):
    """Seeded samples of ``frames`` frames from a source, cropped to ``size``.

    Training samples (``train=True``) pick a random sequence and frames (a clip of consecutive frames with
    ``clip``, else a random group of views), resize by a random factor so that the crop fits (at least the size
    that covers it, up to ``max_zoom`` times more), take a random crop and flip half of them horizontally. All
    frames of a sample share the resize, the crop and the flip, and the cameras follow: the intrinsics are scaled
    and shifted; a flip mirrors the camera's x axis, which for the extrinsics is ``[R | t] -> [F R F | F t]``
    with ``F = diag(-1, 1, 1)`` (the mirrored scene seen by a proper rotation, so the views stay consistent).

    Evaluation samples (``train=False``) are fixed: item ``i`` is the i-th frame (or the i-th sequence's first
    frames), resized to cover ``size`` and centre-cropped, not flipped.

    Args:
        source: where the frames come from.
        size: ``(h, w)`` of the samples, multiples of 14.
        mean, std: the family's normalisation (its preset's ``mean`` and ``std``).
        frames: frames per sample (1: single images).
        clip: consecutive frames (video) rather than a random set of views (multi-view).
        train: random (seeded) augmentation, or the fixed evaluation crops.
        seed: seed of the draws.
        max_zoom: the largest extra resize factor of training samples.
        flip: flip training samples horizontally with probability 1/2.
    """

    def __init__(self, source: FrameSource, size: Tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 frames: int = 1, clip: bool = False, train: bool = True, seed: int = 0, max_zoom: float = 1.5,
                 flip: bool = True) -> None:  # fmt: skip
        self.source, self.size = source, parse_size(size)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.frames, self.clip, self.train, self.seed = int(frames), bool(clip), bool(train), int(seed)
        self.max_zoom, self.flip = float(max_zoom), bool(flip)
        if self.frames < 1:
            raise InputError(f"frames per sample {frames}: must be at least 1")
        if max_zoom < 1.0:
            raise InputError(f"max_zoom {max_zoom}: must be at least 1")
        lengths = source.sequence_lengths()
        self.sequences = [i for i, n in enumerate(lengths) if n >= self.frames]
        if not self.sequences:
            raise InputError(f"{source.describe()}: no sequence has {self.frames} frames for a sample")
        if self.frames == 1:
            self.items = [(i, j) for i, n in enumerate(lengths) for j in range(n)]
        else:
            self.items = [(i, 0) for i in self.sequences]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> TrainingSample:
        return self.sample(key)

    def _pick(self, rng: np.random.Generator, key: int) -> Tuple[int, List[int]]:
        lengths = self.source.sequence_lengths()
        if not self.train:
            sequence, first = self.items[key % len(self.items)]
            return sequence, list(range(first, first + self.frames))
        if self.frames == 1:
            sequence, frame = self.items[int(rng.integers(len(self.items)))]
            return sequence, [frame]
        sequence = self.sequences[int(rng.integers(len(self.sequences)))]
        n = lengths[sequence]
        if self.clip:
            start = int(rng.integers(n - self.frames + 1))
            return sequence, list(range(start, start + self.frames))
        return sequence, [int(j) for j in rng.choice(n, self.frames, replace=False)]

    def sample(self, key: int) -> TrainingSample:
        """Sample ``key``: a function of (seed, key) only."""
        rng = np.random.default_rng((self.seed, int(key)))
        sequence, frame_ids = self._pick(rng, key)
        raw = [self.source.load(sequence, j) for j in frame_ids]
        H0, W0 = raw[0].image.shape[:2]
        if any(f.image.shape[:2] != (H0, W0) for f in raw):
            raise InputError(f"the frames of one sample differ in size: {', '.join(f.name for f in raw)}")
        h, w = self.size
        cover = max(h / H0, w / W0)
        zoom = cover * (float(rng.uniform(1.0, self.max_zoom)) if self.train else 1.0)
        new_h, new_w = max(h, round(H0 * zoom)), max(w, round(W0 * zoom))
        if self.train:
            y0, x0 = int(rng.integers(new_h - h + 1)), int(rng.integers(new_w - w + 1))
            flipped = self.flip and bool(rng.random() < 0.5)
        else:
            y0, x0, flipped = (new_h - h) // 2, (new_w - w) // 2, False
        images, depths, valids, extrinsics, intrinsics = [], [], [], [], []
        for f in raw:
            image, depth, valid, ext, K = self._resize_crop(f, new_h, new_w, y0, x0, h, w, flipped)
            images.append((image - self.mean) / self.std)
            depths.append(depth)
            valids.append(valid)
            extrinsics.append(ext)
            intrinsics.append(K)
        cams = all(e is not None for e in extrinsics) and all(k is not None for k in intrinsics)
        return TrainingSample(
            images=torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()),
            depth=torch.from_numpy(np.stack(depths)),
            valid=torch.from_numpy(np.stack(valids)),
            extrinsics=torch.from_numpy(np.stack(extrinsics)).float() if cams else None,
            intrinsics=torch.from_numpy(np.stack(intrinsics)).float() if cams else None,
            names=[f.name for f in raw],
        )

    @staticmethod
    def _resize_crop(f: RawFrame, new_h: int, new_w: int, y0: int, x0: int, h: int, w: int, flipped: bool):
        H0, W0 = f.image.shape[:2]
        shrink = new_h < H0
        image = cv2.resize(f.image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        # nearest neighbour for depth and validity: an interpolated depth across an edge is a point nowhere
        depth = cv2.resize(f.depth, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        valid = cv2.resize(f.valid.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0
        crop = (slice(y0, y0 + h), slice(x0, x0 + w))
        image, depth, valid = image[crop], depth[crop], valid[crop]
        K = ext = None
        if f.intrinsics is not None:
            K = np.asarray(f.intrinsics, np.float64).copy()
            K[0] *= new_w / W0  # pixel centres at +1/2: a resize scales the continuous coordinates
            K[1] *= new_h / H0
            K[0, 2] -= x0
            K[1, 2] -= y0
        if f.extrinsics is not None:
            ext = np.asarray(f.extrinsics, np.float64)[:3, :4].copy()
        if flipped:
            image, depth, valid = image[:, ::-1], depth[:, ::-1], valid[:, ::-1]
            if K is not None:
                K[0, 2] = w - K[0, 2]
            if ext is not None:
                F = np.diag([-1.0, 1.0, 1.0])
                ext = np.concatenate([F @ ext[:, :3] @ F, F @ ext[:, 3:]], axis=1)
        return (np.ascontiguousarray(image, np.float32), np.ascontiguousarray(depth, np.float32),
                np.ascontiguousarray(valid), ext, K)  # fmt: skip

    def batch(self, keys: Sequence[int]) -> Batch:
        """The samples of ``keys`` stacked into one :class:`Batch`."""
        return collate([self.sample(k) for k in keys])
