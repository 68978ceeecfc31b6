"""The `prunecli` app: registers the subcommands and turns user errors into one line + exit 2.

Nothing heavy is imported here: each command imports torch & co. inside its body, so
`prunecli --help` costs about as much as starting Python.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from prunecli import __version__
from prunecli.cli import (
    analyze,
    doctor,
    evaluate,
    export,
    finetune,
    import_,
    info,
    ls,
    profile,
    prune,
    report,
    train,
)

app = typer.Typer(
    name="prunecli",
    help=(
        "Neural-network pruning research from the shell.\n\n"
        "Composable steps that read and write self-describing .safetensors checkpoints:\n\n"
        "  prunecli train --model resnet20 --data digits -o base.safetensors\n\n"
        "  prunecli prune base.safetensors --method l1 --target-macs 0.5x -o pruned.safetensors\n\n"
        "  prunecli finetune pruned.safetensors --data digits -o ft.safetensors\n\n"
        "  prunecli evaluate ft.safetensors --data digits\n\n"
        "  prunecli profile ft.safetensors --compare base.safetensors"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # `prunecli --install-completion`: the shell offers commands, options and choices
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prunecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    _state["debug"] = debug
    from prunecli.engine.dist import is_main

    if ctx.invoked_subcommand in ONE_SHOT and not is_main():
        raise typer.Exit(0)  # under torchrun one-shot commands run on rank 0 (prunecli/engine/dist.py)


ONE_SHOT = ("analyze", "profile", "doctor", "import", "info", "ls", "report", "export")
"""Commands that train nothing: under torchrun rank 0 runs them, the other ranks exit at once
(`prune` decides by method: l1-unstructured fine-tunes on every rank, the others are one-shot)."""


app.command("train")(train.train)
app.command("analyze")(analyze.analyze)
app.command("prune")(prune.prune)
app.command("finetune")(finetune.finetune)
app.command("evaluate")(evaluate.evaluate)
app.command("profile")(profile.profile)
app.command("info")(info.info)
app.command("doctor")(doctor.doctor)
app.command("import")(import_.import_weights)
app.command("report")(report.report)
app.command("export")(export.export)
app.add_typer(ls.app, name="ls")


def main() -> None:
    from prunecli.errors import UserError

    _fast_exit()
    debug = "--debug" in sys.argv[1:]
    from prunecli.engine.dist import quiet_other_ranks

    quiet_other_ranks()
    try:
        app()
    except UserError as err:
        if debug:
            raise
        from rich.markup import escape  # a message's own brackets (`pip install -e .[export]`) are text

        from prunecli.cli._output import err as console

        console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
        if err.hint:
            console.print(f"[dim]hint: {escape(err.hint)}[/]", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _fast_exit() -> None:
    """Freeze the garbage collector's objects when the process exits.

    With torch, Torch-Pruning and timm loaded, Python's own shutdown took a second (1.0 s of a
    5 s `prune`, measured with `-c "import torch"` alone at 0.5-0.8 s): while it tears the modules
    down it runs full collections over a million long-lived objects. Frozen, they are skipped
    (0.2 s). Everything a command writes is flushed and renamed before it returns, atexit
    handlers still run in order (this one first), and objects are still freed by reference
    counting; only cyclic garbage left at exit is not collected, which the OS reclaims anyway.
    """
    import atexit
    import gc

    atexit.unregister(gc.freeze)  # once, however often main() runs in one process (the tests)
    atexit.register(gc.freeze)
