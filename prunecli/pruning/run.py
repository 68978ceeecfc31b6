"""`prunecli prune` behind the CLI: load, (calibrate), prune, verify, save with sidecars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from prunecli.cli._output import err
from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import LayerMask, MasksSidecar, RemovedBlock
from prunecli.io.sidecars import write_sidecar
from prunecli.methods import get_method
from prunecli.models import build_model
from prunecli.profiling.counts import count, flops_sidecar
from prunecli.pruning.structured import Outcome, PrunePlan, prune, prune_indices


def accumulate_gradients(model, data_spec: str | None, batches: int, batch_size: int, header) -> None:
    """Sum loss gradients over `batches` calibration batches (for Taylor importance)."""
    if not data_spec:
        raise UserError("this method needs gradients: give --data SPEC for calibration batches")
    from prunecli.engine.run import data_for

    dataset = data_for(header, data_spec)
    model.train()  # BN in train mode, as in training, but weights are not updated
    model.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(dataset.loader("train", batch_size, train=False)):
        if i >= batches:
            break
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.eval()


def _decided(method, loaded, options: dict) -> tuple:
    """Methods that choose each layer's channels themselves (e.g. the similarity graph)."""
    model, shape = loaded.model, loaded.header.input_shape
    source = f"reusing {options['reuse']}" if options.get("reuse") else f"{options['samples']} samples of {options['data']}"
    err.print(f"pruning {loaded.header.model.name} with {method.name} (τ={options['threshold']}, {source})")
    removed, details = method.decide(loaded, options)
    before = count(model, shape)
    layers = prune_indices(model, shape, removed, details)
    total = sum(layer["channels_before"] for layer in layers) or 1
    ratio = sum(len(layer["removed"]) for layer in layers) / total
    return model, Outcome(ratio, before, count(model, shape), layers, list(loaded.entry.protected))


def _criterion(method, importance: str | None):
    """The method that scores channels: the method itself, or its `--importance` choice."""
    if not method.importance_option:
        return method
    inner = get_method(importance or "taylor", kind="structured")
    if inner.importance is None:
        raise UserError(f"--importance {inner.name}: use one of l1, l2, taylor, random")
    return inner


def run_prune(src: str, out: str, method_name: str, plan: PrunePlan, *, data: str | None, calib_batches: int,
              batch_size: int, options: dict) -> dict:
    method = get_method(method_name, kind="structured")
    loaded = ckpt.load(src)
    model, header = loaded.model, loaded.header
    shape = header.input_shape
    if method.decide is not None:
        pruned, outcome = _decided(method, loaded, {**options, "data": data, "batch_size": batch_size})
    else:
        if method.plan:
            plan = dataclasses.replace(plan, **method.plan)
        criterion = _criterion(method, options.get("importance"))
        if criterion.needs_gradients or plan.remove_blocks:
            accumulate_gradients(model, data, calib_batches, batch_size, header)
        err.print(f"pruning {header.model.name} with {method.name} "
                  f"({'global' if plan.global_pruning else 'local'}, "
                  f"{'ratio ' + str(plan.ratio) if plan.target_macs is None else 'target ' + plan.target_macs})")
        with torch.enable_grad():
            pruned, outcome = prune(model, shape, criterion.importance, plan, loaded.entry.protected,
                                    on_trial=lambda r, m: err.print(f"  ratio {r:.4f} → {m:,} MACs"))
    pruned.zero_grad(set_to_none=True)
    fresh, _, _ = build_model(header.model.name, **header.model.kwargs)
    entry = ckpt.lineage_entry("prune", {"method": method.name, **options}, loaded.sha256)
    new = header.model_copy(update={"structure": ckpt.structure_diff(pruned, fresh),
                                    "removed_modules": ckpt.removed_modules(pruned, fresh),
                                    "lineage": [*header.lineage, entry], "metrics": {}})
    ckpt.save(pruned, out, new)
    name = Path(out).name if out != "-" else "-"
    masks = MasksSidecar(checkpoint=name, parent_sha256=loaded.sha256, method=method.name,
                         options={**options, "resolved_ratio": outcome.ratio},
                         layers=[LayerMask.model_validate(r) for r in outcome.layers],
                         removed_blocks=[RemovedBlock.model_validate(b) for b in outcome.blocks])
    write_sidecar(out, "masks.json", masks)
    # The sidecar compares with the unpruned architecture: the input itself unless it was pruned before.
    unpruned = outcome.before if not header.structure else count(fresh, shape)
    flops = flops_sidecar(unpruned, outcome.after, shape, name)
    write_sidecar(out, "flops.json", flops)
    before, after = outcome.before, outcome.after
    return {"output": out, "method": method.name, "ratio": outcome.ratio, "macs_before": before.macs,
            "macs_after": after.macs, "macs_ratio": before.macs / max(1, after.macs),
            "params_before": before.params, "params_after": after.params, "pruned_layers": len(outcome.layers),
            **({"removed_blocks": len(outcome.blocks)} if outcome.blocks else {})}
