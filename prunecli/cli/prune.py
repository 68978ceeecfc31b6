"""`prunecli prune`: structured pruning into a physically smaller checkpoint, or unstructured zeros.

The options come from the methods: each method file declares the params it takes
(`prunecli.methods.params`), `_methods` turns them into Typer options grouped in help panels,
and an option given to a method that does not take it is one `error:` line.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from prunecli.cli import _options as O
from prunecli.cli._methods import in_panel, method_parameters, refuse_foreign
from prunecli.methods.params import DATA


def _method_names() -> list[str]:
    from prunecli.methods import list_methods

    return [m.name for m in list_methods() if m.kind in ("structured", "unstructured")]


def _not_a_prune_method(name: str) -> None:
    from prunecli.methods import get_method

    get_method(name, kind="structured")  # unknown (did you mean ...), or an analysis: use `analyze`


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


COMMON = [  # every method takes these; the method's own come from its file
    _param("ctx", typer.Context, inspect.Parameter.empty),
    _param("checkpoint", O.Ckpt, inspect.Parameter.empty),
    _param("method", Annotated[str, typer.Option("--method", help="the pruning method (`prunecli ls methods`); "
                                                 "each takes the options of its panels below",
                                                 **O.choice("--method", *_method_names(),
                                                            on_miss=_not_a_prune_method))], "l1"),
    _param("output", O.Out, ""),
    _param("ignore", Annotated[list[str] | None, typer.Option(help="layer name or glob to leave unpruned "
                                                              "(repeatable); the classifier is always kept")], None),
    _param("json", O.Json, False),
]
COMMON_DATA = [
    _param("data", Annotated[str | None, typer.Option("--data", "--calib-data", rich_help_panel=DATA, help=(
        "data for methods that look at it: calibration batches (taylor), feature maps (similarity), "
        "fine-tuning (l1-unstructured)"))], None),
    _param("batch_size", in_panel(O.BatchSize, DATA), 64),
    _param("device", in_panel(O.Device, DATA), "auto"),
    _param("seed", in_panel(O.Seed, DATA), 0),
    _param("skip_bad_images", in_panel(O.SkipBadImages, DATA), False),
]


def prune(ctx: typer.Context, **values: Any) -> None:
    """Remove channels (filters) with Torch-Pruning's dependency graph, so residual and
    concat couplings stay consistent and the model is really smaller and faster.

    Writes the pruned checkpoint plus `<stem>.masks.json` (kept/removed channels per layer)
    and `<stem>.flops.json` (MACs and params before/after, per layer).

    Examples:

      prunecli prune base.safetensors --method l1 --target-macs 0.5x -o half.safetensors

      prunecli prune r56.safetensors --method taylor --data cifar10:DIR --ratio 0.4 --global -o p.safetensors

      prunecli prune deit.safetensors --method isomorphic --importance taylor --target-macs 4.2G --calib-data imagefolder:DIR --calib-batches 50 -o deit_4.2G.safetensors

      prunecli prune convnext_base.safetensors --method isomorphic --target-macs 4.2G --remove-blocks 18 --blocks 'stages.2.blocks.*' --calib-data imagefolder:DIR -o convnext_4.2G.safetensors

      prunecli prune base.safetensors --method similarity --threshold 0.8 --samples 50 --data cifar10:DIR -o p.safetensors

      prunecli prune vgg.safetensors --method l1-unstructured --sparsity 0.8 --schedule iterative --data cifar100:DIR --finetune-epochs 10 --snapshots steps/ -o p.safetensors

      prunecli prune r56.safetensors --method halp --importance taylor --data cifar10:DIR --target-latency 0.5x --latency-batch 64 -o r56_halp.safetensors

      prunecli prune r56.safetensors --method l1 --target-macs 0.5x --round-to auto -o r56_auto.safetensors

      prunecli prune search.safetensors --method zero-groups -o compact.safetensors   # --threshold 1e-6 --fold reference

      prunecli prune search.safetensors --method zero-groups --fold exact-1x1 -o compact.safetensors

      prunecli prune - --method l2 --ratio 0.3 -o - < a.safetensors | prunecli evaluate - --data digits
    """
    from prunecli.data.images import set_skip_bad_images
    from prunecli.errors import UserError
    from prunecli.io.atomic import check_output
    from prunecli.methods import get_method

    v = values
    if not v["output"]:
        raise UserError("missing -o/--output (a .safetensors path, or - for stdout)")
    check_output(v["output"], v["checkpoint"], v.get("reuse"))
    set_skip_bad_images(v["skip_bad_images"])
    chosen = get_method(v["method"])
    if chosen.decide is not None and (v.get("ratio") is not None or v.get("target_macs") is not None):
        raise UserError(f"--method {chosen.name} sets no ratio: τ decides (use --threshold, not --ratio/--target-macs)")
    refuse_foreign(ctx, chosen, v)
    if chosen.kind == "unstructured":  # fine-tunes: runs on every torchrun rank (DDP)
        return _unstructured(chosen.name, v)
    from prunecli.engine import dist

    if not dist.is_main():  # one-shot: rank 0 prunes, the other torchrun ranks have nothing to do
        return
    _structured(chosen, v)


prune.__signature__ = inspect.Signature([*COMMON[:4], *method_parameters(), *COMMON[4:], *COMMON_DATA])


def _structured(chosen, v: dict) -> None:
    """Channel pruning: a ratio or MAC budget ranked by an importance, or a method that decides."""
    from prunecli.cli._output import print_result, table
    from prunecli.errors import UserError

    method, output, checkpoint = chosen.name, v["output"], v["checkpoint"]
    threshold, fold = _zero_groups_options(method, v.get("threshold"), v.get("fold"))
    ratio, target_macs, data, reuse = v.get("ratio"), v.get("target_macs"), v["data"], v.get("reuse")
    target_latency = v.get("target_latency")
    if chosen.decide is not None:
        _check_decided(method, threshold, data or reuse or not chosen.decide_needs_data)
    else:
        _check_budget(method, ratio, target_macs, target_latency)
    if v.get("remove_blocks") and not v.get("blocks"):
        raise UserError("--remove-blocks needs --blocks GLOB naming the removable blocks, e.g. 'stages.2.blocks.*'")
    from prunecli.utils.runtime import heavy_imports

    with heavy_imports():
        from prunecli.pruning.run import run_prune
        from prunecli.pruning.structured import PrunePlan

    ignore = v["ignore"] or []
    round_to = v["round_to"] if v["round_to"] in (None, "auto") else int(v["round_to"])
    plan = PrunePlan(ratio=ratio, target_macs=target_macs, global_pruning=v["global_pruning"], ignore=ignore,
                     round_to=None if round_to == "auto" else round_to, max_ratio=v["max_ratio"], seed=v["seed"],
                     head_ratio=v["head_ratio"], head_dim_ratio=v["head_dim_ratio"],
                     remove_blocks=v["remove_blocks"], blocks=v["blocks"], **_latency_plan(v, checkpoint))
    options = {"ratio": ratio, "target_macs": target_macs, "global": v["global_pruning"], "ignore": ignore,
               "round_to": round_to, "max_ratio": v["max_ratio"], "data": data,
               "calib_batches": v["calib_batches"], "seed": v["seed"], "threshold": threshold,
               "samples": v["samples"], "reuse": reuse, "importance": v["importance"],
               "head_ratio": v["head_ratio"], "head_dim_ratio": v["head_dim_ratio"],
               "remove_blocks": v["remove_blocks"], "blocks": v["blocks"], "selection": v["selection"]}
    if fold is not None:
        options["fold"] = fold
    if plan.latency_aware:
        options |= {"target_latency": target_latency, "latency_batch": plan.latency_batch,
                    "round_window": plan.round_window, "latency_device": plan.device}
    from prunecli.pruning.deadline import time_limit

    try:
        with time_limit(v["timeout"]):
            result = run_prune(checkpoint, output, method, plan, data=data, calib_batches=v["calib_batches"],
                               batch_size=v["batch_size"], options=options)
    except UserError as error:  # a refusal: point at the pre-flight check that explains the model
        if error.hint is None and "--ignore" in str(error) and checkpoint != "-":
            error.hint = f"`prunecli doctor {checkpoint}` lists its groups, protected layers and refusals in seconds"
        raise
    if output != "-":
        print_result(result, v["json"], lambda: table(f"pruned → {output}", ["", "value"],
                                                      [[k, x] for k, x in result.items()]))


# latency-aware pruning (issue 16): the budget options and the plan's latency fields
def _check_budget(method: str, ratio, target_macs, target_latency) -> None:
    """Exactly one budget; HALP's is a latency."""
    from prunecli.errors import UserError

    if method == "halp":
        if target_latency is None or ratio is not None or target_macs is not None:
            raise UserError("--method halp needs --target-latency (0.5x or 12ms) and takes no --ratio/--target-macs")
    elif sum(x is not None for x in (ratio, target_macs, target_latency)) != 1:
        raise UserError("give exactly one of --ratio, --target-macs or --target-latency")


