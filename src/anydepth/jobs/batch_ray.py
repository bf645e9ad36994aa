"""The Ray engine of the batch job: Ray Data over the planned groups, an actor pool of model replicas.

Imported only for ``--engine ray`` (``pip install 'anydepth[ray]'``). The dataset holds the groups of
:func:`anydepth.jobs.batch.plan` (their items as JSON: paths, never pixels), one row per group, so the driver ships
kilobytes and the workers read and decode their own files. ``map_batches`` runs :class:`RayReplica`, a class-based
UDF that loads the model once per actor and calls the same :class:`~anydepth.jobs.batch.BatchWorker` as the local
engine, one group per call; its rows stream back to the driver, which records them as they come.

Fault tolerance: an actor that dies (a crashed worker process, a lost node) is restarted and its group run again
(``max_restarts`` / ``max_task_retries``). A group's outputs are written atomically under deterministic names, so
a rerun rewrites the same bytes, and the driver records each key once: nothing is lost or duplicated.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

from anydepth.errors import require
from anydepth.jobs.batch_store import _arrow_schema
from anydepth.jobs.batch_worker import BatchWorker, Item, WorkerConfig, replica_bytes
from anydepth.jobs.loader import load
from anydepth.jobs.options import ModelSpec, RuntimeOptions

logger = logging.getLogger(__name__)


class RayReplica:
    """One actor of the pool: a :class:`BatchWorker` built once, a group per call.

    Args:
        config: the replica's settings.
        loader: the model loader (a module-level function, so that it pickles by reference).
    """

    def __init__(self, config: WorkerConfig, loader: Callable[[ModelSpec, RuntimeOptions], Any] = load) -> None:
        self.worker = BatchWorker(config, loader)

    def __call__(self, batch: Dict[str, Any]) -> Any:
        import pyarrow as pa

        rows: List[Dict[str, Any]] = []
        for group in batch["group"]:
            rows.extend(self.worker.process([Item.from_json(text) for text in _json_list(group)]))
        return pa.Table.from_pylist(rows, schema=_arrow_schema())


def _json_list(text: Any) -> List[str]:
    import json

    return json.loads(str(text))


def connect(address: Optional[str]) -> Any:
    """``ray`` connected to ``address`` (None: the running cluster of this process, else a new local one)."""
    ray = require("ray", "ray")
    require("ray.data", "ray")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def replica_count(ray: Any, options: Any, groups: int) -> int:
    """``options.replicas``, else as many as the cluster's CPUs (or GPUs) hold; never more than the groups."""
    if options.replicas is not None:
        count = options.replicas
    else:
        resources = ray.cluster_resources()
        if options.gpus_per_replica > 0:
            count = int(resources.get("GPU", 0) // options.gpus_per_replica)
        else:
            count = int(resources.get("CPU", 1) // max(options.cpus_per_replica, 1e-3))
    return max(1, min(count, groups))


def run_ray(driver: Any, options: Any, loader: Callable[[ModelSpec, RuntimeOptions], Any] = load) -> None:
    """Run the groups of ``driver`` (a :class:`~anydepth.jobs.batch.BatchDriver`) on Ray Data as ``options`` (a
    :class:`~anydepth.jobs.batch.BatchOptions`) say, and hand their rows to the driver as blocks finish."""
    import json

    groups = driver.work.groups
    if not groups:
        return
    ray = connect(options.address)
    data_context = ray.data.DataContext.get_current()
    data_context.enable_progress_bars = False  # the driver's own bar counts items
    data_context.execution_options.preserve_order = False
    replicas = replica_count(ray, options, len(groups))
    config = driver.config
    input_size = config.input_size or driver.preset.input_size
    rows = [{"group": json.dumps([item.to_json() for item in group])} for group in groups]
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * replicas))
    results = dataset.map_batches(
        RayReplica,
        fn_constructor_kwargs={"config": config, "loader": loader},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=replicas),
        num_cpus=options.cpus_per_replica,
        num_gpus=options.gpus_per_replica or None,
        memory=replica_bytes(driver.preset, input_size, config.batch_size),
    )  # Ray Data restarts a dead replica and retries its call (max_restarts = max_task_retries = -1 by default)
    logger.info("ray: %d groups on %d replicas", len(groups), replicas)
    for table in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        driver.take(table.to_pylist())
