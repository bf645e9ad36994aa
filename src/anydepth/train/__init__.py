"""Fine-tuning of the Depth Anything family (docs/training.md): losses as the papers define them, seeded training
data, a resumable training loop, and final weights in each family's official checkpoint layout.

- :mod:`~anydepth.train.losses`: SSI and gradient matching (MiDaS, Depth Anything V2), SILog (metric), DA3's
  depth-ray objective, Video Depth Anything's temporal gradient matching;
- :mod:`~anydepth.train.sources`: frames with depth from ground-truth folders, plain image + depth folders and
  the synthetic generator;
- :mod:`~anydepth.train.data`: the seeded samples drawn from them, and their batches;
- :mod:`~anydepth.train.objectives`: what training means for each family (forward, loss, scored prediction);
- :mod:`~anydepth.train.loop`: :class:`Trainer` and :class:`TrainConfig`;
- :mod:`~anydepth.train.weights`: :func:`save_official_weights`.

The command line (``anydepth train``) and :func:`anydepth.jobs.train.train_job` build on these.
"""

from anydepth.train.data import Batch, TrainingDataset, TrainingSample
from anydepth.train.loop import TrainConfig, Trainer, TrainProgress, TrainResult
from anydepth.train.objectives import DA3Objective, Objective, V2Objective, VDAObjective, objective_for
from anydepth.train.sources import DepthFolderSource, GroundTruthSource, SyntheticSource, open_source
from anydepth.train.weights import save_official_weights

__all__ = [
    "Batch",
    "DA3Objective",
    "DepthFolderSource",
    "GroundTruthSource",
    "Objective",
    "SyntheticSource",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "Trainer",
    "TrainingDataset",
    "TrainingSample",
    "V2Objective",
    "VDAObjective",
    "objective_for",
    "open_source",
    "save_official_weights",
]
