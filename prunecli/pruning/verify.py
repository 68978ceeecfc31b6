"""Check a pruned model before anything is written: it runs, and its checkpoint reloads.

A pruned file that looks like a success but cannot be loaded, or loads into another model, is
the worst outcome of `prune` (issue 12: timm wrappers whose sizes are read-only properties).
So before writing, `prune` runs the pruned model once on a probe input, serialises the
checkpoint once, reloads those very bytes in memory into a fresh registry build and compares
state dicts and outputs; the same bytes are then written. If any step fails, nothing is
written and the user gets one line.

A forward pass that fails is attributed to the innermost module being executed when the
exception was raised (global forward hooks, removed afterwards), so the message can name the
layer type Torch-Pruning could not prune consistently and suggest `--ignore`.
"""

from __future__ import annotations

import contextlib
import re
import sys

import torch

from prunecli.errors import UserError

PROBE_BATCH = 2
RTOL, ATOL = 1e-4, 1e-5


class _Tracker:
    """Stack of modules being executed; remembers where the first exception surfaced."""

    def __init__(self):
        self.stack: list[torch.nn.Module] = []
        self.exc: BaseException | None = None
        self.path: list[torch.nn.Module] = []

    def enter(self, module, args) -> None:
        self.stack.append(module)

    def leave(self, module, args, output) -> None:
        # Called with `always_call=True`, also from torch's `except` clause while an exception
        # propagates: the first module to see an exception is where it was raised.
        exc = sys.exc_info()[1]
        if exc is not None and exc is not self.exc:
            self.exc, self.path = exc, list(self.stack)
        if self.stack and self.stack[-1] is module:
            self.stack.pop()


def _dotted(chain: list[torch.nn.Module]) -> str:
    """'stages.1.blocks.0.attn' from the chain of modules (outermost first)."""
    names = []
    for parent, child in zip(chain, chain[1:]):
        name = next((n for n, m in parent.named_children() if m is child), None)
        if name is None:  # reached through a functional call, not as a child
            names = []
            continue
        names.append(name)
    return ".".join(names)


def _glob(path: str) -> str:
    """'stages.1.blocks.0.attn' → 'stages.*.blocks.*.attn' (every block of that kind)."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)", "*", path)


@contextlib.contextmanager
def forward_guard(stage: str):
    """Turn an exception raised inside a module's forward into one `error:` line naming it.

    User errors (a timeout, a bad option) pass through unchanged, as do exceptions outside any
    module's forward (Torch-Pruning's own code): those keep their traceback.
    """
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    tracker = _Tracker()
    pre = register_module_forward_pre_hook(tracker.enter)
    post = register_module_forward_hook(tracker.leave, always_call=True)
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised unless a module's forward raised it
        if err is not tracker.exc or not tracker.path:
            raise
        module = tracker.path[-1]
        kind = type(module).__name__
        path = _dotted(tracker.path)
        where = f"{kind} {path!r}" if path else kind
        example = f"e.g. --ignore '{_glob(path)}'" if path else "--ignore GLOB"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{stage}: the forward pass fails in {where} ({type(err).__name__}: {first}); "
                        f"prunecli cannot prune around this {kind} — keep it and the layers feeding it "
                        f"unpruned ({example}); nothing written") from err
    finally:
        pre.remove()
        post.remove()


def probe_input(shape, batch: int = PROBE_BATCH) -> torch.Tensor:
    """A fixed random probe (own generator: the global RNG stream is left as it was)."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def _run(model, x) -> list[torch.Tensor]:
    was_training = model.training
    device = next((p.device for p in model.parameters()), x.device)
    model.eval()
    try:
        with torch.no_grad():
            return [t.detach().float().cpu() for t in _tensors(model(x.to(device)))]
    finally:
        model.train(was_training)


def checked_bytes(model, header, shape, skeleton=None) -> bytes:
    """The checkpoint bytes of `model`, verified: it runs and reloads into an identical model.

    `skeleton`: the unpruned registry build of `header.model` on the meta device, if the caller
    has one it no longer needs (`prune`'s structure diff); the reload is built on it.

    Raises:
        UserError: the pruned forward fails (naming the layer), or the bytes do not reload
            into the same state dict and the same output on the probe. Nothing is written.
    """
    from prunecli.io import checkpoint as ckpt

    x = probe_input(shape)
    with forward_guard("pruned model on a probe input"):
        expected = _run(model, x)
    data = ckpt.dump(model, header)
    # First on a skeleton filled by assignment (no random init of weights about to be replaced);
    # anything short of a clean pass is decided by the ordinary load path, so the shortcut can
    # only save time, never change the verdict.
    try:
        if _reload_mismatch(model, data, x, expected, skip_init=True, skeleton=skeleton) is None:
            return data
    except Exception:  # noqa: BLE001 - decided below by the ordinary path
        pass
    why = "the written checkpoint would not reload into the same model"
    try:
        mismatch = _reload_mismatch(model, data, x, expected, skip_init=False)
    except Exception as err:  # noqa: BLE001 - any failure to reload is the refusal
        raise UserError(f"{why} ({type(err).__name__}: {str(err)[:200]}); nothing written — "
                        "a prunecli bug, please report it") from err
    if mismatch is not None:
        raise UserError(f"{why} ({mismatch}); nothing written — a prunecli bug, please report it")
    return data


def _reload_mismatch(model, data: bytes, x, expected: list[torch.Tensor], skip_init: bool,
                     skeleton=None) -> str | None:
    """Why `data` does not reload into `model` (state dict, then outputs on `x`), or None."""
    from prunecli.io import checkpoint as ckpt

    reloaded = ckpt.load_bytes(data, skip_init=skip_init, digest=False, skeleton=skeleton).model
    mismatch = _state_mismatch(model.state_dict(), reloaded.state_dict())
    if mismatch is None:
        got = _run(reloaded, x)
        if len(got) != len(expected) or any(a.shape != b.shape or not torch.allclose(a, b, rtol=RTOL, atol=ATOL)
                                             for a, b in zip(got, expected)):
            mismatch = "different outputs on a probe input"
    return mismatch


def _state_mismatch(a: dict, b: dict) -> str | None:
    """The first difference between two state dicts, or None."""
    if a.keys() != b.keys():
        extra = sorted(set(a) ^ set(b))
        return f"state dict keys differ: {', '.join(extra[:3])}"
    for key, t in a.items():
        if t.shape != b[key].shape:
            return f"{key}: shape {tuple(t.shape)} reloads as {tuple(b[key].shape)}"
        if not torch.equal(t.detach().cpu(), b[key].detach().cpu()):
            return f"{key}: values differ"
    return None
