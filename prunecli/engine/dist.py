"""Multi-process training under torchrun: one process per device, DistributedDataParallel.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process it starts. With them set (and
WORLD_SIZE > 1), `setup(device)` starts the process group (NCCL on CUDA, gloo on CPU), puts
this rank on its LOCAL_RANK device and silences every rank but 0 (no logs, progress bars, or
results; `prunecli.io.atomic` writes nothing there either). Without them nothing changes: a
plain process is world 1, rank 0, and every function here is a no-op.

What runs how under torchrun (see README "Multi-process training (torchrun)"):
- `train`, `finetune`, `evaluate` and the fine-tuning inside `prune --method l1-unstructured`
  run distributed: `--batch-size` is the global batch, each rank takes its contiguous slice of
  every global batch (the loaders' `shard`), so the ranks together see exactly the samples and
  augmentations of a one-process run.
- The one-shot commands (`prune` with any other method, `analyze`, `profile`, `doctor`,
  `import`, `info`, `ls`) run on rank 0; the other ranks exit at once with status 0 (torchrun
  waits for rank 0), so a pipeline can run every step under the same launcher.

This module imports torch only inside functions: `atomic` and the CLI consult `is_main()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_STATE: dict = {"device": None, "initialised": False}


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str | None = None
    """This rank's device once `setup` resolved it (None before)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def context() -> Context:
    """This process's place in the job (world 1, rank 0 outside torchrun)."""
    return Context(rank=_env_int("RANK", 0), world=_env_int("WORLD_SIZE", 1),
                   local_rank=_env_int("LOCAL_RANK", 0), device=_STATE["device"])


def is_main() -> bool:
    """True on rank 0 and in a plain process: the one that writes files and prints."""
    return _env_int("RANK", 0) == 0


def quiet_other_ranks() -> None:
    """Ranks other than 0 print nothing (logs, progress bars, results): torchrun forwards every
    rank's output, and one copy is what a user wants to read."""
    if is_main():
        return
    import sys

    from prunecli.console import err

    err.quiet = True
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  results (tables, JSON) of this rank go nowhere


