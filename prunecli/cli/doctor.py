"""`prunecli doctor`: a pre-flight check that structured pruning will work on a model (no file written)."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def doctor(
    target: Annotated[str, typer.Argument(help="a checkpoint (.safetensors) or a model name (resnet56, timm:NAME, tv:NAME)",
                                          show_default=False)],
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="layer name glob to leave unpruned, as for prune (repeatable)")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.0, help="seconds for all checks together (0: no limit)")] = 60.0,
    input_size: Annotated[int | None, typer.Option("--input-size", min=1, help="input height and width (default: the model's)")] = None,
    groups: Annotated[bool, typer.Option("--groups", help="list every prunable channel group (default: the first 20)")] = False,
    json: O.Json = False,
) -> None:
    """Check, in seconds and before a long run, that structured pruning works on a model.

    Runs what `prune` runs, on a copy, within --timeout: the model's forward pass;
    prunecli's extensions for its layer types (or the refusal, with the --ignore globs
    that lift it); the dependency graph, with its prunable channel groups, protected
    layers, bare nn.Parameters and how they would be cut, and the head counts of
    attention layers with the ratios they allow; then a probe pruning (l1, ratio 0.3)
    that must lower the MACs, run, and reload into an identical model.

    Exit 0 when every check passes, 1 with the diagnosis otherwise (2: a bad argument).

    Examples:

      prunecli doctor timm:levit_128s

      prunecli doctor base.safetensors --ignore 'stages.*.blocks.*.attn' --json | jq .checks
    """
    from prunecli.cli._output import print_result
    from prunecli.pruning.doctor import diagnose

    report = diagnose(target, ignore=list(ignore or []), timeout=timeout, input_size=input_size)
    print_result(report, json, lambda: _render(report, groups))
    if not report["ok"]:
        raise typer.Exit(1)


def _render(report: dict, all_groups: bool):
    from rich.console import Group

    from prunecli.cli._output import table

    parts = [table(f"doctor: {report['model']} (input {'×'.join(map(str, report['input_shape']))})",
                   ["check", "result", "detail"],
                   [[c["check"], "ok" if c["ok"] else "FAIL", c["detail"]] for c in report["checks"]])]
    groups = report["groups"] if all_groups else report["groups"][:20]
    if groups:
        more = len(report["groups"]) - len(groups)
        parts.append(table(f"prunable channel groups ({len(report['groups'])}" + (f"; {more} more with --groups)" if more else ")"),
                           ["root layer", "type", "channels", "layers"],
                           [[g["root"], g["type"], g["channels"], g["layers"]] for g in groups]))
    if report["protected"]:
        parts.append(table(f"protected layers ({len(report['protected'])})", ["never loses output channels"],
                           [[p] for p in report["protected"][:20]]))
    if report["unwrapped"]:
        parts.append(table("bare parameters", ["parameter", "shape", "pruning"],
                           [[u["name"], "×".join(map(str, u["shape"])), u["pruning"]] for u in report["unwrapped"]]))
    if report["heads"]:
        parts.append(table("attention heads", ["projection", "heads", "width", "constraint"],
                           [[h["layer"], h["heads"], h["width"], h["in_head_dims"]] for h in report["heads"]]))
    return Group(*parts)
