"""Latency lookup table: each prunable layer timed alone at candidate output widths, on this device.

Latency-aware pruning (HALP, Shen et al. NeurIPS 2022; `prune --round-to auto`,
`--target-latency`) needs what a layer costs at a width it does not have yet. Timing the whole
model for every candidate is too slow, so each Conv/Linear is rebuilt at each candidate output
width (same kernel, stride, padding, groups; depthwise stays depthwise) and timed in isolation on
an input of the shape it sees in the model (captured with forward hooks), with the protocol of
`profiling.latency`: warm-up, timed runs interleaved across the widths of a layer, medians.

A layer's cost also depends on its input width (HALP's per-layer latency uses the previous
layer's current width): each Conv/Linear whose input a group narrows is also timed at candidate
input widths at its full output width (`Table.inputs`), and `layer_ms` combines the two rows
as a product, latency(out width) × latency(in width) / latency(full in). A linear input scaling
would be wrong on SIMD hardware: oneDNN on AVX-512 pads channels to blocks of 16, so a 3×3 conv
with 11 input channels costs what one with 16 does (measured on ResNet-56 here; 17–32 output
channels cost the same too). Elementwise layers (BN, activations) are not timed: `predict`
returns a ratio to the unpruned prediction, which the caller applies to a measured
whole-model latency and verifies by a real measurement.

The table is cached beside the checkpoint as `<stem>.latency.json`, keyed by device, device
name, torch version, threads, batch, dtype and the architecture's hash (tensor names and
shapes: timings do not depend on weight values); any difference discards it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")


class Table(dict):
    """layer → {output width: ms} at the layer's full input width (the dict itself), and `inputs`:
    layer → {input width: ms} at its full output width. A plain dict works wherever a Table does
    (no input rows: a linear input scaling)."""

    def __init__(self, rows=(), inputs: dict[str, dict[int, float]] | None = None):
        super().__init__(rows)
        self.inputs: dict[str, dict[int, float]] = inputs or {}


def layer_ms(table, name: str, dims: tuple[int, int, bool], win: int, wout: int) -> float:
    """One layer's predicted ms at (input width, output width); `dims`: its unpruned (in, out, depthwise).

    latency(out) × latency(in) / latency(full in) from the input row where the table has one,
    else × win / full in. A depthwise conv was timed with its input as wide as its output."""
    cin, _, depthwise = dims
    ms = lookup(table[name], wout)
    if depthwise:
        return ms
    row = getattr(table, "inputs", {}).get(name)
    if row and cin in row and row[cin] > 0:
        return ms * lookup(row, win) / row[cin]
    return ms * win / max(1, cin)


def table_key(arch_sha256: str, device: str, batch: int, dtype: str) -> dict[str, Any]:
    """What a cached table must match to be reused: any change in it changes the timings."""
    import torch

    from prunecli.profiling.report import device_name

    return {"arch_sha256": arch_sha256, "device": device, "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "batch": int(batch), "dtype": dtype}


def capture_inputs(model, input_shape, names: list[str] | None = None) -> dict[str, tuple[int, ...]]:
    """name → the shape (batch 1) of the single tensor each leaf module receives in a forward pass."""
    import torch

    from prunecli.profiling.counts import example_input, hooked_forward

    shapes: dict[str, tuple[int, ...]] = {}
    modules = {n: m for n, m in model.named_modules() if n and next(m.children(), None) is None}
    if names is not None:
        modules = {n: modules[n] for n in names if n in modules}

    def hook(name):
        def seen(module, inputs, output) -> None:
            if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor):
                shapes.setdefault(name, tuple(inputs[0].shape))
        return seen

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    hooked_forward(model, example_input(input_shape), handles)
    return shapes


def output_volume(model, input_shape, names: list[str]) -> dict[str, float]:
    """name → output elements per output channel for one sample (spatial positions or tokens): how
    much elementwise work (normalisation, activation, adds) one channel of the layer's output feeds."""
    import torch

    from prunecli.profiling.counts import example_input, hooked_forward

    named = dict(model.named_modules())
    volume: dict[str, float] = {}

    def hook(name):
        def seen(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.dim() >= 2:
                channels = output.shape[-1] if isinstance(module, torch.nn.Linear) else output.shape[1]
                volume.setdefault(name, output[:1].numel() / max(1, channels))
        return seen

    handles = [named[n].register_forward_hook(hook(n)) for n in names if n in named]
    hooked_forward(model, example_input(input_shape), handles)
    return volume


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def time_modules(items: list[tuple[Any, Any]], device: str, warmup: int, runs: int,
                 allocator: str = "steady") -> list[float]:
    """Median ms of each (module, input), the timed runs interleaved across the items (memory kept
    between passes on the CPU unless `allocator` is `system`: `profiling.allocator`)."""
    from prunecli.profiling.allocator import allocator as keep_memory
    from prunecli.profiling.latency import time_forward

    with keep_memory(allocator, device):
        for module, x in items:
            time_forward(module, x, device, warmup, 0)
        times: list[list[float]] = [[] for _ in items]
        for _ in range(runs):
            for i, (module, x) in enumerate(items):
                times[i].extend(time_forward(module, x, device, 0, 1))
    return [statistics.median(t) for t in times]


def at_width(module, width: int, inputs: bool = False):
    """A fresh Conv/Linear like `module` with `width` output channels (depthwise: in = out = groups),
    or with `inputs`, `width` input channels and its own output channels (not for grouped convs)."""
    import torch.nn as nn

    if inputs:
        if isinstance(module, nn.Linear):
            return nn.Linear(width, module.out_features, bias=module.bias is not None)
        return type(module)(width, module.out_channels, module.kernel_size, module.stride, module.padding,
                            module.dilation, 1, module.bias is not None, module.padding_mode)
    if isinstance(module, nn.Linear):
        return nn.Linear(module.in_features, width, bias=module.bias is not None)
    depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
    cin, groups = (width, width) if depthwise else (module.in_channels, module.groups)
    if width % groups:  # a grouped conv keeps its group count: widths step by it
        width = max(groups, width // groups * groups)
    return type(module)(cin, width, module.kernel_size, module.stride, module.padding, module.dilation, groups,
                        module.bias is not None, module.padding_mode)


def _input(module, shape, batch: int, width: int, device: str, dtype: str, inputs: bool = False):
    import torch
    import torch.nn as nn

    shape = list(shape)
    linear = isinstance(module, nn.Linear)
    if inputs:
        shape[-1 if linear else 1] = width
    elif not linear and module.groups > 1 and module.groups == module.in_channels:
        shape[1] = width  # depthwise: its input is as wide as its output
    return torch.randn(batch, *shape[1:], device=device, dtype=_dtype(dtype))


def time_layer_widths(model, input_shape, widths: dict[str, list[int]], batch: int, device: str = "cpu",
                      dtype: str = "float32", warmup: int = 2, runs: int = 5,
                      inputs: bool = False) -> dict[str, dict[int, float]]:
    """layer → {width: median ms} for each named Conv/Linear at each candidate output width (with
    `inputs`: input width, the output full; grouped convs are left out of those)."""
    import torch

    from prunecli.profiling.allocator import allocator

    named = dict(model.named_modules())
    shapes = capture_inputs(model, input_shape, list(widths))
    out: dict[str, dict[int, float]] = {}
    with torch.inference_mode(), allocator("steady", device):  # one setting for every layer's `time_modules`
        for name, ws in widths.items():
            if name not in shapes or not ws:
                continue
            layer = named[name]
            if inputs and getattr(layer, "groups", 1) > 1:
                continue
            items = [(at_width(layer, w, inputs).to(device, _dtype(dtype)).eval(),
                      _input(layer, shapes[name], batch, w, device, dtype, inputs)) for w in ws]
            out[name] = dict(zip(ws, time_modules(items, device, warmup, runs)))
    return out


def table_path(checkpoint: str) -> Path:
    from prunecli.io.sidecars import sidecar_path

    return sidecar_path(checkpoint, "latency.json")


def _rows(doc: dict) -> dict[str, dict[int, float]]:
    return {name: {int(w): float(ms) for w, ms in row.items()} for name, row in doc.items()}


def load_table(checkpoint: str | None, key: dict[str, Any]) -> Table:
    """The cached timings beside `checkpoint` if its key matches `key` exactly, else an empty table."""
    if not checkpoint or checkpoint == "-":
        return Table()
    path = table_path(checkpoint)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return Table()
    if doc.get("key") != key:
        return Table()
    return Table(_rows(doc.get("layers", {})), _rows(doc.get("inputs", {})))


def save_table(checkpoint: str | None, key: dict[str, Any], table: dict[str, dict[int, float]]) -> str | None:
    """`<stem>.latency.json`: `layers` (output-width rows) and `inputs` (input-width rows), atomically."""
    if not checkpoint or checkpoint == "-":
        return None
    from prunecli.io.atomic import write_json

    def rows(layers):
        return {n: {str(w): ms for w, ms in sorted(row.items())} for n, row in layers.items()}

    path = table_path(checkpoint)
    write_json(path, {"key": key, "layers": rows(table), "inputs": rows(getattr(table, "inputs", {}))})
    return str(path)


def ensure(table: Table, model, input_shape, wanted: dict[str, list[int]], batch: int, device: str, dtype: str,
           runs: int = 5, wanted_inputs: dict[str, list[int]] | None = None) -> int:
    """Time the (layer, output width) pairs `wanted` and (layer, input width) pairs `wanted_inputs`
    that `table` lacks, adding them; returns how many were timed."""
    timed = 0
    for rows, asked, inputs in ((table, wanted, False), (getattr(table, "inputs", None), wanted_inputs, True)):
        if rows is None or not asked:
            continue
        missing = {n: sorted({w for w in ws if w not in rows.get(n, {})}) for n, ws in asked.items()}
        missing = {n: ws for n, ws in missing.items() if ws}
        if not missing:
            continue
        got = time_layer_widths(model, input_shape, missing, batch, device, dtype, runs=runs, inputs=inputs)
        for name, row in got.items():
            rows.setdefault(name, {}).update(row)
        timed += sum(len(row) for row in got.values())
    return timed


def grid(channels: int, points: int = 16, multiple: int = 8) -> list[int]:
    """Candidate widths: ≤ `points` evenly stepped ones and the full width; the step is a multiple of
    `multiple` once it is that large (the widths fast kernels favour), else as fine as `points` allows."""
    step = -(-channels // points)
    if step >= multiple:
        step = -(-step // multiple) * multiple
    return sorted({*range(step, channels, step), channels})


def lookup(row: dict[int, float], width: int) -> float:
    """A layer's latency at `width`: the timed value, or linear interpolation between the timed neighbours."""
    if width in row:
        return row[width]
    ws = sorted(row)
    if width <= ws[0]:
        return row[ws[0]] * width / ws[0]
    if width >= ws[-1]:
        return row[ws[-1]] * width / ws[-1]
    hi = next(w for w in ws if w > width)
    lo = max(w for w in ws if w < width)
    return row[lo] + (row[hi] - row[lo]) * (width - lo) / (hi - lo)


def layer_dims(model) -> dict[str, tuple[int, int, bool]]:
    """Conv/Linear name → (in channels, out channels, depthwise)."""
    import torch.nn as nn

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = (m.in_features, m.out_features, False)
        elif isinstance(m, nn.modules.conv._ConvNd):
            out[name] = (m.in_channels, m.out_channels, m.groups > 1 and m.groups == m.in_channels)
    return out


def predict(table: dict[str, dict[int, float]], full: dict[str, tuple[int, int, bool]],
            widths: dict[str, tuple[int, int]]) -> float:
    """Sum over the timed layers of their latency at (in, out) width (`layer_ms`; HALP's model).

    `full`: layer → (in, out, depthwise) unpruned (`layer_dims`); `widths`: layer → (in, out) now
    (missing: unpruned).
    """
    total = 0.0
    for name, dims in full.items():
        if name in table:
            total += layer_ms(table, name, dims, *widths.get(name, dims[:2]))
    return total


def time_layers(model, input_shape, names: list[str], batch: int, device: str = "cpu", dtype: str = "float32",
                warmup: int = 5, runs: int = 20, allocator: str = "steady") -> dict[str, float]:
    """name → median ms of the model's own layer alone at `batch` (`profile --per-layer --latency`).

    Each layer runs on a random input of the shape it sees in the model; runs are interleaved
    across the layers so a burst of load on a shared machine hits them alike. Layers that take
    more than one tensor (or none) are left out.
    """
    import copy

    import torch

    named = dict(model.named_modules())
    shapes = capture_inputs(model, input_shape, names)
    items, kept = [], []
    for name in names:
        if name not in shapes:
            continue
        layer = named[name] if dtype == "float32" else copy.deepcopy(named[name]).to(_dtype(dtype))
        x = torch.randn(batch, *shapes[name][1:], device=device, dtype=_dtype(dtype))
        items.append((layer.to(device).eval(), x))
        kept.append(name)
    with torch.inference_mode():
        return dict(zip(kept, time_modules(items, device, warmup, runs, allocator)))
