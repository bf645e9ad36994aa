"""One model loader for every job and interface: a :class:`ModelSpec` run as :class:`RuntimeOptions` say."""

from __future__ import annotations

from typing import Any

from anydepth.jobs.options import ModelSpec, RuntimeOptions


def load(spec: ModelSpec, runtime: RuntimeOptions) -> Any:
    """The ready model (:func:`anydepth.load_model`) with every runtime option applied: device, precision,
    threads, compile, backend and, for DepthCrafter, its second weights and CPU offloading."""
    from anydepth.api import load_model

    runtime.check()
    extra = {}
    if spec.svd_weights is not None:
        extra["svd_weights"] = spec.svd_weights
    if runtime.cpu_offload is not None:
        extra["cpu_offload"] = runtime.cpu_offload
    return load_model(
        spec.name,
        weights=spec.weights,
        revision=spec.revision,
        device=runtime.device,
        precision=runtime.precision,
        num_threads=runtime.threads,
        compile=runtime.compile,
        backend=runtime.backend,
        **extra,
    )
