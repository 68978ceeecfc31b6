"""`prunecli ls models|data|methods`: what the registries hold."""

from __future__ import annotations

import typer

from prunecli.cli import _options as O

app = typer.Typer(help="List registered models, data sets and pruning methods.", no_args_is_help=True)


@app.command("models")
def ls_models(json: O.Json = False) -> None:
    """Registered models (any timm model is also available as timm:NAME, any torchvision one as tv:NAME)."""
    from prunecli.cli._output import print_result, table
    from prunecli.models import list_models

    rows = [{"name": e.name, "family": e.family, "task": e.task, "input": list(e.input_shape),
             "tiny": e.tiny, "description": e.description} for e in list_models()]
    print_result(rows, json, lambda: table("models (plus timm:NAME, tv:NAME for any timm / torchvision model)",
                                           ["name", "family, task", "description"],
                                           [[r["name"], f"{r['family']}\n{r['task']}", r["description"]]
                                            for r in rows], whole=2))


@app.command("data")
def ls_data(json: O.Json = False) -> None:
    """Data-set specs."""
    from prunecli.cli._output import print_result, table
    from prunecli.data import list_data

    rows = [{"name": e.name, "usage": e.usage, "description": e.description} for e in list_data()]
    print_result(rows, json, lambda: table("data specs", ["name", "usage", "description"],
                                           [list(r.values()) for r in rows], whole=1))


@app.command("methods")
def ls_methods(json: O.Json = False) -> None:
    """Pruning and analysis methods."""
    from prunecli.cli._output import print_result, table
    from prunecli.methods import list_methods

    rows = [{"name": m.name, "kind": m.kind, "paper": m.paper, "description": m.description}
            for m in list_methods()]
    print_result(rows, json, lambda: table("methods", ["name", "kind", "paper", "description"],
                                           [list(r.values()) for r in rows], whole=2))
