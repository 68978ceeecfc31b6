"""How one optimizer step runs: mixed precision, memory format, torch.compile, micro-batches, EMA.

`StepRunner` is what `train_one_epoch` asks for the pieces of a step, so the loop itself stays a
plain PyTorch loop; with the defaults (`--amp off`, no channels_last, `--grad-accum 1`) every
call is a no-op and the numbers are those of the loop before these options existed.

- `--amp bf16|fp16`: `torch.autocast` around forward and loss; fp16 also scales the loss with
  `torch.amp.GradScaler` (bf16 has fp32's range and needs no scaling). Reconstruction (MRI)
  models are refused: their data consistency runs complex FFTs, which autocast does not cover
  and which lose the measurement-domain precision the `val_dc` selection reads.
- `--grad-accum N`: each loader batch (`--batch-size`, the total per optimizer step) is split
  into N micro-batches whose losses are weighted by their share of the batch, so the summed
  gradient equals the full batch's; DDP's `no_sync()` skips the all-reduce on all but the last.
- `--ema DECAY`: timm's `ModelEmaV3`, updated after every optimizer step on the unwrapped model.
"""

from __future__ import annotations

import contextlib

import torch

from prunecli.engine.dist import unwrap
from prunecli.errors import UserError

MODES = ("auto", "bf16", "fp16", "off")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_BACKEND = "inductor"  # tests swap in a failing or an eager backend


def resolve_amp(mode: str, device: str, task: str = "classification") -> str:
    """`auto` → bf16 on a CUDA device that supports it, else off (CPU runs stay fp32 by default)."""
    if mode not in MODES:
        raise UserError(f"--amp {mode!r}: expected one of {', '.join(MODES)}")
    cuda = str(device).startswith("cuda")
    if task == "reconstruction":
        if mode in DTYPES:
            raise UserError(f"--amp {mode}: reconstruction models run complex FFTs that autocast does not cover; "
                            "they train in fp32 (use --amp off)")
        return "off"
    if mode == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "off"
    if mode == "fp16" and not cuda:
        raise UserError(f"--amp fp16 needs a CUDA device (this run is on {device}); use --amp bf16 or off")
    return mode


def check_accum(batch_size: int, grad_accum: int) -> None:
    if batch_size % grad_accum:
        raise UserError(f"--grad-accum {grad_accum} must divide --batch-size {batch_size} "
                        "(the batch size is the total per optimizer step)")


def compile_model(model):
    """`torch.compile(model)`; compilation happens at the first call, see `compile_errors`."""
    try:
        return torch.compile(model, backend=COMPILE_BACKEND)
    except Exception as error:
        raise UserError(f"--compile: torch.compile failed: {_first_line(error)}") from None


@contextlib.contextmanager
def compile_errors(enabled: bool):
    """A torch.compile failure (raised lazily, at the first forward) as one `error:` line."""
    if not enabled:
        yield
        return
    from torch._dynamo.exc import TorchDynamoException

    try:
        yield
    except TorchDynamoException as error:
        raise UserError(f"--compile: torch.compile failed: {_first_line(error)} (run without --compile)") from None


def _first_line(error: Exception) -> str:
    """The root cause on one line (dynamo wraps a backend's exception in a multi-line report)."""
    cause = getattr(error, "inner_exception", None) or error.__cause__ or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


class StepRunner:
    """The parts of one optimizer step that the options change."""

    def __init__(self, amp: str = "off", device: str = "cpu", grad_accum: int = 1, channels_last: bool = False,
                 ema=None):
        self.dtype = DTYPES.get(amp)
        self.device_type = torch.device(device).type
        self.grad_accum, self.channels_last, self.ema = grad_accum, channels_last, ema
        self.scaler = torch.amp.GradScaler(self.device_type) if amp == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def inputs(self, x):
        if self.channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def micro_batches(self, model, x, y):
        """(x_i, y_i, weight_i, context_i): weight = share of the batch, context = no_sync but last."""
        if self.grad_accum == 1:
            yield x, y, None, contextlib.nullcontext()
            return
        xs, ys = torch.tensor_split(x, self.grad_accum), torch.tensor_split(y, self.grad_accum)
        parts = [(a, b) for a, b in zip(xs, ys) if len(b)]
        no_sync = getattr(model, "no_sync", None)
        for i, (a, b) in enumerate(parts):
            last = i == len(parts) - 1
            yield a, b, len(b) / len(y), (no_sync() if no_sync is not None and not last else contextlib.nullcontext())

    def backward(self, loss, weight) -> None:
        if weight is not None:
            loss = loss * weight
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, model, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if self.ema is not None:
            self.ema.update(unwrap(model))

    def state_dict(self) -> dict:
        """What `--resume` needs besides the optimizer: the EMA weights and the fp16 loss scale."""
        out = {}
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            out["ema"] = self.ema.module.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])


def prepare(model, cfg, device: str) -> tuple:
    """(the model to train with, its StepRunner): channels_last and EMA as `cfg` asks. `fit`
    compiles (`compile_model`) after the DDP wrap, so the memory format is set before DDP sees
    the parameters and the EMA copies the plain model."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(unwrap(model), decay=cfg.ema)
    runner = StepRunner(cfg.amp, device, cfg.grad_accum, cfg.channels_last, ema)
    return model, runner
