"""anydepth: depth, cameras and geometry from images and videos with the Depth Anything family."""

from anydepth import export
from anydepth.api import ModelInfo, build_network, list_models, load_model, load_network
from anydepth.errors import AnyDepthError, InputError, WeightsError
from anydepth.prediction import Prediction

__version__ = "0.1.0"

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
