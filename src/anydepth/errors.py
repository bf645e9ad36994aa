"""Typed errors raised at the public boundary; each carries a one-line message that says what to do."""

from __future__ import annotations


class AnyDepthError(Exception):
    """Base class of every error anydepth raises on purpose."""


class InputError(AnyDepthError, ValueError):
    """An input (file, array, option) cannot be used as given."""


class OptionError(InputError):
    """A job option with a value that cannot be used.

    ``option`` is the option's field name in the typed options (``export_feat``); each interface says it in its
    own words: the command line as ``--export-feat``, the service as the request's field, through :meth:`worded`.
    """

    def __init__(self, option: str, value: object, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(self.worded(option))

    def worded(self, name: str) -> str:
        """The message with the option called ``name`` (and its value, unless None: a switch)."""
        return f"{name}: {self.problem}" if self.value is None else f"{name} {self.value}: {self.problem}"


class ShapeError(InputError):
    """An array or tensor has the wrong shape or dtype."""


class UnknownModelError(AnyDepthError, KeyError):
    """A model name that is not in the presets table."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return str(self.args[0]) if self.args else ""


class WeightsError(AnyDepthError, RuntimeError):
    """Weights cannot be found, downloaded or matched to the network."""


class MissingDependencyError(AnyDepthError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency or raise a MissingDependencyError naming the extra.

    Args:
        module: importable module name, e.g. ``"av"``.
        extra: the anydepth extra that installs it, e.g. ``"video"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'anydepth[{extra}]'"
        ) from exc