def _latency_plan(v: dict, checkpoint: str) -> dict:
    """PrunePlan's latency fields: the device the latency is measured on, the table cached beside CHECKPOINT."""
    aware = v.get("target_latency") is not None or v.get("round_to") == "auto" or v["method"] == "halp"
    if not aware:
        return {}
    from prunecli.utils.runtime import resolve_device

    return {"target_latency": v.get("target_latency"), "latency_batch": v.get("latency_batch") or 64,
            "round_auto": v.get("round_to") == "auto", "round_window": v.get("round_window") or 8,
            "device": resolve_device(v["device"]), "table_source": None if checkpoint == "-" else checkpoint}


def _check_decided(method: str, threshold, has_input) -> None:
    """Methods that pick channels themselves take --threshold (and --data or --reuse if they look at data)."""
    from prunecli.errors import UserError

    if threshold is None or not 0 < threshold < 1:
        raise UserError(f"--method {method} needs --threshold in (0, 1), got {threshold}")
    if not has_input:
        raise UserError(f"--method {method} needs --data SPEC (feature maps) or --reuse REPORT")


def _zero_groups_options(method: str, threshold, fold) -> tuple:
    """zero-groups defaults: the paper's threshold 1e-6 and its compression (`--fold reference`);
    similarity keeps --threshold required."""
    if method != "zero-groups":
        return threshold, fold
    return (1e-6 if threshold is None else threshold), (fold or "reference")


