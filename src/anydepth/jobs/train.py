"""The fine-tuning job: typed options, checked before any work, then :mod:`anydepth.train` from a preset's network
to weights in its official layout (docs/training.md).

The run's folder holds ``checkpoints/last.pt`` (resumable), ``weights/`` (what ``--weights`` takes afterwards)
and ``train.json`` (the options, the evaluations, throughput and peak memory).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from anydepth.errors import InputError, OptionError
from anydepth.io.atomic import atomic_path

logger = logging.getLogger(__name__)

SCHEDULES = ("poly", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SYNTHETIC = "synthetic"


@dataclass
class TrainOptions:
    """What ``anydepth train`` does (every default of a fine-tuning run lives here).

    Attributes:
        model: the preset whose network is trained (``anydepth models``); V2 relative and metric, DA3 any-view,
            mono and metric, Video Depth Anything.
        data: a folder (the evaluator's ground-truth layout, or images with depth files beside them) or
            ``"synthetic"`` (the generator, rendered on the fly from ``seed``).
        out: the run's folder.
        weights: the starting weights (file, folder or hub repo id); None: the preset's official weights.
        from_scratch: start from random weights instead (no download).
        revision: hub branch, tag or commit of the weights.
        val_data: held-out data for the evaluations; None: held-out synthetic scenes when ``data`` is synthetic,
            else no evaluation.
        steps, batch_size, lr, encoder_lr_mult, freeze_encoder, weight_decay, warmup_steps, schedule, accum,
            grad_clip, eval_every, eval_items, save_every, seed: as :class:`anydepth.train.TrainConfig`.
        precision: "auto" (bf16 on CUDA and on CPUs whose bf16 matmuls are native and faster, else fp32), "fp32",
            "bf16" or "fp16" (CUDA).
        device: "auto", "cpu", "cuda", "cuda:N".
        threads: CPU threads (None: torch's default).
        workers: processes that prepare batches ahead of the training (0: none).
        resume: continue from ``<out>/checkpoints/last.pt`` when it exists.
        size: training crop ``WIDTHxHEIGHT`` (multiples of 14); None: the preset's processing size, square.
        frames: frames per sample: views of a scene (DA3 any-view) or clip length (video); None: the family's.
        depth_scale: 16-bit PNG depth values per metre (1000: millimetres).
        max_depth: depth at or beyond this is not trained on; None: the metric head's range, else no bound.
        synthetic_kind, synthetic_scenes, synthetic_views: the synthetic data (see
            :class:`anydepth.train.SyntheticSource`).
        ssi_alignment: how the V2 relative loss removes scale and shift: "lstsq" (MiDaS's least-squares fit) or
            "median" (Depth Anything V1's median / mean-deviation normalisation, which keeps the sign: what a
            network from scratch needs, see :func:`anydepth.train.losses.median_normalised`).
        progress: show a progress bar.
    """

    model: str
    data: str
    out: Path
    weights: Optional[str] = None
    from_scratch: bool = False
    revision: Optional[str] = None
    val_data: Optional[str] = None
    steps: int = 1000
    batch_size: int = 4
    lr: float = 5e-5
    encoder_lr_mult: float = 0.1
    freeze_encoder: bool = False
    weight_decay: float = 0.01
    warmup_steps: int = 0
    schedule: str = "poly"
    accum: int = 1
    grad_clip: Optional[float] = 1.0
    precision: str = "auto"
    device: str = "auto"
    threads: Optional[int] = None
    workers: int = 0
    eval_every: int = 0
    eval_items: int = 16
    save_every: int = 100
    seed: int = 0
    resume: bool = False
    size: Optional[str] = None
    frames: Optional[int] = None
    depth_scale: float = 1000.0
    max_depth: Optional[float] = None
    synthetic_kind: str = "mixed"
    synthetic_scenes: int = 64
    synthetic_views: int = 8
    ssi_alignment: str = "lstsq"
    progress: bool = True

    def check(self) -> None:
        """Refuse, before any weights load or data is read, every option that cannot be used."""
        from anydepth.families import family_of
        from anydepth.presets import get_preset
        from anydepth.train.objectives import OBJECTIVES
        from anydepth.train.sources import SYNTHETIC_KINDS

        preset = get_preset(self.model)
        if preset.family not in OBJECTIVES:
            raise OptionError("model", self.model, f"{family_of(preset).title} cannot be fine-tuned here; the "
                              f"families that can: {', '.join(sorted(OBJECTIVES))}")  # fmt: skip
        if preset.arch == "da3nested-giant-large":
            raise OptionError("model", self.model, "is two networks; fine-tune da3-giant and da3metric-large instead")
        if self.weights is not None and self.from_scratch:
            raise OptionError("from_scratch", None, "and --weights exclude each other")
        for name in ("data", "val_data"):
            value = getattr(self, name)
            if value is not None and value != SYNTHETIC and not Path(value).is_dir():
                raise OptionError(name, value, f"no such folder (give a data folder, or {SYNTHETIC})")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise OptionError("out", str(self.out), "is a file; give a folder")
        self.config().check()
        if self.precision not in PRECISIONS:
            raise OptionError("precision", self.precision, f"choose one of {', '.join(PRECISIONS)}")
        try:
            self.training_size()
        except InputError as exc:
            raise OptionError("size", self.size, str(exc)) from None
        if self.frames is not None and self.frames < 1:
            raise OptionError("frames", self.frames, "must be at least 1")
        if not self.depth_scale > 0:
            raise OptionError("depth_scale", self.depth_scale, "must be positive")
        if self.max_depth is not None and not self.max_depth > 0:
            raise OptionError("max_depth", self.max_depth, "must be positive")
        if self.synthetic_kind not in SYNTHETIC_KINDS:
            raise OptionError("synthetic_kind", self.synthetic_kind, f"choose one of {', '.join(SYNTHETIC_KINDS)}")
        from anydepth.train.losses import ALIGNMENTS

        if self.ssi_alignment not in ALIGNMENTS:
            raise OptionError("ssi_alignment", self.ssi_alignment, f"choose one of {', '.join(ALIGNMENTS)}")
        if self.ssi_alignment != "lstsq" and (preset.family != "dav2" or preset.max_depth is not None):
            raise OptionError("ssi_alignment", self.ssi_alignment, "applies to relative V2 models only")
        if self.synthetic_scenes < 1 or self.synthetic_views < 1:
            raise OptionError("synthetic_scenes", self.synthetic_scenes, "scenes and views must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise OptionError("threads", self.threads, "use at least one thread")
        from anydepth.pipelines.runtime import resolve_device, resolve_precision

        try:
            resolve_precision(self.precision, resolve_device(self.device))
        except InputError as exc:
            raise OptionError("precision", self.precision, str(exc)) from None

    def training_size(self) -> Tuple[int, int]:
        """The crop ``(h, w)``: ``size``, or the preset's processing size (square, a multiple of 14)."""
        from anydepth.presets import get_preset
        from anydepth.train.data import parse_size
        from anydepth.train.sources import PATCH

        if self.size is not None:
            return parse_size(self.size)
        side = max(PATCH, get_preset(self.model).input_size // PATCH * PATCH)
        return side, side

    def config(self) -> Any:
        """The loop's :class:`~anydepth.train.TrainConfig`."""
        from anydepth.train.loop import TrainConfig

        # every field of the loop's config is an option here of the same name: a new one cannot be left behind
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


@dataclass
class TrainReport:
    """What a fine-tuning run produced.

    Attributes:
        weights: the final weights in the official layout (a ``.pth`` file, or a DA3 folder): pass it as
            ``--weights`` (with ``--model``) to any command.
        checkpoint: the resumable checkpoint.
        summary: the content of ``train.json``.
    """

    weights: Path
    checkpoint: Optional[Path]
    summary: Dict[str, Any] = field(default_factory=dict)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def train_job(options: TrainOptions, on_progress: Optional[Callable[[Any], None]] = None) -> TrainReport:
    """Fine-tune ``options.model`` and write its weights in the official layout (see the module docstring).

    Args:
        options: the run; checked first (an :class:`OptionError` names the option), then the starting weights
            and the data are read (bad items are reported by file name and left out, before training).
        on_progress: called after every step with a :class:`~anydepth.train.TrainProgress`.
    """
    from anydepth.families import build_network, load_network_weights
    from anydepth.hub import resolve_weights
    from anydepth.pipelines.runtime import resolve_device, set_cpu_threads
    from anydepth.presets import get_preset
    from anydepth.train.data import TrainingDataset
    from anydepth.train.loop import Trainer
    from anydepth.train.objectives import objective_for
    from anydepth.train.sources import SyntheticSource, open_source
    from anydepth.train.weights import save_official_weights

    options.check()
    preset = get_preset(options.model)
    set_cpu_threads(options.threads)
    device = resolve_device(options.device)
    out = Path(options.out)
    net = build_network(preset, init=options.from_scratch)
    if not options.from_scratch:
        path = resolve_weights(preset, options.weights, revision=options.revision)
        load_network_weights(net, preset, path)
        logger.info("starting from %s", path)
    objective = objective_for(preset, net)
    if options.from_scratch:
        objective.prepare_from_scratch(net)
    if options.ssi_alignment != "lstsq":
        objective.alignment = options.ssi_alignment
    if options.frames is not None:
        limit = getattr(getattr(net, "cfg", None), "num_frames", None)  # Video Depth Anything's temporal positions
        if objective.clip and limit is not None and options.frames > limit:
            raise OptionError("frames", options.frames, f"{preset.name} attends over at most {limit} frames")
        objective.frames = options.frames
    max_depth = options.max_depth if options.max_depth is not None else preset.max_depth
    synthetic = dict(seed=options.seed, scenes=options.synthetic_scenes, views=max(options.synthetic_views,
                     objective.frames), kind="video" if objective.clip else options.synthetic_kind)  # fmt: skip
    source = open_source(options.data, options.depth_scale, max_depth, **synthetic)
    if objective.needs_intrinsics and not source.has_cameras:
        raise OptionError("data", options.data, f"{preset.name} learns metres for a focal length: its data needs "
                          "intrinsics (a ground-truth folder with cameras.npz, or synthetic)")  # fmt: skip
    if options.val_data is not None:
        val_source = open_source(options.val_data, options.depth_scale, max_depth, **synthetic)
    elif isinstance(source, SyntheticSource):
        val_source = source.held_out()
    else:
        val_source = None
        logger.info("no --val-data: no held-out evaluation")
    size = options.training_size()
    common = dict(mean=preset.mean, std=preset.std, frames=objective.frames, clip=objective.clip)
    train = TrainingDataset(source, size, seed=options.seed, **common)
    val = None if val_source is None else TrainingDataset(val_source, size, train=False, **common)
    trainer = Trainer(net, objective, train, options.config(), out=out, val_data=val, device=device)
    result = trainer.fit(resume=options.resume, on_progress=on_progress)
    weights = save_official_weights(trainer.net, preset, out / "weights")
    summary = {
        "model": preset.name,
        "weights": str(weights),
        "checkpoint": None if result.checkpoint is None else str(result.checkpoint),
        "steps": result.steps,
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "evaluations": result.evaluations,
        "samples_per_second": result.samples_per_second,
        "skipped_steps": result.skipped_steps,
        "peak_rss_mib": _peak_rss_mib(),
        "data": source.describe(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    with atomic_path(out / "train.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=str))
    logger.info("weights in %s (%.2f samples/s)", weights, result.samples_per_second)
    return TrainReport(weights=weights, checkpoint=result.checkpoint, summary=summary)
