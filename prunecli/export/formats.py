"""Writing and running the two formats.

ONNX: the exported program goes through torch's dynamo ONNX exporter (onnxscript's torchlib
translates the ATen graph; `optimize=True` folds constants) and runs in onnxruntime, on the CUDA
provider where onnxruntime has one and the device is CUDA, else the CPU provider. pt2:
`torch.export.save` writes the program (graph + weights, a zip), `torch.export.load` reads it
back without the model's Python classes. Both are imported only here: the base CLI does not
need the optional extra.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from prunecli.errors import UserError

FORMATS = ("onnx", "pt2")
EXTRA = "pip install -e .[export]"


def require_onnx() -> None:
    """One line naming the extra when onnx / onnxruntime / onnxscript is missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"ONNX export needs the optional extra `export` ({', '.join(missing)} missing): {EXTRA}")


def max_opset() -> int:
    """The newest ONNX opset the installed onnx knows."""
    import onnx

    return onnx.defs.onnx_opset_version()


def write(program, x, fmt: str, path: Path, opset: int | None) -> None:
    """Write the exported program `program` (example input `x`) to `path` in `fmt`."""
    if fmt == "pt2":
        import torch

        torch.export.save(program, path)
        return
    import torch

    with contextlib.redirect_stdout(sys.stderr):  # the exporter prints its progress on stdout
        onnx_program = torch.onnx.export(program, (x,), dynamo=True, opset_version=opset, optimize=True,
                                         external_data=False, verbose=False)
        onnx_program.save(path, external_data=False)


def providers(device: str) -> list[str]:
    """onnxruntime providers for `device`: CUDA first where asked and available, CPU always."""
    import onnxruntime as ort

    wanted = ["CUDAExecutionProvider"] if device.startswith("cuda") else []
    return [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]


def onnx_session(path: Path, device: str = "cpu", threads: int | None = None):
    """An onnxruntime InferenceSession of `path` (threads: intra-op threads; None = onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about fused-node placement
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=providers(device))


def run(fmt: str, path: Path, x, device: str = "cpu"):
    """The exported model's output on `x` (a torch tensor) as a CPU float tensor, read back from `path`."""
    import torch

    if fmt == "pt2":
        with _quiet("torch.export"):  # a damaged file: torch logs a traceback before raising; we say it in one line
            module = torch.export.load(path).module()
        with torch.no_grad():
            return _first(module(x.to(device))).detach().float().cpu()
    session = onnx_session(path, device)
    out = session.run(None, {session.get_inputs()[0].name: x.cpu().numpy()})[0]
    return torch.from_numpy(out).float()


def runtime(fmt: str, path: Path, device: str) -> str:
    """What ran the exported file, for the record."""
    import torch

    if fmt == "pt2":
        return f"torch.export.load (torch {torch.__version__}, {device})"
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} ({', '.join(providers(device))})"


@contextlib.contextmanager
def _quiet(logger: str):
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR + 1)
    try:
        yield
    finally:
        log.setLevel(level)


def _first(out):
    """A model returning a tuple (timm distilled heads in training) is compared on its first output."""
    return out[0] if isinstance(out, (tuple, list)) else out
