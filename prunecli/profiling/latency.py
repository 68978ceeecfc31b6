"""Measured latency and peak memory of one forward pass, for a model at given batch sizes.

Latency: after `warmup` untimed passes (lazy init, cuDNN autotuning, caches), `runs` passes
are timed one by one under `torch.inference_mode`: on CPU with `time.perf_counter`, on CUDA with
a start and an end `torch.cuda.Event` on the stream (the GPU's own clock, as Park et al. time
their nets, spec §1.6). We report the median (robust to the odd scheduler hiccup; the default)
and the mean (`stat="mean"`, the paper's protocol: the mean of 30 DEQ / 100 other passes after 10
warm-up), the 90th percentile (how bad the tail is) and throughput = batch / the chosen statistic.

Peak memory is the memory a forward pass needs on top of the weights and the input:

* CUDA: the caching allocator's own count, `torch.cuda.max_memory_allocated` minus what was
  allocated before the pass (so it includes cuDNN workspaces, rounded to allocator blocks).
* CPU: PyTorch has no CPU allocator statistics, so we count tensors: a `TorchDispatchMode`
  sees every tensor an operator returns, adds its storage size while a Python reference to it
  is alive and keeps the maximum. This is the peak of live activation/temporary tensors;
  it does not see scratch buffers a kernel allocates and frees internally (e.g. oneDNN), nor
  allocator overhead, so it is a lower bound of the process's real RSS growth.
"""

from __future__ import annotations

import statistics
import time
import weakref
from typing import Any


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: a value that was actually measured, even for few runs."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * q // 100) - 1))
    return sorted_values[int(k)]


# ---------------------------------------------------------------- timing protocol (issue 15 item 8):
# the statistic (median | mean) and the clock (perf_counter on CPU, CUDA events on GPU)

STATS = ("median", "mean")


class WallTimer:
    """`time.perf_counter` around one pass, the device synchronised before and after it."""

    name = "perf_counter"

    def __init__(self, device: str):
        self.device = device

    def __call__(self, run) -> float:
        _sync(self.device)
        start = time.perf_counter()
        run()
        _sync(self.device)
        return (time.perf_counter() - start) * 1000.0


class CudaEventTimer:
    """Two `torch.cuda.Event(enable_timing=True)` recorded on the device's current stream around one
    pass; `elapsed_time` after the end event completes. Earlier work is drained first, so the start
    event marks this pass only. `cuda` is `torch.cuda` (a stand-in in CPU tests)."""

    name = "cuda_event"

    def __init__(self, device: str, cuda=None):
        import torch

        self.device, self.cuda = device, cuda if cuda is not None else torch.cuda

    def __call__(self, run) -> float:
        self.cuda.synchronize(self.device)
        stream = self.cuda.current_stream(self.device)
        start, end = self.cuda.Event(enable_timing=True), self.cuda.Event(enable_timing=True)
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))


def make_timer(device: str) -> WallTimer | CudaEventTimer:
    """CUDA events on a CUDA device, the wall clock elsewhere."""
    return CudaEventTimer(device) if device.startswith("cuda") else WallTimer(device)


def summarize(times: list[float], batch: int, stat: str = "median") -> dict[str, Any]:
    """One latency row: median, mean and p90 (ms) and throughput from the chosen `stat`."""
    if stat not in STATS:
        raise ValueError(f"stat must be one of {STATS}, got {stat!r}")
    ordered = sorted(times)
    row = {"batch": int(batch), "median_ms": statistics.median(ordered), "p90_ms": _percentile(ordered, 90),
           "mean_ms": statistics.fmean(ordered), "stat": stat}
    chosen = row[f"{stat}_ms"]
    row["images_per_s"] = batch / (chosen / 1000.0) if chosen > 0 else float("inf")
    return row


def time_forward(model, x, device: str, warmup: int, runs: int, timer=None) -> list[float]:
    """Milliseconds of `runs` timed forward passes after `warmup` untimed ones (`timer`: by device)."""
    import torch

    timer = timer if timer is not None else make_timer(device)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in range(runs):
            times.append(timer(lambda: model(x)))
    return times


