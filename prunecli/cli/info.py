"""`prunecli info`: what a checkpoint is, where it came from, what was measured."""

from __future__ import annotations

from prunecli.cli import _options as O


def info(checkpoint: O.Ckpt, json: O.Json = False) -> None:
    """Print a checkpoint's header: model, structure changes, lineage and last metrics.

    Reads only the file header (no model is built).

    Examples:

      prunecli info pruned.safetensors

      prunecli info pruned.safetensors --json | jq .lineage
    """
    from rich.console import Group

    from prunecli.cli._output import print_result, table
    from prunecli.io import checkpoint as ckpt

    data = ckpt.read_bytes(checkpoint)
    header = ckpt.read_header(data)
    doc = {"checkpoint": checkpoint, "sha256": ckpt.sha256(data), **header.model_dump()}

    def render():
        about = table(f"{checkpoint}", ["field", "value"], [
            ["model", header.model.name], ["kwargs", header.model.kwargs], ["task", header.task],
            ["input shape", header.input_shape], ["classes", header.num_classes],
            ["data", header.data.spec if header.data else None],
            ["pruned modules", len(header.structure)], ["sha256", doc["sha256"][:16]],
        ])
        lineage = table("lineage", ["step", "command", "time", "parent"], [
            [i, e.command, e.time, (e.parent_sha256 or "")[:12]] for i, e in enumerate(header.lineage)
        ])
        metrics = table("metrics", ["metric", "value"], [[k, v] for k, v in header.metrics.items()])
        return Group(about, lineage, metrics)

    print_result(doc, json, render)
