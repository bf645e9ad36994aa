"""What a scene job needs in memory, estimated from its views' headers before any pixel is decoded.

The estimate is linear and on the safe side: a server compares it with its memory budget before it starts a job
(:mod:`anydepth.web.budget`). Its constants were measured with ``benchmarks/scene_memory.py`` and
``benchmarks/service_memory.py`` (benchmarks/RESULTS.md, "Memory of a scene job"); the weights of the model are
not part of it (the warm-model cache counts those, bf16 copies included).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

from anydepth.errors import InputError
from anydepth.io.images import ImageHeader, reduced_decode_scale
from anydepth.pipelines.da3_preprocess import bound_resize_size, snap_size

WORKING_BYTES_PER_PIXEL: Dict[str, int] = {"vits": 500, "vitb": 900, "vitl": 1_500, "vitg": 3_000}
"""Memory of a DA3 forward pass, its outputs and a mini_npz + glb export, over the loaded model and besides
:data:`JOB_BYTES`, per pixel of the processed views (S x h x w), by backbone size.

Measured with ``benchmarks/scene_memory.py`` (float32 and bf16, 2, 8 and 16 views of 378x504): the peak grows
less than linearly with the views (the heads run 8 views at a time), and these figures are at or above every
run, rounded up; the closest is the 2-view one of vitl, 785 MiB measured against 801 estimated. vitg (DA3-GIANT,
and DA3NESTED, which runs a giant and a large network) did not fit the machine that measured the others: twice
vitl, for its 1.5 times wider backbone and the second network of the nested model."""

DECODE_BYTES_PER_PIXEL = 8
"""Reading one 8-bit view: PIL's 4 bytes per pixel and the array's 3 (7.6 measured)."""

HIGH_DEPTH_DECODE_BYTES_PER_PIXEL = 32
"""Reading one 16-bit view: the decoder's uint16 pixels (6 bytes) and two float32 arrays (12 each)."""

INPUT_RES_BYTES_PER_PIXEL = 64
"""Outputs at the input resolution (``export_at_input_res``), per input pixel: depth, confidence and sky in
float32, their float32 copies on the way, the colours, and the point cloud the exports build from them."""

JOB_BYTES = 256 * 2**20
"""A job's fixed share: the export's buffers, the threads' allocator arenas, what an interpreter allocates."""


def processed_size(height: int, width: int, process_res: int, process_res_method: str) -> Tuple[int, int]:
    """``(h, w)`` of a view after the DA3 resize (before the common crop of mixed sizes, which only shrinks).

    >>> processed_size(8000, 8000, 504, "upper_bound_resize")
    (504, 504)
    """
    h1, w1 = bound_resize_size(height, width, process_res, process_res_method)
    return snap_size(h1, w1, process_res_method)


def decode_bytes(header: ImageHeader, process_res: int, process_res_method: str, reduce_on_decode: bool) -> int:
    """Peak bytes of reading one view with :func:`anydepth.io.images.read_image` (a JPEG maybe reduced)."""
    if header.high_depth:
        return HIGH_DEPTH_DECODE_BYTES_PER_PIXEL * header.height * header.width
    pixels = header.height * header.width
    if reduce_on_decode and header.format == "JPEG":
        bound = bound_resize_size(header.height, header.width, process_res, process_res_method)
        pixels //= reduced_decode_scale((header.height, header.width), bound) ** 2
    return DECODE_BYTES_PER_PIXEL * pixels


def scene_working_bytes(
    views: Sequence[ImageHeader],
    encoder: str,
    process_res: int = 504,
    process_res_method: str = "upper_bound_resize",
    export_at_input_res: bool = False,
    reduce_on_decode: bool = False,
) -> int:
    """Bytes a scene job needs besides the model's weights, from its views' headers: one view being read at its
    full (or reduced) size, the processed views through the network and the exports, outputs at the input size
    when asked, and :data:`JOB_BYTES`.

    Args:
        views: one header per view (:func:`anydepth.io.images.read_header`).
        encoder: the model's backbone size ("vits", "vitb", "vitl", "vitg"; ``Preset.encoder``).
        process_res, process_res_method, export_at_input_res: the job's options.
        reduce_on_decode: JPEG views are decoded reduced (the servers).

    Example:
        >>> views = [ImageHeader(8000, 8000, "PNG")] * 16  # one read at a time: 488 MiB of the total
        >>> round(scene_working_bytes(views, "vits") / 2**30, 2)  # GiB
        2.62
        >>> jpegs = [ImageHeader(8000, 8000, "JPEG")] * 16  # decoded at an eighth
        >>> round(scene_working_bytes(jpegs, "vits", reduce_on_decode=True) / 2**30, 2)
        2.15
    """
    if not views:
        raise InputError("a scene job needs at least one view")
    if encoder not in WORKING_BYTES_PER_PIXEL:
        raise InputError(f"no memory figure for a {encoder!r} backbone; known: {', '.join(WORKING_BYTES_PER_PIXEL)}")
    processed = sum(
        h * w for h, w in (processed_size(v.height, v.width, process_res, process_res_method) for v in views)
    )
    reading = max(decode_bytes(v, process_res, process_res_method, reduce_on_decode) for v in views)
    total = JOB_BYTES + reading + WORKING_BYTES_PER_PIXEL[encoder] * processed
    if export_at_input_res:
        total += INPUT_RES_BYTES_PER_PIXEL * sum(v.height * v.width for v in views)
    return total