def measure_latency(model, input_shape, batch_sizes, device: str = "cpu", warmup: int = 5,
                    runs: int = 20, stat: str = "median") -> list[dict[str, Any]]:
    """`[{batch, median_ms, p90_ms, mean_ms, stat, images_per_s}]`, one row per batch size, random inputs."""
    return measure_latency_many([model], [input_shape], batch_sizes, device, warmup, runs, stat=stat)[0]


def measure_latency_many(models, input_shapes, batch_sizes, device: str = "cpu", warmup: int = 5,
                         runs: int = 20, inputs=None, stat: str = "median",
                         allocator: str = "steady") -> list[list[dict[str, Any]]]:
    """Latency rows for several models, their timed runs interleaved (A, B, A, B, …).

    On a shared, noisy machine a burst of load then hits every model alike, so the ratio of
    two medians or means (the speedup `profile --compare` reports) stays honest. `inputs` (a tensor of
    real samples, e.g. MRI slices) replaces the random inputs: an iterative solver's run time
    depends on what it solves. `allocator`: `profiling.allocator`'s mode (steady: memory kept
    between passes on the CPU); each row records the mode in effect.
    """
    import torch

    from prunecli.profiling.allocator import allocator as keep_memory

    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    models = [m.to(device).eval() for m in models]
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # pick the fastest kernels, as deployment would
    rows: list[list[dict[str, Any]]] = [[] for _ in models]
    try:
        with keep_memory(allocator, device) as mode:
            for batch in batch_sizes:
                xs = [torch.randn(batch, *shape, device=device) if inputs is None
                      else _take(inputs, batch).to(device) for shape in input_shapes]
                for model, x in zip(models, xs):
                    time_forward(model, x, device, warmup, 0)
                times: list[list[float]] = [[] for _ in models]
                for _ in range(runs):
                    for i, (model, x) in enumerate(zip(models, xs)):
                        times[i].extend(time_forward(model, x, device, 0, 1))
                for i, t in enumerate(times):
                    rows[i].append({**summarize(t, batch, stat), "allocator": mode})
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return rows


def _take(inputs, batch: int):
    """`batch` samples from `inputs`, cycling when there are fewer."""
    import torch

    reps = -(-batch // len(inputs))
    return torch.cat([inputs] * reps)[:batch]


def peak_memory(model, input_shape, batch: int, device: str = "cpu") -> dict[str, Any]:
    """Bytes: weights, input, the forward pass's activation peak, and their sum (see module doc)."""
    import torch

    model = model.to(device).eval()
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    x = torch.randn(batch, *input_shape, device=device)
    if device.startswith("cuda"):
        method = "torch.cuda.max_memory_allocated"
        activations = _cuda_peak(model, x, device)
    else:
        method = "live tensor bytes (TorchDispatchMode)"
        activations = _cpu_peak(model, x)
    inputs = x.numel() * x.element_size()
    return {"batch": int(batch), "weights_bytes": int(weights), "input_bytes": int(inputs),
            "activations_bytes": int(activations), "total_bytes": int(weights + inputs + activations),
            "method": method}


def _cuda_peak(model, x, device: str) -> int:
    import torch

    with torch.inference_mode():
        model(x)  # first pass: lazy init and workspaces do not belong to the steady state
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = model(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    del out
    return max(0, peak - base)


def _cpu_peak(model, x) -> int:
    import torch

    known = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers(), x)}
    tracker = _make_tracker(known)
    with torch.inference_mode():
        model(x)
        with tracker:
            out = model(x)
        del out
    return tracker.peak


def _make_tracker(known: set[int]):
    """A dispatch mode counting the bytes of live tensors created by operators (class built lazily)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveTensorBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live: dict[int, list[int]] = {}  # storage pointer → [bytes, Python references]
            self.current = self.peak = 0

        def _release(self, ptr: int) -> None:
            entry = self.live.get(ptr)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del self.live[ptr]
                    self.current -= entry[0]

        def _track(self, t) -> None:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in known:  # views of weights or of the input are not new memory
                return
            entry = self.live.get(ptr)
            if entry is None:
                entry = self.live[ptr] = [storage.nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, ptr)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.layout == torch.strided:  # sparse: no storage
                    self._track(t)
            return out

    return LiveTensorBytes()
