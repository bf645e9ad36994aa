"""The typer application class of the command line: conventional usage lines and help that survives a pipe."""

from __future__ import annotations

import sys
from typing import Any, List, Optional

import typer
from typer.core import TyperCommand

from anydepth.cli.migration import upstream_option_hint


class UsageCommand(TyperCommand):
    """A command whose usage line names its arguments as ``PATH`` (required) and ``[PATH]`` (optional), the
    convention of man pages and click, instead of typer's ``{path}``, and whose "No such option" says what to write
    instead of an upstream script's option (:mod:`anydepth.cli.migration`)."""

    def parse_args(self, ctx: Any, args: List[str]) -> List[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            # click's NoSuchOption, or that of the click typer >= 0.22 carries inside it
            hint = upstream_option_hint(getattr(exc, "option_name", None))
            if type(exc).__name__ == "NoSuchOption" and hint is not None:
                exc.message = f"No such option: {exc.option_name}, an upstream script's option: {hint}"
                exc.possibilities = None
            raise

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
