"""MPI Sintel as the video-depth papers evaluate it (:func:`convert_sintel`), with its binary ``.dpt`` / ``.cam``
files read by the format's own definition."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from anydepth.bench.datasets.sequences import (
    Frame,
    is_complete,
    list_files,
    pick_scenes,
    read_rgb,
    upstream_order,
    write_sequence,
)
from anydepth.errors import InputError

SINTEL_SCENES = (
    "alley_1", "alley_2", "ambush_2", "ambush_4", "ambush_5", "ambush_6", "ambush_7", "bamboo_1", "bamboo_2",
    "bandage_1", "bandage_2", "cave_2", "cave_4", "market_2", "market_5", "market_6", "mountain_1", "shaman_2",
    "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3",
)  # fmt: skip
"""The 23 training sequences (DepthCrafter's ``benchmark/csv/meta_sintel.csv``; Video Depth Anything lists the
whole ``training/clean`` folder, the same 23)."""
SINTEL_MAX_DEPTH = 70.0  # both papers' eval: dataset_max_depth / max_depth_eval 70
SINTEL_MAX_FRAMES = 100  # Video Depth Anything's sintel_video.json: frames [0, 100); no sequence has more than 50
SINTEL_TAG = 202021.25  # the sanity value that opens every .dpt and .cam file (little-endian float32)
LAYOUT = ("training/clean/<scene>/frame_0001.png, training/depth/<scene>/frame_0001.dpt and "
          "training/camdata_left/<scene>/frame_0001.cam (MPI-Sintel-complete + MPI-Sintel-depth-training)")  # fmt: skip


def read_dpt(path: Path) -> np.ndarray:
    """(H, W) float32 depth of a Sintel ``.dpt`` file: float32 tag 202021.25, int32 width, int32 height, then
    width x height float32 depths (metres), row by row, little-endian."""
    data = path.read_bytes() if path.is_file() else b""
    if len(data) < 12 or np.frombuffer(data, "<f4", 1)[0] != SINTEL_TAG:
        raise InputError(f"{path}: missing or not a Sintel .dpt file (tag {SINTEL_TAG}, width, height, float32s)")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    if width <= 0 or height <= 0 or len(data) != 12 + 4 * width * height:
        raise InputError(f"{path}: a .dpt of {len(data)} bytes cannot hold {width}x{height} float32 depths")
    return np.frombuffer(data, "<f4", width * height, offset=12).reshape(height, width).copy()


def read_cam(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(intrinsics (3, 3), extrinsics (3, 4) world-to-camera) of a Sintel ``.cam`` file: float32 tag 202021.25,
    then 9 float64 (the intrinsic matrix, row-major) and 12 float64 (the 3x4 extrinsic [R | t]), little-endian."""
    data = path.read_bytes() if path.is_file() else b""
    if len(data) != 4 + 8 * 21 or np.frombuffer(data, "<f4", 1)[0] != SINTEL_TAG:
        raise InputError(f"{path}: missing or not a Sintel .cam file (tag {SINTEL_TAG}, 9 + 12 float64)")
    values = np.frombuffer(data, "<f8", 21, offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


def _frames(scene: str, training: Path, names: List[str]) -> Iterator[Frame]:
    for name in names:
        stem = name[:-4]
        image = read_rgb(training / "clean" / scene / name)
        depth = read_dpt(training / "depth" / scene / f"{stem}.dpt")
        K, w2c = read_cam(training / "camdata_left" / scene / f"{stem}.cam")
        yield Frame(stem, image, depth, K, w2c)


def convert_sintel(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = SINTEL_MAX_FRAMES,
) -> List[Path]:
    """Sintel's training sequences under ``root`` -> ``<out>/sintel-<scene>``, one scene folder per sequence.

    Protocol (Video Depth Anything's ``benchmark/dataset_extract/dataset_extract_sintel.py`` and ``eval/eval.py``,
    which agree with DepthCrafter's here unless said):

    - scenes: the 23 sequences of ``training/clean`` (:data:`SINTEL_SCENES`), the clean pass;
    - frames: each whole sequence in file order (the first ``max_frames``, 100, of them; every sequence has 20 to
      50, so all frames: DepthCrafter's ``--seq_len 50`` keeps the same);
    - no crop and no resize: the eval window 0:436, 0:1024 is the whole 1024 x 436 frame;
    - depth: the ``.dpt`` float32 metres, as they are (non-finite or non-positive -> 0); scored where
      1e-3 < depth < 70 m. Video Depth Anything's extraction stores ``depth.astype(uint16)`` in a PNG read back
      with factor 65535 / 650, which truncates depth to whole metres before dividing it by ~100.8 (so its 70 m
      cap never bites); we keep DepthCrafter's float metres, which that quantisation can only have damaged;
    - cameras: ``camdata_left/<scene>/<frame>.cam`` per frame: the intrinsic matrix and the world-to-camera
      extrinsic, so the video mode also reports TAE (neither paper reports TAE on Sintel).

    Scenes already converted are kept. A missing root part or an unknown scene is one :class:`InputError`
    before any work.
    """
    root, out = Path(root), Path(out)
    training = root / "training"
    if not (training / "clean").is_dir():
        raise InputError(f"{root}: no training/clean folder (expected {LAYOUT})")
    chosen = pick_scenes(scenes, SINTEL_SCENES, lambda s: training / "clean" / s, "Sintel", LAYOUT)
    for folder in ("depth", "camdata_left"):
        for scene in chosen:
            if not (training / folder / scene).is_dir():
                raise InputError(f"{training / folder / scene}: missing (expected {LAYOUT})")
    folders = []
    for scene in chosen:
        folder = out / f"sintel-{scene}"
        folders.append(folder)
        if is_complete(folder):
            continue
        names = upstream_order(list_files(training / "clean" / scene, ".png", LAYOUT))
        names = names[:max_frames] if max_frames > 0 else names
        write_sequence(folder, _frames(scene, training, names), "sintel", scene, SINTEL_MAX_DEPTH, True,
                       source=str(training / "clean" / scene), source_frames=names, crop=None)  # fmt: skip
    return folders
