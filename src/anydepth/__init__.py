"""anydepth: depth, cameras and geometry from images and videos with the Depth Anything family.

The package's names load on first use (PEP 562), so that ``import anydepth`` and the commands that need no model
(``anydepth --help``, ``anydepth models``, ``anydepth bench score``) do not pay for importing torch.
"""

from typing import TYPE_CHECKING

from anydepth._lazy import lazy_names
from anydepth.errors import AnyDepthError, InputError, WeightsError

__version__ = "0.1.0"

_LAZY = {
    "ModelInfo": "anydepth.presets",
    "build_network": "anydepth.api",
    "list_models": "anydepth.presets",
    "load_model": "anydepth.api",
    "load_network": "anydepth.api",
    "Prediction": "anydepth.prediction",
    "export": "anydepth.export:",
}

__all__ = [
    "AnyDepthError",
    "InputError",
    "ModelInfo",
    "Prediction",
    "WeightsError",
    "__version__",
    "build_network",
    "export",
    "list_models",
    "load_model",
    "load_network",
]

if TYPE_CHECKING:  # what static tools see; at runtime `__getattr__` imports these on first use
    from anydepth import export
    from anydepth.api import build_network, load_model, load_network
    from anydepth.prediction import Prediction
    from anydepth.presets import ModelInfo, list_models


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
