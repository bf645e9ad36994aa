"""NYU Depth V2 as Video Depth Anything evaluates it on video (:func:`convert_nyuv2`): eight raw sequences,
extracted to frames."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from anydepth.bench.datasets.sequences import (
    Frame,
    crop,
    is_complete,
    list_files,
    pick_scenes,
    read_depth_png,
    read_rgb,
    upstream_order,
    write_sequence,
)
from anydepth.errors import InputError

NYUV2_SCENES = ("basement_0001a", "bookstore_0001a", "cafe_0001a", "classroom_0001a", "kitchen_0003", "office_0004",
                "playroom_0002", "study_0002")  # fmt: skip
"""The eight raw scenes Video Depth Anything extracts (the comment in its ``dataset_extract_nyuv2.py``)."""
NYUV2_MAX_DEPTH = 10.0
NYUV2_MAX_FRAMES = 500  # "~500 frames in paper": nyuv2_video_500.json, frames [0, 500)
NYUV2_CROP = (45, 471, 41, 601)  # rows 45:471, columns 41:601 of the 640 x 480 frame (the Eigen crop)
NYUV2_PER_METRE = 6000.0  # the factor Video Depth Anything's gen_json gives its extracted NYUv2 depth PNGs
NYUV2_K = np.array([[518.85790117450188, 0.0, 325.58244941119034], [0.0, 519.46961112127485, 253.73616633400465],
                    [0.0, 0.0, 1.0]])  # fmt: skip
"""The colour camera of the NYU Depth V2 toolbox (``camera_params.m``: fx_rgb, fy_rgb, cx_rgb, cy_rgb)."""
LAYOUT = "<scene>/rgb/<frame>.jpg and <scene>/depth/<frame>.png (16-bit, metres x 6000, 640 x 480), per raw scene"


def _frames(source: Path, names: List[str]) -> Iterator[Frame]:
    top, bottom, left, right = NYUV2_CROP
    for name in names:
        stem = name[:-4]
        image = read_rgb(source / "rgb" / name)
        depth = read_depth_png(source / "depth" / f"{stem}.png", NYUV2_PER_METRE)
        if depth.shape[0] < bottom or depth.shape[1] < right:
            raise InputError(f"{source / 'depth' / (stem + '.png')}: {depth.shape} is smaller than the 480 x 640 "
                             "frame the crop rows 45:471, columns 41:601 needs")  # fmt: skip
        yield crop(Frame(stem, image, depth, NYUV2_K, np.eye(3, 4)), top, bottom, left, right)


def convert_nyuv2(
    root: Union[str, Path],
    out: Union[str, Path],
    scenes: Optional[Sequence[str]] = None,
    max_frames: int = NYUV2_MAX_FRAMES,
) -> List[Path]:
    """NYU Depth V2 raw sequences, extracted to frames under ``root``, -> ``<out>/nyuv2-<scene>``.

    Protocol (Video Depth Anything's ``dataset_extract_nyuv2.py`` and ``eval/eval.py``, its "~500 frames" table;
    its frames come from a MATLAB extraction of the raw dataset that it does not ship, so the layout is the one
    its scripts read):

    - scenes: basement_0001a, bookstore_0001a, cafe_0001a, classroom_0001a, kitchen_0003, office_0004,
      playroom_0002, study_0002 (:data:`NYUV2_SCENES`);
    - frames: the first ``max_frames`` (500) in file order;
    - crop: rows 45:471, columns 41:601 (560 x 426), colour and depth alike, the principal point moved;
    - depth: 16-bit PNG / 6000 (metres), 0 = none; scored where 1e-3 < depth < 10 m;
    - intrinsics: the toolbox's colour camera (:data:`NYUV2_K`); no poses (``has_poses`` false: identity
      extrinsics, no TAE).

    DepthCrafter evaluates NYUv2 differently: the 654 labelled test images, each a one-frame "video", filled depth
    PNGs / 1000, the same crop and 10 m cap. Scenes already converted are kept; errors come before any work.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputError(f"{root}: no such NYUv2 folder (expected {LAYOUT})")
    chosen = pick_scenes(scenes, NYUV2_SCENES, lambda s: root / s, "NYUv2", LAYOUT)
    plans = []
    for scene in chosen:
        source = root / scene
        names = upstream_order(list_files(source / "rgb", ".jpg", LAYOUT))
        names = names[:max_frames] if max_frames > 0 else names
        missing = [n for n in names if not (source / "depth" / f"{n[:-4]}.png").is_file()]
        if missing:
            raise InputError(f"{source / 'depth' / (missing[0][:-4] + '.png')}: missing (expected {LAYOUT})")
        plans.append((scene, source, names))
    folders = []
    for scene, source, names in plans:
        folder = out / f"nyuv2-{scene}"
        folders.append(folder)
        if is_complete(folder):
            continue
        write_sequence(folder, _frames(source, names), "nyuv2", scene, NYUV2_MAX_DEPTH, False, source=str(source),
                       source_frames=names, crop=list(NYUV2_CROP))  # fmt: skip
    return folders
