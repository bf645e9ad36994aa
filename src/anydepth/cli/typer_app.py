"""The typer application class of the command line: conventional usage lines and help that survives a pipe."""

from __future__ import annotations

import sys
from typing import Any, List, Optional

import typer
from typer.core import TyperCommand


class UsageCommand(TyperCommand):
    """A command whose usage line names its arguments as ``PATH`` (required) and ``[PATH]`` (optional), the
    convention of man pages and click, instead of typer's ``{path}``."""

    def collect_usage_pieces(self, ctx: Any) -> List[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            # click's parameters, or those of the click that typer >= 0.22 carries inside it
            if getattr(param, "param_type_name", None) != "argument":
                continue
            name = (param.metavar or param.name or "arg").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class App(typer.Typer):
    """``typer.Typer`` whose commands are :class:`UsageCommand` and whose help is plain text when stdout is not a
    terminal: rich's panels are cut to 80 columns in a pipe and shorten option names to fit ("--weights,--mode…"),
    where click's plain help wraps the descriptions and keeps every name whole."""

    def __init__(self, **kwargs: Any) -> None:
        if not sys.stdout.isatty():
            kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, name: Optional[str] = None, *, cls: Optional[type] = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or UsageCommand, **kwargs)
