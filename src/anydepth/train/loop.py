"""The training loop: AdamW with an encoder learning-rate multiplier (or a frozen encoder), warm-up then a poly or
cosine decay, gradient accumulation and clipping, mixed precision, periodic evaluation with the evaluator's
metrics, and checkpoints that resume to the same result as a run that was never interrupted.

Why a resumed run is exact: every sample is a function of (seed, key) only (:class:`~anydepth.train.data.
TrainingDataset`), the keys of step ``k`` are ``k * accum * batch_size`` onwards, and a checkpoint holds the model,
the optimizer, the scheduler, the gradient scaler, the step and the torch, numpy and Python RNG states. Nothing
else carries over from one step to the next.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from anydepth.bench.depth_metrics import image_depth_scores
from anydepth.checkpoints import load_strict
from anydepth.errors import InputError, OptionError, WeightsError
from anydepth.io.atomic import atomic_path
from anydepth.layers.precision import PrecisionPolicy
from anydepth.pipelines.runtime import resolve_precision
from anydepth.train.data import Batch, TrainingDataset, collate
from anydepth.train.objectives import Objective

logger = logging.getLogger(__name__)

SCHEDULES = ("poly", "cosine", "constant")
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """How a network is trained (one place for every default of the loop).

    Attributes:
        steps: optimizer steps.
        batch_size: samples per forward pass.
        lr: learning rate of the decoder (head); the encoder's is ``lr * encoder_lr_mult``. The defaults are
            Depth Anything V2's fine-tuning: decoder 5e-5, encoder 5e-6.
        encoder_lr_mult: encoder learning rate over the decoder's.
        freeze_encoder: train the decoder only (the encoder gets no gradient and no optimizer state).
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: linear warm-up from 0 to ``lr``.
        schedule: after the warm-up, "poly" (``(1 - progress)^0.9``, as Depth Anything), "cosine" or "constant".
        accum: batches whose gradients are summed before each step (effective batch ``batch_size * accum``).
        precision: "fp32", "bf16" (CPU with native bf16, CUDA), "fp16" (CUDA, with a gradient scaler) or "auto".
        grad_clip: largest gradient norm (None: no clipping).
        eval_every: evaluate on the held-out data every this many steps (0: only at the start and the end).
        eval_items: held-out samples scored per evaluation (0: all of them).
        save_every: write the checkpoint every this many steps (0: only at the end).
        seed: seed of torch, numpy and Python's RNGs and of the samples.
        workers: processes that prepare the next batches while the network trains (0: prepared in turn, in this
            process). Samples depend on their keys only, so the result is the same either way.
        progress: show a tqdm bar with the loss.
    """

    steps: int = 1000
    batch_size: int = 4
    lr: float = 5e-5
    encoder_lr_mult: float = 0.1
    freeze_encoder: bool = False
    weight_decay: float = 0.01
    warmup_steps: int = 0
    schedule: str = "poly"
    accum: int = 1
    precision: str = "fp32"
    grad_clip: Optional[float] = 1.0
    eval_every: int = 0
    eval_items: int = 16
    save_every: int = 0
    seed: int = 0
    workers: int = 0
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`OptionError` for the first option that cannot be used."""
        for name in ("steps", "batch_size", "accum"):
            if getattr(self, name) < 1:
                raise OptionError(name, getattr(self, name), "must be at least 1")
        for name in ("warmup_steps", "eval_every", "save_every", "eval_items", "workers"):
            if getattr(self, name) < 0:
                raise OptionError(name, getattr(self, name), "must not be negative")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise OptionError("lr", self.lr, "must be a positive number")
        if not self.encoder_lr_mult >= 0:
            raise OptionError("encoder_lr_mult", self.encoder_lr_mult, "must not be negative")
        if self.weight_decay < 0:
            raise OptionError("weight_decay", self.weight_decay, "must not be negative")
        if self.schedule not in SCHEDULES:
            raise OptionError("schedule", self.schedule, f"choose one of {', '.join(SCHEDULES)}")
        if self.precision not in ("fp32", "bf16", "fp16", "auto"):
            raise OptionError("precision", self.precision, "choose one of fp32, bf16, fp16, auto")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise OptionError("grad_clip", self.grad_clip, "must be positive (or left out: no clipping)")


