"""`profile --backend onnxruntime`: the checkpoint's model as onnxruntime runs it, timed like PyTorch.

The model is exported in-process to a temporary ONNX file (dynamic batch, so every batch size
of the profile runs one session), verified against PyTorch as `prunecli export` does (a wrong
graph would time the wrong thing), and loaded into an onnxruntime session; the file is deleted
once the session holds it. A small module wraps the session as a module, so
`profiling/latency.py`'s interleaved protocol (warm-up, one timed pass per model in turn,
medians) times both backends the same way.

Threads: onnxruntime's intra-op pool gets `--threads`, else torch's current thread count, so the
two backends are compared at the same parallelism. Device: the CPU provider, or CUDA where the
device is CUDA and this onnxruntime has that provider (inputs are then copied host↔device inside
the timed pass: `session.run` takes host arrays).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prunecli.errors import UserError


def ort_model(model, input_shape, name: str, device: str = "cpu", threads: int | None = None):
    """A module running `model` (exported and verified here) in onnxruntime on `device`."""
    import torch

    from prunecli.export.formats import onnx_session, providers, require_onnx, write
    from prunecli.export.graph import export_program
    from prunecli.export.run import SEED, verify

    require_onnx()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in providers(device):
        raise UserError("--backend onnxruntime --device cuda needs onnxruntime's CUDA provider (onnxruntime-gpu); "
                        "this onnxruntime has only the CPU provider: use --device cpu")
    model = model.cpu().eval()
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(SEED))
    with tempfile.TemporaryDirectory(prefix="prunecli-ort-") as folder:
        path = Path(folder) / "model.onnx"
        write(export_program(model, x, name, dynamic_batch=True), x, "onnx", path, None)
        check = verify(model, "onnx", path, [x, torch.randn(3, *input_shape)], atol=1e-4, rtol=1e-3)
        if not check["passed"]:
            raise UserError(f"--backend onnxruntime: the ONNX export of {name} does not reproduce PyTorch "
                            f"(max abs diff {check['max_abs_diff']}); `prunecli export` says more")
        session = onnx_session(path, device, threads if threads is not None else torch.get_num_threads())
    return _module(session)


def _module(session):
    """A module whose forward is `session.run` on the input (moved to the host and back); the class
    is made here so that importing this file does not import torch."""
    import torch

    class _OrtModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.session = session
            self.input_name = session.get_inputs()[0].name
            self.provider = session.get_providers()[0]

        def forward(self, x):
            out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
            return torch.from_numpy(out).to(x.device)

    return _OrtModel()
