"""Names of a module that load on first use (PEP 562): the package, ``anydepth.jobs`` and the job options keep
torch out of ``import anydepth`` and of the command line's start this way."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, Tuple


def lazy_names(
    namespace: Dict[str, Any], names: Mapping[str, str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for the module whose ``globals()`` is ``namespace``.

    ``names`` maps each lazy name to where it comes from: ``"pkg.mod"`` (the attribute of the same name there),
    ``"pkg.mod:other"`` (another attribute) or ``"pkg.mod:"`` (the module itself). A name loads once: it then
    stands in ``namespace`` and later lookups no longer reach ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        module, colon, attribute = names[name].partition(":")
        loaded = importlib.import_module(module)
        value = loaded if colon and not attribute else getattr(loaded, attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
