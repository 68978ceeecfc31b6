"""Unstructured L1 pruning schedules: one-shot, iterative and layerwise, with fine-tuning between steps.

Akhtar & Bathula, MTP report (IIT Ropar, 2023), following the code-derived schedule of
`shared/research/seeds-similarity-mtp-isomorphic.md` §2.2 rather than the report's prose:
- one-shot: one global L1 cut of all prunable weights to the target sparsity, then fine-tune;
- iterative: global cuts to cumulative sparsities 0.1, 0.2, … target; each step removes the
  fraction p' = 1 − (1−p)/(1−p_prev) of the weights still alive, then fine-tunes;
- layerwise: each layer (or block) in turn is cut at the target ratio within itself, then
  fine-tuned (the report's VGG layers / DenseNet blocks).
The cut itself is `torch.nn.utils.prune.global_unstructured(L1Unstructured)`; the
re-parametrisation is removed right away, so weights hold real zeros and the mask is kept by
`sparse.MaskKeeper` during fine-tuning. Unlike the report, epochs per step are a choice made
visible: `--total-finetune-epochs` spreads one budget over the steps for equal-budget comparisons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn
from torch.nn.utils import prune as tprune

from prunecli.errors import UserError
from prunecli.pruning.sparse import masks_from_zeros, prunable_modules

SCHEDULES = ("oneshot", "iterative", "layerwise")


@dataclass
class SparsePlan:
    sparsity: float
    schedule: str = "oneshot"
    step: float = 0.1
    """Iterative: cumulative sparsity grows by this much per step."""
    unit: str = "layer"
    """Layerwise: `layer` (each Conv/Linear) or `block` (module path cut at two components)."""
    include_bn: bool = False
    ignore: list[str] = field(default_factory=list)
    finetune_epochs: int = 10
    total_finetune_epochs: int | None = None


@dataclass
class Step:
    unit: str
    target: float
    modules: list[tuple[str, nn.Module]]


def iterative_targets(sparsity: float, step: float) -> list[float]:
    """0.1, 0.2, … up to and ending exactly at `sparsity`."""
    targets, k = [], 1
    while round(k * step, 9) < sparsity - 1e-9:
        targets.append(round(k * step, 9))
        k += 1
    return [*targets, sparsity]


def units(modules: list[tuple[str, nn.Module]], unit: str) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """Layerwise units in model order. A block is the first two name components
    (`features.denseblock1`); a unit holding only BatchNorm joins the unit before it, which
    gives the report's 9 DenseNet blocks (conv0+norm0, 4 dense blocks, 3 transitions, classifier)."""
    if unit == "layer":
        return [(name, [(name, m)]) for name, m in modules]
    out: list[tuple[str, list]] = []
    for name, m in modules:
        key = ".".join(name.split(".")[:2])
        if out and out[-1][0] == key:
            out[-1][1].append((name, m))
        else:
            out.append((key, [(name, m)]))
    merged: list[tuple[str, list]] = []
    for key, members in out:
        if merged and all(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in members):
            merged[-1][1].extend(members)
        else:
            merged.append((key, members))
    return merged


def plan_steps(model: nn.Module, plan: SparsePlan) -> list[Step]:
    if plan.schedule not in SCHEDULES:
        raise UserError(f"--schedule {plan.schedule!r}: use one of {', '.join(SCHEDULES)}")
    if plan.unit not in ("layer", "block"):
        raise UserError(f"--unit {plan.unit!r}: use layer or block")
    modules = prunable_modules(model, plan.include_bn, plan.ignore)
    if plan.schedule == "oneshot":
        return [Step("all", plan.sparsity, modules)]
    if plan.schedule == "iterative":
        return [Step("all", t, modules) for t in iterative_targets(plan.sparsity, plan.step)]
    return [Step(name, plan.sparsity, members) for name, members in units(modules, plan.unit)]


def epochs_per_step(plan: SparsePlan, steps: int) -> list[int]:
    """`finetune_epochs` each, or `total_finetune_epochs` split as evenly as possible (later steps get the rest)."""
    if plan.total_finetune_epochs is None:
        return [plan.finetune_epochs] * steps
    base, extra = divmod(plan.total_finetune_epochs, steps)
    return [base + (1 if i >= steps - extra else 0) for i in range(steps)]


def cut(modules: list[tuple[str, nn.Module]], target: float) -> float:
    """Zero the smallest-|w| weights of `modules` together until `target` of them are zero.

    Returns p', the fraction of the still-nonzero weights this cut removed. Weights already zero
    have the smallest magnitude, so L1 takes them first and the new cut falls on live weights.
    """
    total = sum(m.weight.numel() for _, m in modules)
    dead = sum(int((m.weight == 0).sum()) for _, m in modules)
    wanted = int(round(target * total))
    if wanted <= dead:
        return 0.0
    params = [(m, "weight") for _, m in modules]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=wanted)
    for m, _ in params:
        tprune.remove(m, "weight")
    return (wanted - dead) / max(1, total - dead)


def run_schedule(model: nn.Module, plan: SparsePlan, finetune: Callable[[int, dict], dict | None],
                 after_step: Callable[[int, dict, list[str]], str | None] | None = None, log=print) -> tuple[list[dict], list[str]]:
    """Prune `model` in place by `plan`; `finetune(epochs, masks)` trains between steps.

    Returns the step records (for the masks sidecar) and the names of the masked parameters.
    """
    from prunecli.pruning.sparse import sparsity_rows

    steps = plan_steps(model, plan)
    epochs = epochs_per_step(plan, len(steps))
    names = [f"{n}.weight" for n, _ in prunable_modules(model, plan.include_bn, plan.ignore)]
    records = []
    for i, (step, n_epochs) in enumerate(zip(steps, epochs)):
        amount = cut(step.modules, step.target)
        _, total = sparsity_rows(model, names)
        log(f"step {i + 1}/{len(steps)} ({step.unit}): target {step.target:.3f}, removed {amount:.3f} of the "
            f"live weights → sparsity {total:.4f}; fine-tuning {n_epochs} epoch(s)")
        metrics = finetune(n_epochs, masks_from_zeros(model, names)) if n_epochs else None
        record = {"step": i + 1, "unit": step.unit, "target": step.target, "amount_of_alive": amount,
                  "sparsity": sparsity_rows(model, names)[1], "finetune_epochs": n_epochs,
                  "val_top1": (metrics or {}).get("val_top1"), "snapshot": None}
        if after_step is not None:
            record["snapshot"] = after_step(i + 1, record, names)
        records.append(record)
    return records, names