def resolve(device: str) -> str:
    """`--device` for this rank: under torchrun `auto`/`cuda` mean cuda:LOCAL_RANK."""
    from prunecli.errors import UserError
    from prunecli.utils.runtime import resolve_device

    ctx = context()
    if not ctx.distributed:
        return resolve_device(device)
    resolved = resolve_device(device)
    if resolved == "cpu":
        return "cpu"
    if device not in ("auto", "cuda"):
        raise UserError(f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; give --device auto "
                        "or cuda (CUDA_VISIBLE_DEVICES picks the GPUs)")
    import torch

    if ctx.local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {ctx.local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
    return f"cuda:{ctx.local_rank}"


def setup(device: str) -> str:
    """Resolve this rank's device and, under torchrun, start the process group (once).

    Returns the device. NCCL when the device is CUDA, gloo on CPU; the group is destroyed at exit.
    """
    dev = resolve(device)
    ctx = context()
    _STATE["device"] = dev
    if not ctx.distributed or _STATE["initialised"]:
        return dev
    import atexit

    import torch
    import torch.distributed as dist

    if dev.startswith("cuda"):
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo")
        atexit.register(destroy)
    _STATE["initialised"] = True
    return dev


def destroy() -> None:
    """Destroy the group while the interpreter is whole (atexit). Garbage first: a DDP reducer or
    gloo work object left to the interpreter's finalisation can abort the process ("terminate
    called without an active exception", SIGABRT) after a run that succeeded."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
    _STATE["initialised"] = False


def finish() -> None:
    """End of a successful distributed command: every rank meets at a barrier (none tears gloo
    down while a peer is still writing or in a collective), then the group is destroyed. Error
    paths skip the barrier (a peer may never arrive) and leave it to `destroy` at exit."""
    if _active():
        barrier()
    destroy()


def _active() -> bool:
    if context().world <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor):
    """Sum `tensor` over ranks, in place (identity in one process). Returns it."""
    if _active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj) -> list:
    """Every rank's `obj`, in rank order ([obj] in one process)."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out = [None] * context().world
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. Without SyncBatchNorm each
    rank's last step updated its own; validation must see the model rank 0 saves."""
    if not _active():
        return
    import torch.distributed as dist

    for buf in model.buffers():
        dist.broadcast(buf, src=0)


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def unwrap(model):
    """The module inside DistributedDataParallel (`.module`) and/or torch.compile (`._orig_mod`);
    the model itself otherwise."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def check_batch(batch_size: int, option: str = "--batch-size") -> None:
    """The global batch must split evenly over the ranks."""
    from prunecli.errors import UserError

    world = context().world
    if batch_size % world:
        raise UserError(f"{option} {batch_size} is the global batch and must divide by the {world} processes "
                        f"(torchrun): try {max(world, batch_size // world * world)}")


def shard(loader, repeated: bool = False, what: str = "this data set"):
    """This rank's part of `loader` (its slice of every global batch), with --repeated-aug timm's
    repeated-augmentation stream; the loader itself in one process without it."""
    ctx = context()
    if not ctx.distributed and not repeated:
        return loader
    from prunecli.errors import UserError

    if not hasattr(loader, "shard"):
        raise UserError(f"{what} cannot be split across processes or repeat-augmented "
                        f"({type(loader).__name__} has no shard)")
    return loader.shard(ctx.rank, ctx.world, repeated)


def lineage(batch_size: int) -> dict:
    """What the checkpoint lineage records about the process layout."""
    world = context().world
    return {"world_size": world, "global_batch": batch_size, "batch_per_rank": batch_size // world}


class Wrapped:
    """A model prepared for training under torchrun: `net` is what the loop calls (DDP around
    the model, SyncBatchNorm in place of BatchNorm); `plain()` puts the original BatchNorm modules
    back for a while (checkpoint writes and per-epoch hooks see the model as built). The synced
    modules share the originals' parameters and statistics, so nothing is copied either way."""

    def __init__(self, model, net, swaps: list):
        self.model, self.net, self._swaps = model, net, swaps

    def _put(self, which: int) -> None:
        for parent, name, plain, synced in self._swaps:
            setattr(parent, name, (plain, synced)[which])

    def plain(self):
        from contextlib import contextmanager

        @contextmanager
        def scope():
            self._put(0)
            try:
                yield self.model
            finally:
                self._put(1)

        return scope()

    def close(self) -> None:
        self._put(0)
        self.net = self.model  # drop the DDP wrapper (its reducer) before the group goes


def wrap(model, device: str, sync_bn: bool) -> Wrapped:
    """DistributedDataParallel around `model` under torchrun (the model itself in one process).

    BatchNorm becomes torch's SyncBatchNorm (statistics over the global batch, so the ranks
    together compute what one process computes) unless `sync_bn` is off. torch implements
    SyncBatchNorm for GPUs only: on CPU (gloo) each rank normalises its own slice, and rank 0
    says so once.
    """
    if not _active():
        return Wrapped(model, model, [])
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.parallel import DistributedDataParallel

    has_bn = any(isinstance(m, _BatchNorm) for m in model.modules())
    if sync_bn and has_bn and not device.startswith("cuda"):
        from prunecli.console import warn

        warn("SyncBatchNorm needs CUDA (torch); on CPU each process normalises its own slice of the batch")
    wrapped = sync_batchnorm(model) if sync_bn and device.startswith("cuda") else Wrapped(model, model, [])
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    wrapped.net = DistributedDataParallel(model, device_ids=ids)
    return wrapped


def sync_batchnorm(model) -> Wrapped:
    """Put torch's SyncBatchNorm in place of every BatchNorm of `model` (in place; `close()` puts
    the originals back). Each SyncBatchNorm shares its BatchNorm's parameters and statistics."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    swaps = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, torch.nn.SyncBatchNorm):
                swaps.append((parent, name, child, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child)))
    wrapped = Wrapped(model, model, swaps)
    wrapped._put(1)
    return wrapped
