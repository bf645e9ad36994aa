"""Exporters that turn predictions into files; one module per format family."""

from anydepth.export.depth_maps import (
    COLORMAPS,
    colorize,
    save_exr,
    save_image,
    save_npy,
    save_npz,
    save_png16,
    save_png16_metric,
    side_by_side,
)

__all__ = [
    "COLORMAPS",
    "colorize",
    "save_exr",
    "save_image",
    "save_npy",
    "save_npz",
    "save_png16",
    "save_png16_metric",
    "side_by_side",
]
