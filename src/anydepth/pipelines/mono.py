"""Monocular depth pipeline: independent images in, one depth map each out, batched by processing size."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anydepth.errors import InputError, ShapeError
from anydepth.pipelines.preprocess import lower_bound_size, normalize_resize
from anydepth.pipelines.runtime import precision_policy
from anydepth.prediction import Prediction
from anydepth.presets import Preset

logger = logging.getLogger(__name__)

OUTPUT_RESOLUTIONS = ("input", "processed")


def _as_image_list(images: Any) -> List[Any]:
    """One image or a sequence of them; a 4-D array or tensor is a batch of images."""
    if isinstance(images, (str, bytes)) or not isinstance(images, (list, tuple)):
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return list(images)
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return list(images)
        return [images]
    return list(images)


class MonoDepthModel:
    """A loaded monocular depth network with its preprocessing, device and precision.

    Made by :func:`anydepth.load_model`; call :meth:`infer` for arrays, :meth:`infer_iter` for long lists.
    """

    def __init__(self, net: nn.Module, preset: Preset, device: torch.device, precision: str) -> None:
        self.net = net.eval()
        self.preset = preset
        self.device = device
        self.precision = precision
        self.precision_policy = precision_policy(precision)
        self.precision_policy.apply(self.net)

    @property
    def depth_kind(self) -> str:
        return self.preset.depth_kind

    def __repr__(self) -> str:
        return f"MonoDepthModel({self.preset.name!r}, device={self.device}, precision={self.precision!r})"

    def forward_normalized(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised images, h and w multiples of 14 -> (B, h, w) float32 network output."""
        policy = self.precision_policy
        policy.apply(self.net)  # a no-op unless another pipeline sharing the network applied its own since
        with torch.inference_mode(), policy.autocast(self.device):
            out = self.net(batch.to(self.device))
        return out.float()

    def processing_size(self, height: int, width: int, input_size: int) -> Tuple[int, int]:
        """The network input size for an image: shorter side ``input_size``, both sides multiples of 14.

        Exported models with a static input size override this (:mod:`anydepth.deploy.backends`).
        """
        return lower_bound_size(height, width, input_size)

    def infer(
        self,
        images: Any,
        input_size: Optional[int] = None,
        output: str = "input",
        batch_size: int = 4,
        progress: bool = False,
    ) -> Prediction:
        """Depth of one image or several independent images.

        Args:
            images: a path, PIL image, (H, W, 3) RGB numpy array or (3, H, W) tensor, or a list of them
                (a 4-D array/tensor counts as a list). Images are never mixed as views of one scene.
            input_size: shorter processing side (default: the preset's, 518).
            output: "input" returns maps at each image's own resolution; "processed" at the network's.
            batch_size: images per forward pass (images of one processing size are batched together).
            progress: show a progress bar.

        Returns:
            Prediction with depth (N, H, W) float32; all outputs must share one size (use
            :meth:`infer_iter` for images of different sizes).
        """
        preds = list(
            self.infer_iter(images, input_size=input_size, output=output, batch_size=batch_size, progress=progress)
        )
        shapes = {p.depth.shape[1:] for p in preds}
        if len(shapes) > 1:
            raise ShapeError(
                f"the images give outputs of {len(shapes)} different sizes; use model.infer_iter(...) for one "
                "Prediction per image"
            )
        return Prediction(depth=np.concatenate([p.depth for p in preds]), depth_kind=self.depth_kind)

    def infer_iter(
        self,
        images: Iterable[Any],
        input_size: Optional[int] = None,
        output: str = "input",
        batch_size: int = 4,
        progress: bool = False,
    ) -> Iterator[Prediction]:
        """One Prediction (N = 1) per image, in order; consecutive images of one processing size share a batch.

        Images given as paths are read lazily, so a long list runs in bounded memory.
        """
        from anydepth.io.images import read_image

        if output not in OUTPUT_RESOLUTIONS:
            raise InputError(f"output must be one of {OUTPUT_RESOLUTIONS}, not {output!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, not {batch_size}")
        size = int(input_size or self.preset.input_size)
        if size < 14:
            raise InputError(f"input_size {size} is too small; use at least 14")
        items = _as_image_list(images) if not _is_iterator(images) else images
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = len(items) if hasattr(items, "__len__") else None
            bar = tqdm(total=total, unit="img", desc=self.preset.name)

        pending: List[Tuple[np.ndarray, Tuple[int, int]]] = []
        for item in items:
            image = read_image(item)
            h, w = image.shape[:2]
            proc = self.processing_size(h, w, size)
            if pending and (proc != pending[0][0].shape[1:] or len(pending) >= batch_size):
                yield from self._run(pending, output)
                if bar is not None:
                    bar.update(len(pending))
                pending = []
            pending.append((normalize_resize(image, proc, self.preset.mean, self.preset.std), (h, w)))
        if pending:
            yield from self._run(pending, output)
            if bar is not None:
                bar.update(len(pending))
        if bar is not None:
            bar.close()

    def _run(self, pending: Sequence[Tuple[np.ndarray, Tuple[int, int]]], output: str) -> Iterator[Prediction]:
        batch = torch.from_numpy(np.stack([p[0] for p in pending]))
        depth = self.forward_normalized(batch)
        for i, (_, (h, w)) in enumerate(pending):
            d = depth[i : i + 1, None]
            if output == "input" and d.shape[-2:] != (h, w):
                d = F.interpolate(d, size=(h, w), mode="bilinear", align_corners=True)
            yield Prediction(depth=d[:, 0].cpu().numpy().astype(np.float32, copy=False), depth_kind=self.depth_kind)


def _is_iterator(obj: Any) -> bool:
    return hasattr(obj, "__next__")
