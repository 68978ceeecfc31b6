"""`prunecli export`: a checkpoint as ONNX or torch.export `.pt2`, verified numerically."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def export(
    checkpoint: O.Ckpt,
    fmt: Annotated[str, typer.Option("--format", **O.choice("--format", "onnx", "pt2"),
                                     help="onnx (torch.onnx dynamo exporter, run in onnxruntime) or pt2 (torch.export)")] = "onnx",
    output: Annotated[str, typer.Option("-o", "--output", help="the exported file (e.g. model.onnx, model.pt2)", show_default=False)] = ...,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset (18 up to what the installed onnx knows; default: the exporter's, 20 with torch 2.14)")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="a symbolic batch dimension (any batch size at run time) instead of --batch-size's")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="batch of the traced example and of the verification input")] = 2,
    atol: Annotated[float, typer.Option("--atol", help="absolute tolerance of the verification")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol", help="tolerance relative to the largest |output| of PyTorch")] = 1e-3,
    json: O.Json = False,
) -> None:
    """Export a checkpoint's model and check that the exported file computes the same outputs.

    The model is traced once by torch.export; `--format onnx` translates the graph to ONNX
    (torch.onnx, dynamo exporter), `--format pt2` saves it with torch.export.save. The file is
    then read back (onnxruntime, CPU provider; torch.export.load) and run on a seeded random
    input of the checkpoint's input shape; its output must match PyTorch's within
    max|Δ| ≤ atol + rtol·max|output|. Max abs and rel differences are printed (--json: on
    stdout) and written to `<output>.json` beside the file.

    Exit codes: 0 verified and written; 1 the export does not match or cannot be run (nothing
    written); 2 a bad option or a model that cannot be exported (one line saying why, e.g. the
    DEQ's data-dependent solver loop).

    Examples:

      prunecli export pruned.safetensors --format onnx -o pruned.onnx

      prunecli export pruned.safetensors --format pt2 --dynamic-batch -o pruned.pt2 --json
    """
    from rich.markup import escape

    from prunecli.cli._output import err, print_result, table
    from prunecli.export.run import ExportMismatch, export_checkpoint

    try:
        result = export_checkpoint(checkpoint, fmt, output, opset=opset, dynamic_batch=dynamic_batch,
                                   batch_size=batch_size, atol=atol, rtol=rtol)
    except ExportMismatch as mismatch:
        if json:
            print_result(mismatch.result, True, lambda: None)
        err.print(f"[bold red]error:[/] {escape(str(mismatch))}", soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(f"{fmt} export verified on batches {result['batches']}: max abs diff {result['max_abs_diff']:.3g}, "
              f"max rel diff {result['max_rel_diff']:.3g} (atol {atol:g}, rtol {rtol:g}) → {output}", soft_wrap=True)
    print_result(result, json, lambda: table(f"export of {checkpoint}", ["field", "value"], [
        [k, result[k]] for k in ("model", "format", "opset", "output", "bytes", "batches", "max_abs_diff",
                                 "max_rel_diff", "runtime", "sidecar")]))
