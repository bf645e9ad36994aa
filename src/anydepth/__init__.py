"""anydepth: depth, cameras and geometry from images and videos with the Depth Anything family.

The package's names load on first use (PEP 562), so that ``import anydepth`` and the commands that need no model
(``anydepth --help``, ``anydepth models``, ``anydepth bench score``) do not pay for importing torch.
"""

from typing import TYPE_CHECKING, Any, List

from anydepth.errors import AnyDepthError, InputError, WeightsError

__version__ = "0.1.0"

_LAZY = {
    "ModelInfo": "anydepth.presets",
    "build_network": "anydepth.api",
    "list_models": "anydepth.presets",
    "load_model": "anydepth.api",
    "load_network": "anydepth.api",
    "Prediction": "anydepth.prediction",
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


def __getattr__(name: str) -> Any:
    import importlib

    if name == "export":
        return importlib.import_module("anydepth.export")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'anydepth' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
