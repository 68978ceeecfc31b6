"""A steady CPU allocator while latency is measured: the model's time, not malloc's.

PyTorch's CPU tensors come from the C library's `malloc`. glibc serves blocks above its mmap
threshold (128 KiB, raised on the fly up to 32 MiB) with fresh `mmap`s and returns freed memory
above its trim threshold to the kernel, so a batch-64 forward whose activations are tens of MiB
pays page faults for every activation, every pass, and how many depends on the process's
history (which sizes it freed before). Measured on this project's 2-core CPU: ConvNeXt-Atto at
batch 64 took 800–960 ms per pass from one process to the next under glibc's defaults and
520–550 ms with memory kept (the same pruned/unpruned ratio, a third of the spread); ResNet-56
113 → 92 ms. Deployments avoid this with a caching allocator (PyTorch's own CPU launcher,
`torch.backends.xeon.run_cpu`, preloads jemalloc or tcmalloc).

`steady` (the default of `profile` and of latency-aware `prune`) asks glibc, through `mallopt`,
to serve every block from its heap (`M_MMAP_MAX` 0) and never to trim it (`M_TRIM_THRESHOLD`
2 GiB) while timing: after the warm-up passes every pass reuses memory the process already
owns, as a caching allocator would. Afterwards glibc's documented defaults are set back and
the heap trimmed (its dynamic threshold stays off: a CLI process ends soon after). `system`
measures with the allocator as the process found it. Where `mallopt` is missing (macOS, musl)
or the device is not the CPU, nothing is changed and the mode recorded is `system`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

MODES = ("steady", "system")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h> parameter numbers
DEFAULT_TRIM, DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's documented defaults (mallopt(3))
NO_TRIM = 2**31 - 1  # mallopt takes a C int: 2 GiB of free heap top before a trim, i.e. never here
_active: list[str] = []  # the modes of the enclosing `allocator` blocks, innermost last


@lru_cache(maxsize=1)
def _libc():
    """glibc's `mallopt` and `malloc_trim`, or None where the C library has no `mallopt`."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def check_mode(mode: str) -> None:
    from prunecli.errors import UserError

    if mode not in MODES:
        raise UserError(f"--allocator must be one of {', '.join(MODES)}, got {mode!r}")


def mode_for(mode: str, device: str) -> str:
    """The mode an `allocator(mode, device)` block puts in effect here, without touching malloc."""
    return "steady" if mode == "steady" and device.startswith("cpu") and _libc() is not None else "system"


@contextmanager
def allocator(mode: str, device: str, libc=None) -> Iterator[str]:
    """Measure inside this block with `mode`'s allocator; yields the mode in effect (`system`
    where `steady` cannot apply). Inside an enclosing block nothing changes and its mode is
    yielded: the latency table's layer-by-layer timings share one setting and one trim at the
    end. `libc`: a stand-in for the C library in tests."""
    if _active:
        yield _active[-1]
        return
    on_cpu = device.startswith("cpu")
    libc = libc if libc is not None else (_libc() if mode == "steady" and on_cpu else None)
    if mode != "steady" or not on_cpu or libc is None:
        with _entered("system") as got:
            yield got
        return
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, NO_TRIM)):  # mallopt: 1 on success
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        with _entered("system") as got:
            yield got
        return
    try:
        with _entered("steady") as got:
            yield got
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM)
        libc.malloc_trim(0)


@contextmanager
def _entered(mode: str) -> Iterator[str]:
    _active.append(mode)
    try:
        yield mode
    finally:
        _active.pop()
