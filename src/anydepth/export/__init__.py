"""Exporters that turn predictions into files; one module per format family.

The package itself is callable: ``anydepth.export(prediction, "out/", "mini_npz-glb")`` is
:func:`anydepth.export.formats.export`, the function the CLI and the DA3 facade use.
"""

import sys
import types

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


class _CallableModule(types.ModuleType):
    def __call__(self, prediction, export_dir, export_format="mini_npz", **options):
        """Write ``prediction`` in the formats of ``export_format`` (joined by '-') under ``export_dir``.

        See :func:`anydepth.export.formats.export` for the formats and options.
        """
        from anydepth.export.formats import export

        return export(prediction, export_dir, export_format, **options)


sys.modules[__name__].__class__ = _CallableModule