@dataclass
class TrainProgress:
    """What the loop reports after each step."""

    step: int
    steps: int
    loss: float
    lr: float
    terms: Dict[str, float]
    seconds: float
    evaluation: Optional[Dict[str, float]] = None


@dataclass
class TrainResult:
    """The outcome of :meth:`Trainer.fit`.

    Attributes:
        steps: the step reached.
        history: per step ``{"step", "loss", "lr", **terms}``.
        evaluations: ``{"step", "abs_rel", "delta1", ...}`` per evaluation, the first before any training.
        checkpoint: the last checkpoint written, if any.
        samples_per_second: training throughput of this run (resumed steps not counted).
        skipped_steps: steps whose loss was not finite (no update was made).
    """

    steps: int
    history: List[Dict[str, float]] = field(default_factory=list)
    evaluations: List[Dict[str, float]] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    samples_per_second: float = 0.0
    skipped_steps: int = 0


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> Dict[str, Any]:
    """The global RNG states as tensors and numbers (a checkpoint of them loads with ``weights_only=True``)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached": float(cached),
        "python_version": int(version),
        "python_internal": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": None if gauss is None else float(gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached"]))
    internal = tuple(int(v) for v in state["python_internal"].tolist())
    random.setstate((state["python_version"], internal, state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based).

    >>> [round(lr_factor(s, 10, 2, "poly"), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.154]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return (1.0 - progress) ** 0.9


def _grad_scaler(enabled: bool) -> Any:
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        return amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


class Trainer:
    """Trains one network with one objective.

    Args:
        net: the family's bare network (any size of it), with its starting weights.
        objective: the family's :class:`~anydepth.train.objectives.Objective`.
        train_data: training samples (the objective's frames per sample).
        config: the loop's settings.
        out: the run's folder: ``checkpoints/last.pt`` is written there (None: no checkpoints).
        val_data: held-out samples for the periodic evaluation (None: no evaluation).
        device: where the network trains.
    """

    def __init__(
        self,
        net: nn.Module,
        objective: Objective,
        train_data: TrainingDataset,
        config: TrainConfig,
        out: Optional[Union[str, Path]] = None,
        val_data: Optional[TrainingDataset] = None,
        device: Union[str, torch.device] = "cpu",
    ) -> None:
        config.check()
        self.config = config
        self.objective = objective
        self.train_data, self.val_data = train_data, val_data
        self.device = torch.device(device)
        self.out = None if out is None else Path(out)
        self.precision = resolve_precision(config.precision, self.device)
        seed_everything(config.seed)
        self.net = net.to(self.device)
        # the fast paths may stay on: each is differentiable (scaled_dot_product_attention, the addcmul residual)
        # or steps aside while grad is enabled (the oneDNN fused kernels, cached bf16 weights, the patch matmul,
        # the partial RoPE, the position and UV-embedding caches); tests/train/test_objectives.py trains through them
        self.policy = PrecisionPolicy.for_precision(self.precision)
        self.policy.apply(self.net)
        encoder, decoder = self._split_parameters()
        for p in encoder:
            p.requires_grad_(not config.freeze_encoder)
        groups = [{"params": decoder, "lr": config.lr, "name": "decoder"}]
        if encoder and not config.freeze_encoder and config.encoder_lr_mult > 0:
            groups.insert(0, {"params": encoder, "lr": config.lr * config.encoder_lr_mult, "name": "encoder"})
        elif encoder:
            for p in encoder:
                p.requires_grad_(False)
        self.trained = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        steps, warmup, schedule = config.steps, config.warmup_steps, config.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, steps, warmup, schedule)
        )
        self.scaler = _grad_scaler(self.precision == "fp16" and self.device.type == "cuda")
        self.step = 0
        self.history: List[Dict[str, float]] = []
        self.evaluations: List[Dict[str, float]] = []

    def _split_parameters(self):
        prefix = self.objective.encoder_prefix
        encoder, decoder = [], []
        for name, p in self.net.named_parameters():  # shared tensors come once
            (encoder if name.startswith(prefix) else decoder).append(p)
        if not decoder:
            raise InputError(f"no decoder parameter outside {prefix!r}: this is not a network of the objective")
        return encoder, decoder

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return None if self.out is None else self.out / "checkpoints" / CHECKPOINT_NAME

    # --- checkpoints --------------------------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """Everything a resumed run needs (tensors, numbers and strings only)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config": asdict(self.config),
            "history": self.history,
            "evaluations": self.evaluations,
        }

    def save_checkpoint(self, path: Optional[Union[str, Path]] = None) -> Path:
        """Write :meth:`state` atomically (a temporary file renamed into place: an interruption leaves the
        previous checkpoint whole)."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise InputError("no checkpoint path: give the trainer an output folder")
        with atomic_path(path) as tmp:
            torch.save(self.state(), str(tmp))
        logger.info("checkpoint of step %d written to %s", self.step, path)
        return path

    def load_checkpoint(self, path: Union[str, Path]) -> None:
        """Continue from a checkpoint of :meth:`save_checkpoint` (read with ``weights_only=True``)."""
        path = Path(path)
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a checkpoint
            raise WeightsError(f"{path}: cannot read the training checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise WeightsError(f"{path}: not a training checkpoint of this version")
        load_strict(self.net, state["model"], source=str(path))
        self.net.to(self.device)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # another set of trained parameters (frozen encoder or not)
            raise WeightsError(f"{path}: its optimizer does not match this run's parameters ({exc})") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.evaluations = list(state["evaluations"])
        set_rng_state(state["rng"])
        saved = state["config"]
        changed = [k for k in ("batch_size", "accum", "seed", "lr", "schedule", "steps") if saved.get(k) !=
                   getattr(self.config, k)]  # fmt: skip
        if changed:
            logger.warning("resuming with other %s than the checkpoint's: the run will not equal an uninterrupted one",
                           ", ".join(changed))  # fmt: skip
        logger.info("resumed from %s at step %d", path, self.step)

    # --- training -----------------------------------------------------------------------------------------------

    def _keys(self, step: int, micro: int) -> List[int]:
        B = self.config.batch_size
        first = (step * self.config.accum + micro) * B
        return list(range(first, first + B))

    def _batches(self) -> Iterator[Batch]:
        """The training batches from the current step on: built in turn, or by ``config.workers`` processes."""
        config = self.config
        keys = (self._keys(step, micro) for step in range(self.step, config.steps) for micro in range(config.accum))
        if not config.workers:
            return (self.train_data.batch(k) for k in keys)
        loader = torch.utils.data.DataLoader(
            self.train_data, batch_sampler=list(keys), collate_fn=collate, num_workers=config.workers
        )
        return iter(loader)

    def train_step(self, batches: Optional[Iterator[Batch]] = None) -> TrainProgress:
        """One optimizer step (``accum`` batches); the step counter advances even when the loss is not finite
        (then nothing is updated), so the samples of later steps stay where an uninterrupted run has them.

        Args:
            batches: where this step's ``accum`` batches come from (:meth:`fit` passes its prefetching iterator);
                None: built here from the step's keys.
        """
        config = self.config
        start = time.perf_counter()
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, terms, finite = 0.0, {}, True
        for micro in range(config.accum):
            batch = next(batches) if batches is not None else self.train_data.batch(self._keys(self.step, micro))
            batch = batch.to(self.device)
            if not finite:
                continue  # the step is lost; its remaining batches are still taken, so later steps keep theirs
            with self.policy.autocast(self.device):
                loss, parts = self.objective.loss(self.net, batch)
            if not torch.isfinite(loss):
                finite = False
                continue
            self.scaler.scale(loss / config.accum).backward()
            total += float(loss.detach()) / config.accum
            for k, v in parts.items():
                terms[k] = terms.get(k, 0.0) + v / config.accum
        lr = float(self.optimizer.param_groups[-1]["lr"])
        if finite:
            if config.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.trained, config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            logger.warning("step %d: the loss is not finite; no update", self.step + 1)
            self.optimizer.zero_grad(set_to_none=True)
            total = float("nan")
        with warnings.catch_warnings():  # a skipped update still advances the schedule, as the step counter
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        self.step += 1
        self.history.append({"step": self.step, "loss": total, "lr": lr, **terms})
        return TrainProgress(self.step, config.steps, total, lr, terms, time.perf_counter() - start)

    @torch.no_grad()
    def evaluate(self) -> Dict[str, float]:
        """The evaluator's depth metrics on the held-out samples: AbsRel and delta1 after the least-squares scale
        and shift in disparity (``scale_shift_disparity``), and for metric models also without alignment
        (``metric_abs_rel``, ``metric_delta1``). Each frame weighs the same."""
        if self.val_data is None:
            return {}
        was_training = self.net.training
        self.net.eval()
        n = min(self.config.eval_items, len(self.val_data)) if self.config.eval_items else len(self.val_data)
        affine, metric = [], []
        for start in range(0, n, self.config.batch_size):
            batch = self.val_data.batch(list(range(start, min(n, start + self.config.batch_size)))).to(self.device)
            with self.policy.autocast(self.device):
                pred, kind = self.objective.predict(self.net, batch)
            pred = pred.float().cpu().numpy()
            gt = batch.depth.flatten(0, 1).cpu().numpy()
            valid = batch.valid.flatten(0, 1).cpu().numpy()
            for p, g, m in zip(pred, gt, valid):
                if not m.any():
                    continue
                g = np.where(m, g, 0.0)
                try:
                    affine.append(image_depth_scores(p, g, "scale_shift_disparity", m,
                                                     pred_is_disparity=kind == "disparity"))  # fmt: skip
                    if kind == "metric":
                        metric.append(image_depth_scores(p, g, "none", m))
                except InputError:  # no pixel both valid and finitely predicted
                    continue
        self.net.train(was_training)
        if not affine:
            return {}
        scores = {
            "abs_rel": float(np.mean([s.abs_rel for s in affine])),
            "delta1": float(np.mean([s.delta1 for s in affine])),
            "frames": float(len(affine)),
        }
        if metric:
            scores["metric_abs_rel"] = float(np.mean([s.abs_rel for s in metric]))
            scores["metric_delta1"] = float(np.mean([s.delta1 for s in metric]))
        return scores

    def _record_evaluation(self) -> Optional[Dict[str, float]]:
        scores = self.evaluate()
        if not scores:
            return None
        entry = {"step": float(self.step), **scores}
        self.evaluations.append(entry)
        logger.info("step %d: held-out AbsRel %.4f, delta1 %.4f", self.step, scores["abs_rel"], scores["delta1"])
        return entry

    def fit(self, resume: bool = False, on_progress: Optional[Callable[[TrainProgress], None]] = None) -> TrainResult:
        """Train up to ``config.steps``.

        Args:
            resume: continue from ``<out>/checkpoints/last.pt`` where it exists.
            on_progress: called after every step with its :class:`TrainProgress`.

        An interruption (KeyboardInterrupt, a crash) leaves the last checkpoint whole; run again with ``resume``.
        """
        from tqdm.auto import tqdm

        config = self.config
        path = self.checkpoint_path
        if resume and path is not None and path.is_file():
            self.load_checkpoint(path)
        if self.step == 0 and self.val_data is not None and not self.evaluations:
            self._record_evaluation()  # the starting point, to compare the end with
        start_step, start = self.step, time.perf_counter()
        batches = self._batches()
        bar = tqdm(total=config.steps, initial=self.step, disable=not config.progress, desc="train", unit="step")
        try:
            while self.step < config.steps:
                progress = self.train_step(batches)
                last = self.step == config.steps
                if self.val_data is not None and ((config.eval_every and self.step % config.eval_every == 0) or last):
                    progress.evaluation = self._record_evaluation()
                if path is not None and ((config.save_every and self.step % config.save_every == 0) or last):
                    self.save_checkpoint()
                bar.update(1)
                postfix = {"loss": f"{progress.loss:.4f}"}
                if progress.evaluation is not None:
                    postfix["abs_rel"] = f"{progress.evaluation['abs_rel']:.4f}"
                bar.set_postfix(postfix)
                if on_progress is not None:
                    on_progress(progress)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        samples = (self.step - start_step) * config.batch_size * config.accum
        return TrainResult(
            steps=self.step,
            history=list(self.history),
            evaluations=list(self.evaluations),
            checkpoint=path if path is not None and path.is_file() else None,
            samples_per_second=samples / seconds if seconds > 0 and samples else 0.0,
            skipped_steps=sum(1 for h in self.history if not math.isfinite(h["loss"])),
        )


def parameters_of(net: nn.Module) -> Dict[str, Tensor]:
    """A detached CPU copy of a network's parameters and buffers (for comparing runs)."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
