"""`prunecli prune` behind the CLI: load, (calibrate), prune, verify, save with sidecars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from prunecli.console import err
from prunecli.errors import UserError
from prunecli.io import atomic
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import CalibrationRecord, LayerMask, MasksSidecar, RemovedBlock
from prunecli.io.sidecars import write_sidecar
from prunecli.methods import get_method
from prunecli.models import build_model
from prunecli.profiling.counts import count, example_input, flops_sidecar
from prunecli.pruning.groups import prune_indices
from prunecli.pruning.structured import Outcome, PrunePlan, prune
from prunecli.pruning.verify import checked_bytes, forward_guard


def accumulate_gradients(model, calibration) -> None:
    """Sum loss gradients over the calibration batches (Taylor importance, block scores).

    As the reference (Isomorphic-Pruning's prune.py): the model in eval mode (BatchNorm uses
    and keeps its running statistics, dropout is off), gradients summed over all batches (no
    zero_grad between them), weights never updated. The batches are a seeded random draw of the
    training split (`calibration_data`), not its first batches.
    """
    model.eval()
    model.zero_grad(set_to_none=True)
    with forward_guard("calibration (gradients for the importance)"):
        for x, y in calibration.batches:
            _clear_eval_caches(model)
            torch.nn.functional.cross_entropy(model(x), y).backward()
    _clear_eval_caches(model)
    if all(p.grad is None or not p.grad.any() for p in model.parameters()):
        raise UserError("every gradient is zero after calibration (e.g. a classifier initialised at zero, as timm's "
                        "MLP-Mixer at random init, or a constant loss): gradient importance cannot rank anything; "
                        "calibrate a trained model, or use a magnitude importance (--method l1, --importance l1)")


def _clear_eval_caches(model) -> None:
    """Drop tensors some timm attentions cache in eval mode (LeViT, EfficientFormer, TinyViT:
    `attention_bias_cache`, the bias table gathered per device). Built with gradients, a cached
    tensor would be backpropagated through a second time on the next batch, and it would keep
    the unpruned table's shape after pruning."""
    for module in model.modules():
        cache = getattr(module, "attention_bias_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def calibrate(loaded, data: str | None, images: int, seed: int, batch_size: int, *, exact: bool):
    """The calibration draw for `prune`, logged with what it covers."""
    from prunecli.engine.run import calibration_data

    calibration = calibration_data(loaded, data, images, seed=seed, batch_size=batch_size, exact=exact)
    rec = calibration.record
    classes = "" if rec["classes"] is None else f", {rec['classes']} classes"
    err.print(f"calibration: {rec['images']} random training images of {rec['data']} (seed {rec['seed']}"
              f"{classes}), eval transform, model in eval mode")
    return calibration


def _decided(method, loaded, options: dict) -> tuple:
    """Methods that choose each layer's channels themselves (e.g. the similarity graph)."""
    model, shape = loaded.model, loaded.header.input_shape
    record = None
    if not method.decide_needs_data:
        source = "weights only"
    elif options.get("reuse"):
        source = f"reusing {options['reuse']}"
    else:
        source = f"{options['samples']} samples of {options['data']}"
        options["calibration"] = calibrate(loaded, options["data"], options["samples"], options.get("seed", 0),
                                           options["batch_size"], exact=True)
        record = {**options["calibration"].record, "mode": "eval"}
    err.print(f"pruning {loaded.header.model.name} with {method.name} (τ={options['threshold']}, {source})")
    probe = reference = None
    if method.check_output:
        probe = example_input(shape, batch=4)
        with torch.no_grad():
            reference = model.eval()(probe)
    before = count(model, shape)  # before deciding: a decision may already replace blocks (zero-groups)
    removed, details = method.decide(loaded, options)
    if method.decide_needs_data and options.get("reuse"):
        record = _reused_calibration(options["reuse"])
    with forward_guard("while pruning"):
        layers = prune_indices(model, shape, removed, details)
    total = sum(layer["channels_before"] for layer in layers) or 1
    ratio = sum(len(layer["removed"]) for layer in layers) / total
    outcome = Outcome(ratio, before, count(model, shape), layers, list(loaded.entry.protected))
    if probe is not None:
        with torch.no_grad():
            diff = (model.eval()(probe) - reference).abs().max().item()
        outcome.output_diff = {"max_output_diff": diff, "output_scale": reference.abs().max().item()}
        err.print(f"largest output change on a probe batch: {diff:.3g} (outputs up to {reference.abs().max():.3g})")
    return model, outcome, record


def _reused_calibration(path: str) -> dict | None:
    """The calibration record of a reused analysis report (None for reports written before it)."""
    import json

    return json.loads(Path(path).read_text()).get("calibration")


def _criterion(method, importance: str | None):
    """The method that scores channels: the method itself, or its `--importance` choice."""
    if not method.importance_option:
        return method
    inner = get_method(importance or "taylor", kind="structured")
    if inner.importance is None:
        raise UserError(f"--importance {inner.name}: use one of l1, l2, taylor, random")
    return inner


def nothing_to_prune(loaded) -> None:
    """A parameter-free model (the zero-filled MRI baseline) has no channel or weight to remove."""
    if next(loaded.model.parameters(), None) is None:
        raise UserError(f"{loaded.header.model.name} has no parameters: there is nothing to prune")


def run_prune(src: str, out: str, method_name: str, plan: PrunePlan, *, data: str | None, calib_batches: int,
              batch_size: int, options: dict) -> dict:
    method = get_method(method_name, kind="structured")
    loaded = ckpt.load(src)
    nothing_to_prune(loaded)
    model, header = loaded.model, loaded.header
    shape = header.input_shape
    calibration = None
    if method.decide is not None:
        pruned, outcome, calibration = _decided(method, loaded, {**options, "data": data, "batch_size": batch_size})
    else:
        if method.plan:
            plan = dataclasses.replace(plan, **method.plan)
        criterion = _criterion(method, options.get("importance"))
        if criterion.needs_gradients or plan.remove_blocks:
            # calib_batches × batch_size images, or the whole split when it is smaller (as the
            # reference's loop over a shorter loader)
            drawn = calibrate(loaded, data, calib_batches * batch_size, plan.seed, batch_size, exact=False)
            accumulate_gradients(model, drawn)
            calibration = {**drawn.record, "mode": "eval"}
        err.print(f"pruning {header.model.name} with {method.name} "
                  f"({'global' if plan.global_pruning else 'local'}, "
                  f"{_budget(plan)})")
        with torch.enable_grad(), forward_guard("while pruning"):
            pruned, outcome = prune(model, shape, criterion.importance, plan, loaded.entry.protected,
                                    on_trial=lambda r, m: err.print(f"  ratio {r:.4f} → {m:,} MACs"))
    pruned.zero_grad(set_to_none=True)
    fresh = _unpruned(header)
    entry = ckpt.lineage_entry("prune", {"method": method.name, **options}, loaded.sha256)
    new = header.model_copy(update={"structure": ckpt.structure_diff(pruned, fresh),
                                    "removed_modules": ckpt.removed_modules(pruned, fresh),
                                    "lineage": [*header.lineage, entry], "metrics": {}})
    # verified before anything is written (it runs, it reloads into the same model); the
    # verified bytes are the ones written. An unpruned build on the meta device is used up by
    # the reload (it is not needed after the diff); a CPU build is still counted below.
    skeleton = fresh if not header.structure and ckpt.any_meta(fresh) else None
    atomic.write_bytes(out, checked_bytes(pruned, new, shape, skeleton=skeleton))
    name = Path(out).name if out != "-" else "-"
    masks = MasksSidecar(checkpoint=name, parent_sha256=loaded.sha256, method=method.name,
                         options={**options, "resolved_ratio": outcome.ratio},
                         layers=[LayerMask.model_validate(r) for r in outcome.layers],
                         removed_blocks=[RemovedBlock.model_validate(b) for b in outcome.blocks],
                         calibration=CalibrationRecord.model_validate(calibration) if calibration else None)
    write_sidecar(out, "masks.json", masks)
    # The sidecar compares with the unpruned architecture: the input itself unless it was pruned before.
    unpruned = outcome.before if not header.structure else count(fresh, shape)
    flops = flops_sidecar(unpruned, outcome.after, shape, name)
    if outcome.latency:  # latency-aware pruning: measured before/after and the table it came from
        flops = flops.model_copy(update={"latency": {"prune": outcome.latency}})
    write_sidecar(out, "flops.json", flops)
    before, after = outcome.before, outcome.after
    return {"output": out, "method": method.name, "ratio": outcome.ratio, "macs_before": before.macs,
            "macs_after": after.macs, "macs_ratio": before.macs / max(1, after.macs),
            "params_before": before.params, "params_after": after.params, "pruned_layers": len(outcome.layers),
            **({"removed_blocks": len(outcome.blocks)} if outcome.blocks else {}), **outcome.output_diff,
            **({"latency": {k: outcome.latency[k] for k in ("batch", "device", "before_ms", "after_ms", "speedup",
                                                             "target", "target_ratio", "table")}}
               if outcome.latency else {})}


def _budget(plan) -> str:
    if plan.target_latency is not None:
        return f"target latency {plan.target_latency} at batch {plan.latency_batch} on {plan.device}"
    return "ratio " + str(plan.ratio) if plan.target_macs is None else "target " + plan.target_macs


def _unpruned(header):
    """The registry architecture the checkpoint started from, for its shapes and module names: built
    on the meta device (a ResNet-50's random initialisation alone took 0.4 s) unless the input was
    pruned before, when its MACs are counted from a real forward; the global RNG is not drawn from
    either way after pruning, so the outputs are the same."""
    if not header.structure:
        try:
            with torch.device("meta"):
                return build_model(header.model.name, **header.model.kwargs)[0]
        except Exception:  # noqa: BLE001 - a model that cannot be built on meta is built on the CPU
            pass
    return build_model(header.model.name, **header.model.kwargs)[0]


def run_unstructured(src: str, out: str, method_name: str, plan, *, data: str | None, cfg, device: str,
                     snapshots: str | None, options: dict, shared_optimizer: bool = False) -> dict:
    """Unstructured pruning by a schedule (`pruning.unstructured`), fine-tuning between steps.

    `shared_optimizer`: one optimizer, momentum buffers included, carries over from step to step
    (the MTP report's layerwise VGG/DenseNet scripts make one SGD before the loop over layers);
    otherwise each step's fine-tuning starts a new one (its one-shot/iterative `global_pruning_model`).
    """
    from prunecli.data.for_model import data_for
    from prunecli.engine import dist
    from prunecli.engine.fit import fit
    from prunecli.pruning.unstructured import epochs_per_step, plan_steps, run_schedule
    from prunecli.utils.runtime import seed_everything

    method = get_method(method_name)
    loaded = ckpt.load(src)
    nothing_to_prune(loaded)
    model, header = loaded.model, loaded.header
    needs_data = any(epochs_per_step(plan, len(plan_steps(model, plan))))
    if needs_data and not data:
        raise UserError("fine-tuning between pruning steps needs --data SPEC (or --finetune-epochs 0)")
    if snapshots and not Path(snapshots).is_dir():
        raise UserError(f"--snapshots folder does not exist: {snapshots}")
    dataset = data_for(header, data) if needs_data else None
    dist.check_batch(cfg.batch_size)
    device = dist.setup(device)  # torchrun: the fine-tuning is DDP; rank 0 writes (io/atomic.py)
    seed_everything(cfg.seed)
    if needs_data:  # --drop-path/--dropout for the fine-tuning; the header is unchanged
        from prunecli.engine.run import apply_drop

        apply_drop(model, header, cfg)
    model.to(device)
    dense = count(model, header.input_shape, device)
    lineage = [*header.lineage, ckpt.lineage_entry("prune", {"method": method.name, **options}, loaded.sha256)]

    shared = None
    if shared_optimizer:
        from prunecli.engine.optim import make_optimizer

        shared = make_optimizer(model, cfg)

    def finetune(epochs: int, masks: dict) -> dict:
        step_cfg = cfg.model_copy(update={"epochs": epochs})
        return fit(model, dataset, step_cfg, device, "-", lambda metrics: None, masks=masks, optimizer=shared)

    def write(path: str, names: list[str], steps: list[dict], metrics: dict) -> tuple[float, int, int]:
        new = header.model_copy(update={"sparse_params": sorted(set(header.sparse_params) | set(names)),
                                        "lineage": lineage, "metrics": metrics})
        atomic.write_bytes(path, checked_bytes(model, new, header.input_shape))
        return _sparse_sidecars(model, path, method.name, options, loaded.sha256, names, steps, dense,
                                header.input_shape)

    def snapshot(i: int, record: dict, names: list[str]) -> str | None:
        if not snapshots:
            return None
        path = str(Path(snapshots) / f"step{i:02d}-{record['unit']}-s{record['sparsity']:.3f}.safetensors")
        write(path, names, [], _numeric(record))
        return path

    steps, names = run_schedule(model, plan, finetune, snapshot, log=err.print)
    last = steps[-1]
    sparsity, nonzero, sparse_macs = write(out, names, steps, _numeric(last))
    return {"output": out, "method": method.name, "schedule": plan.schedule, "sparsity": sparsity,
            "steps": len(steps), "finetune_epochs": sum(s["finetune_epochs"] for s in steps),
            "val_top1": last["val_top1"], "params": dense.params, "nonzero_params": nonzero, "macs": dense.macs,
            "sparse_macs": sparse_macs}


def _numeric(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if k in ("sparsity", "val_top1") and v is not None}


def _sparse_sidecars(model, out, method, options, parent, names, steps, dense, shape) -> tuple[float, int, int]:
    """`.masks.json` with per-tensor sparsity and the steps; `.flops.json` with sparse counts.

    Returns (sparsity, nonzero params, sparse MACs). Zeros leave the architecture as it was, so
    the dense count of the input serves as `after` too.
    """
    from prunecli.io.schema import Counts, LayerSparsity, SparseStep
    from prunecli.pruning.sparse import sparse_counts, sparsity_rows

    rows, total = sparsity_rows(model, names)
    name = Path(out).name if out != "-" else "-"
    masks = MasksSidecar(checkpoint=name, parent_sha256=parent, method=method, options=options, layers=[],
                         sparsity=total, sparse_layers=[LayerSparsity.model_validate(r) for r in rows],
                         steps=[SparseStep.model_validate(s) for s in steps])
    write_sidecar(out, "masks.json", masks)
    nonzero, sparse_macs = sparse_counts(model, dense)
    flops = flops_sidecar(dense, dense, shape, name)
    flops = flops.model_copy(update={"sparse_after": Counts(macs=sparse_macs, params=nonzero)})
    write_sidecar(out, "flops.json", flops)
    return total, nonzero, sparse_macs
