"""`prune`'s options, built from what the registered methods declare (`prunecli.methods.params`).

A new method brings its options in its own file; this module turns each declared `Param` into
a Typer option (its help panel, its choices as a real click Choice), and refuses an option
given to a method that does not take it. Only the method files are imported (no torch).
"""

from __future__ import annotations

import copy
import inspect
import typing
from typing import Annotated, Any

import typer

from prunecli.cli import _options as O
from prunecli.methods.params import PANELS, Param

PRUNE_KINDS = ("structured", "unstructured")


def declared(kinds: tuple[str, ...] = PRUNE_KINDS) -> dict[str, tuple[Param, list[str]]]:
    """name → (param, the methods taking it), over the registered methods of `kinds`."""
    from prunecli.methods import list_methods

    table: dict[str, tuple[Param, list[str]]] = {}
    for method in list_methods():
        if method.kind not in kinds:
            continue
        for param in method.params:
            known, owners = table.setdefault(param.name, (param, []))
            if known != param:  # a programming error: two methods declare one option differently
                raise ValueError(f"method {method.name} declares --{param.name} unlike {', '.join(owners)}")
            owners.append(method.name)
    return table


def in_panel(alias: Any, panel: str | None) -> Any:
    """A typed option of `_options` (Annotated[type, OptionInfo]) shown in another help panel."""
    base, info = typing.get_args(alias)[:2]
    info = copy.copy(info)
    info.rich_help_panel = panel
    return Annotated[base, info]


def parameter(param: Param) -> inspect.Parameter:
    """The Typer parameter of a declared param (a `shared` one reuses train's typed option)."""
    if param.shared:
        annotation = in_panel(getattr(O, param.shared), param.panel)
    else:
        info = typer.Option(*param.flags, help=param.help, min=param.min, show_default=param.show_default,
                            rich_help_panel=param.panel,
                            **(O.choice(param.flag, *param.choices) if param.choices else {}))
        annotation = Annotated[param.type, info]
    return inspect.Parameter(param.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=param.default,
                             annotation=annotation)


def method_parameters(kinds: tuple[str, ...] = PRUNE_KINDS) -> list[inspect.Parameter]:
    """Every declared param of the methods of `kinds`, ordered by help panel, then declaration."""
    params = [p for p, _ in declared(kinds).values()]
    params.sort(key=lambda p: PANELS.index(p.panel) if p.panel in PANELS else len(PANELS))
    return [parameter(p) for p in params]


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option `name` (command line or environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def refuse_foreign(ctx: typer.Context, method, values: dict[str, Any]) -> None:
    """One `error:` line for a method-specific option given to a method that does not take it,
    then the checks of the method's own params."""
    from prunecli.errors import UserError

    own = {p.name for p in method.params}
    for name, (param, owners) in declared().items():
        if name not in own and given(ctx, name):
            takes = ", ".join(p.flag for p in method.params[:2]) or "none of the method options"
            raise UserError(f"{param.flag} is for --method {'|'.join(owners)}; --method {method.name} takes "
                            f"{takes}, ... (`prunecli prune --help` groups them by method)")
    for param in method.params:
        problem = param.problem(values.get(param.name))
        if problem:
            raise UserError(problem)
