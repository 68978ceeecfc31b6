"""`prunecli export`: export, run the exported file, compare with PyTorch, keep it only if it agrees.

The model is exported into a temporary file beside the output (the exporters write files
themselves: `io/atomic.py`'s `written_by` gives the file and renames it into place only when the
check passes), read back by the runtime a deployment would use, and run on a fixed seeded input
(`torch.randn(batch, *input_shape)`, seed 0, the checkpoint's input shape). Its output is
compared with the PyTorch model's in eval mode on the same input:

    max_abs = max |exported − torch|,   max_rel = max_abs / max |torch|

and the export passes when `max_abs ≤ atol + rtol · max |torch|` (numpy's allclose, with the
output's scale in place of each element's: a relative error per element is meaningless where
the output crosses zero). A file that fails, or that the runtime cannot load, is removed and the
command exits 1 (`ExportMismatch`); the output path is never left half-written or unverified.
With --dynamic-batch the file is also run at batch + 1, a batch size it was not traced at.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prunecli.errors import UserError

SEED = 0


class ExportMismatch(Exception):
    """The exported file does not reproduce the model (or cannot be loaded): exit 1, file removed."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def check_options(fmt: str, out: str, opset: int | None, batch_size: int, atol: float, rtol: float) -> None:
    """Refuse bad values before the slow imports."""
    from prunecli.export.formats import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"--format must be onnx or pt2, got {fmt!r}")
    if out == "-":
        raise UserError("-o - is not supported: an export is a file the runtime reads back; give a path")
    if opset is not None and fmt != "onnx":
        raise UserError("--opset applies to --format onnx only")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if not (atol >= 0 and rtol >= 0):  # also refuses NaN
        raise UserError(f"--atol and --rtol must be 0 or more, got {atol} and {rtol}")


def export_checkpoint(checkpoint: str, fmt: str, out: str, *, opset: int | None = None, dynamic_batch: bool = False,
                      batch_size: int = 2, atol: float = 1e-4, rtol: float = 1e-3) -> dict[str, Any]:
    """Export, verify and (only if it agrees) rename into place; the JSON-ready result."""
    check_options(fmt, out, opset, batch_size, atol, rtol)
    from prunecli.io.atomic import check_output, written_by

    check_output(out, checkpoint)
    if fmt == "onnx":
        from prunecli.export.formats import max_opset, require_onnx

        require_onnx()
        if opset is not None and not 18 <= opset <= max_opset():
            raise UserError(f"--opset must be between 18 (the dynamo exporter's oldest) and {max_opset()}, got {opset}")
    import torch

    from prunecli.io import checkpoint as ckpt

    loaded = ckpt.load(checkpoint)
    model = loaded.model.eval()
    shape = list(loaded.header.input_shape)
    batches = [batch_size, batch_size + 1] if dynamic_batch else [batch_size]
    inputs = [torch.randn(b, *shape, generator=torch.Generator().manual_seed(SEED + i)) for i, b in enumerate(batches)]
    result: dict[str, Any] = {
        "checkpoint": checkpoint, "sha256": loaded.sha256, "model": loaded.header.model.name, "format": fmt,
        "output": str(out), "opset": None, "dynamic_batch": dynamic_batch, "input_shape": shape,
        "batches": batches, "seed": SEED, "atol": atol, "rtol": rtol, "torch": torch.__version__,
    }
    path = Path(out).expanduser()
    with written_by(path, f".tmp.{fmt}") as tmp:  # torch.export.load insists on the `.pt2` ending
        start = time.perf_counter()
        _export(model, inputs[0], fmt, tmp, loaded.header.model.name, dynamic_batch, opset, result)
        result["export_s"] = round(time.perf_counter() - start, 3)
        result.update(verify(model, fmt, tmp, inputs, atol, rtol))
        if not result["passed"]:
            raise ExportMismatch(_mismatch_line(result, path), result)
    result["bytes"] = path.stat().st_size
    result["sidecar"] = _write_sidecar(path, result)
    return result


def _export(model, x, fmt: str, tmp: Path, name: str, dynamic_batch: bool, opset: int | None, result) -> None:
    from prunecli.export.formats import write
    from prunecli.export.graph import export_program

    program = export_program(model, x, name, dynamic_batch)
    try:
        write(program, x, fmt, tmp, opset)
    except Exception as err:  # the ONNX translation (an ATen op without an ONNX counterpart, say)
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UserError(f"cannot export {name} to {fmt}: {first.strip()[:300]}",
                        hint="--debug shows the whole traceback") from err
    if fmt == "onnx":  # what the file declares (the exporter's default moves with torch: 20 in torch 2.14)
        result["opset"] = written_opset(tmp)


def written_opset(path: Path) -> int | None:
    """The default-domain opset an ONNX file declares (None if it cannot be read: verification says why)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a damaged file is reported by the verification that follows
        return None
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def verify(model, fmt: str, path: Path, inputs, atol: float, rtol: float) -> dict[str, Any]:
    """Run the file at `path` on each input and compare with `model` (see module doc)."""
    import torch

    from prunecli.export.formats import run, runtime

    worst = {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "passed": True, "runtime": runtime(fmt, path, "cpu")}
    for x in inputs:
        with torch.no_grad():
            expected = model(x)
        expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).float()
        try:
            got = run(fmt, path, x)
        except Exception as err:  # a truncated or corrupted file: the runtime's own message
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            return {**worst, "passed": False, "max_abs_diff": None, "max_rel_diff": None,
                    "load_error": f"{type(err).__name__}: {first.strip()[:300]}"}
        if got.shape != expected.shape:
            return {**worst, "passed": False, "max_abs_diff": None, "max_rel_diff": None,
                    "load_error": f"output shape {list(got.shape)} instead of {list(expected.shape)}"}
        scale = expected.abs().max().item()
        diff = (got - expected).abs().max().item()
        worst["max_abs_diff"] = max(worst["max_abs_diff"], diff)
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))  # an all-zero output
        worst["max_rel_diff"] = max(worst["max_rel_diff"], rel)
        worst["passed"] = worst["passed"] and diff <= atol + rtol * scale  # False for NaN too
    return worst


def _mismatch_line(result: dict[str, Any], path: Path) -> str:
    if result.get("load_error"):
        return f"verification failed: the exported {result['format']} cannot be run ({result['load_error']}); {path} not written"
    return (f"verification failed: the exported {result['format']} differs from PyTorch by max abs "
            f"{result['max_abs_diff']:.3g} (rel {result['max_rel_diff']:.3g}), beyond --atol {result['atol']:g} "
            f"+ --rtol {result['rtol']:g} × max|output|; {path} not written")


def _write_sidecar(path: Path, result: dict[str, Any]) -> str | None:
    """`<output>.json` beside the export: this result (source checkpoint hash, format, opset, diffs)."""
    from prunecli.io.atomic import write_json

    sidecar = path.with_name(path.name + ".json")
    try:
        write_json(sidecar, {**result, "sidecar": str(sidecar)})
    except UserError as refused:
        from prunecli.console import warn

        warn(f"{refused}; the export is written, its sidecar is not")
        return None
    return str(sidecar)
