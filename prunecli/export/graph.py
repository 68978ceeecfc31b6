"""The `torch.export.export` step both formats start from, and why a model cannot be exported.

torch.export traces one static graph: Python control flow must be decidable from shapes alone.
Two of our models decide from the input's *values*, so they are refused with one line naming
why, before anything is written; every other failure of the tracer is reported the same way.
fastMRI's U-Net decides from shapes but writes the test as a tensor
(`torch.sum(torch.tensor(padding)) != 0`), which the tracer cannot read; for the export we
bind the same forward with that test in plain Python (same operations, same numbers).
"""

from __future__ import annotations

import contextlib
import types

from prunecli.errors import UserError

SOLVER = ("its fixed-point solver (Anderson) iterates until the residual falls below --tol, a loop whose "
          "length depends on the input's values; torch.export needs one static graph")
E2E = ("its sensitivity net measures the auto-calibration width from the mask's values "
       "(fastmri SensitivityModel.get_pad_and_num_low_freqs) and slices k-space by it, a data-dependent "
       "shape torch.export cannot trace; the VarNet with given coil maps (`varnet`) exports")


def why_not(model) -> str | None:
    """Why `model` cannot be exported (None: it can, as far as we know)."""
    if hasattr(model, "last_iterations"):  # the solver models' marker (profiling/report.py uses it too)
        return SOLVER
    if any(type(m).__name__ == "SensitivityModel" for m in model.modules()):
        return E2E
    return None


def export_program(model, x, name: str, dynamic_batch: bool):
    """`torch.export.export(model, (x,))`, the batch dimension symbolic with `dynamic_batch`."""
    import torch

    reason = why_not(model)
    if reason:
        raise UserError(f"cannot export {name}: {reason}")
    shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    with _traceable(model):
        try:
            return torch.export.export(model, (x,), dynamic_shapes=shapes)
        except Exception as err:  # the tracer's own errors (Unsupported, data-dependent guards, ...)
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise UserError(f"cannot export {name}: torch.export failed: {first.strip()[:300]}",
                            hint="--debug shows the whole traceback") from err


@contextlib.contextmanager
def _traceable(model):
    """Rebind fastMRI U-Nets' forward for the trace (see module doc); restored afterwards."""
    patched = [m for m in model.modules() if type(m).__name__ == "Unet" and type(m).__module__.startswith("fastmri")]
    for m in patched:
        m.forward = types.MethodType(_unet_forward, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _unet_forward(self, image):
    """fastmri.models.unet.Unet.forward with its padding test in Python (`any(padding)`)."""
    import torch
    import torch.nn.functional as F

    stack, output = [], image
    for layer in self.down_sample_layers:
        output = layer(output)
        stack.append(output)
        output = F.avg_pool2d(output, kernel_size=2, stride=2, padding=0)
    output = self.conv(output)
    for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv):
        skip = stack.pop()
        output = transpose_conv(output)
        padding = [0, int(output.shape[-1] != skip.shape[-1]), 0, int(output.shape[-2] != skip.shape[-2])]
        if any(padding):  # reflect-pad right/bottom for odd sizes, as fastMRI does
            output = F.pad(output, padding, "reflect")
        output = conv(torch.cat([output, skip], dim=1))
    return output