_CONFIG = ("batch_size", "lr", "optimizer", "momentum", "weight_decay", "seed", "nesterov", "sync_bn",
           "randaugment", "reprob", "mixup", "cutmix", "drop_path", "dropout", "amp", "channels_last", "grad_accum")
"""The options that become the fine-tuning's TrainConfig fields of the same name (--lr-schedule: `schedule`)."""


def _unstructured(method: str, v: dict) -> None:
    """Unstructured pruning: weights become zeros by a schedule, fine-tuned between steps."""
    from prunecli.cli._output import print_result, table
    from prunecli.engine.config import make_config
    from prunecli.errors import UserError

    sparsity, schedule, output, ignore = v["sparsity"], v["schedule"], v["output"], v["ignore"] or []
    if sparsity is None or not 0 < sparsity < 1:
        raise UserError(f"--method {method} needs --sparsity in (0, 1), got {sparsity}")
    from prunecli.utils.runtime import heavy_imports

    with heavy_imports():
        from prunecli.pruning.run import run_unstructured
        from prunecli.pruning.unstructured import SparsePlan

    plan = SparsePlan(sparsity=sparsity, schedule=schedule, step=v["step"], unit=v["unit"],
                      include_bn=v["include_bn"], ignore=ignore, finetune_epochs=v["finetune_epochs"],
                      total_finetune_epochs=v["total_finetune_epochs"])
    from prunecli.engine.amp import check_accum, resolve_amp
    from prunecli.utils.runtime import resolve_device

    cfg = make_config(epochs=0, schedule=v["lr_schedule"], **{k: v[k] for k in _CONFIG})
    cfg = cfg.model_copy(update={"amp": resolve_amp(cfg.amp, resolve_device(v["device"]))})
    check_accum(cfg.batch_size, cfg.grad_accum)
    shared = schedule == "layerwise" if v["shared_optimizer"] is None else v["shared_optimizer"]  # the report's code
    options = {"sparsity": sparsity, "schedule": schedule, "step": v["step"], "unit": v["unit"],
               "include_bn": v["include_bn"], "finetune_epochs": v["finetune_epochs"],
               "total_finetune_epochs": v["total_finetune_epochs"], "ignore": ignore, "data": v["data"],
               "seed": v["seed"], **cfg.model_dump(exclude={"epochs"}), "shared_optimizer": shared}
    result = run_unstructured(v["checkpoint"], output, method, plan, data=v["data"], cfg=cfg, device=v["device"],
                              snapshots=v["snapshots"], options=options, shared_optimizer=shared)
    if output != "-":
        print_result(result, v["json"], lambda: table(f"pruned → {output}", ["", "value"],
                                                      [[k, x] for k, x in result.items()]))
