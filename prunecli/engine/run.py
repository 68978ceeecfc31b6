"""Library entry points behind `train`, `finetune` and `evaluate` (the CLI only parses options)."""

from __future__ import annotations

from typing import Any

from prunecli.console import err

# the data a checkpoint runs on lives with the data registry (prunecli/data/for_model.py); kept here by name
from prunecli.data.for_model import at_model_size, check_classes, data_for  # noqa: F401
from prunecli.engine.config import TrainConfig
from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import DataRef, Header, ModelRef
from prunecli.io.sidecars import sidecar_path


def resolve_loss(cfg: TrainConfig, model_name: str) -> TrainConfig:
    """`--loss auto`: SmoothL1 for the DEQ, 1−SSIM for the VarNets (MBDL §1.4)."""
    if cfg.loss != "auto":
        return cfg
    return cfg.model_copy(update={"loss": "smoothl1" if model_name.startswith("deq") else "ssim"})


def data_ref(dataset) -> DataRef:
    return DataRef(spec=dataset.spec, num_classes=dataset.num_classes, mean=list(dataset.mean), std=list(dataset.std))


def sparse_masks(model, header: Header) -> dict | None:
    """The unstructured pruning masks a checkpoint's zeros encode, so training keeps them zero."""
    if not header.sparse_params:
        return None
    from prunecli.pruning.sparse import masks_from_zeros

    masks = masks_from_zeros(model, header.sparse_params)
    zeros = sum(int((~m).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    err.print(f"keeping the {zeros:,} pruned weights ({zeros / max(1, total):.1%} of {len(masks)} sparse "
              "tensors) at zero")
    return masks


def _resolve_amp(cfg: TrainConfig, options: dict | None, device: str, task: str) -> tuple[TrainConfig, dict]:
    """`--amp auto` → the mode this device runs, so the lineage records what ran (bf16 or off)."""
    from prunecli.engine.amp import resolve_amp

    cfg = cfg.model_copy(update={"amp": resolve_amp(cfg.amp, device, task)})
    return cfg, {**(options or {}), **cfg.model_dump()}


def _task_defaults(cfg: TrainConfig, options: dict, task: str, model_name: str,
                   given: set[str] | None) -> tuple[TrainConfig, dict]:
    """Reconstruction models: Adam and a constant lr unless told otherwise (engine/defaults.py)."""
    from prunecli.engine.defaults import describe, for_task

    cfg, changed = for_task(cfg, task, model_name, given)
    if changed:
        err.print(f"reconstruction defaults ({model_name}, MBDL reference): {describe(changed)}; "
                  "give any of these options to override")
    return cfg, {**options, **changed}


def _saver(model, out: str, header: Header):
    def save(metrics: dict[str, Any]) -> None:
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        ckpt.save(model, out, header.model_copy(update={"metrics": numeric}))

    return save


def apply_drop(model, header: Header, cfg: TrainConfig) -> None:
    """--drop-path/--dropout on the model to train; the header (what reloads) is left as it is."""
    from prunecli.engine.augment import set_drop

    if set_drop(model, header.model.name, header.model.kwargs, cfg.drop_path, cfg.dropout):
        err.print(f"drop path {cfg.drop_path:g}, dropout {cfg.dropout:g} (training only; identity in eval)")


def train(model_name: str, data_spec: str, out: str, cfg: TrainConfig, device: str, *,
          init: str | None = None, resume: bool = False, stop_after: int | None = None,
          options: dict | None = None, given: set[str] | None = None) -> dict:
    """Train a registry model (or continue from `--init` weights) and write `out`.

    `given`: the optimisation options the user set (`engine/defaults.py` fills the others for
    reconstruction models); None: take `cfg` as it is."""
    from prunecli.data import build_data
    from prunecli.engine import dist
    from prunecli.engine.fit import fit, load_state
    from prunecli.models import build_model
    from prunecli.utils.runtime import seed_everything

    dist.check_batch(cfg.batch_size)
    device = dist.setup(device)
    dataset = build_data(data_spec)
    seed_everything(cfg.seed)
    cfg, options = _resolve_amp(cfg, options, device, dataset.task)
    parent_sha = None
    if init is not None:
        loaded = ckpt.load(init)
        check_classes(loaded.header, dataset)
        dataset = at_model_size(dataset, loaded.header.input_shape)
        model, header_base, parent_sha = loaded.model, loaded.header, loaded.sha256
    else:
        classes = dataset.num_classes if dataset.task == "classification" else None
        model, entry, kwargs = build_model(model_name, num_classes=classes)
        if entry.task != dataset.task:
            raise UserError(f"model {model_name!r} does {entry.task} but data {dataset.spec!r} is for {dataset.task}")
        dataset = at_model_size(dataset, entry.input_shape)
        header_base = ckpt.new_header(
            None, model=ModelRef(name=model_name, kwargs=kwargs), task=entry.task,
            input_shape=list(dataset.input_shape), num_classes=classes,
        )
    cfg, options = _task_defaults(cfg, options, header_base.task, header_base.model.name, given)
    state = None
    if resume:
        if out == "-":
            raise UserError("--resume needs a file output, not `-o -`")
        state = load_state(sidecar_path(out, "state.pt"))
        model = ckpt.load(out).model
    entry_ = ckpt.lineage_entry("train", {**(options or cfg.model_dump()), **dist.lineage(cfg.batch_size)},
                                parent_sha)
    header = header_base.model_copy(update={"data": data_ref(dataset), "lineage": [*header_base.lineage, entry_]})
    apply_drop(model, header, cfg)
    model.to(device)
    cfg = resolve_loss(cfg, header.model.name)
    err.print(f"training {header.model.name} on {dataset.spec} ({device}, {cfg.epochs} epochs)")
    on_epoch = None
    if cfg.optimizer == "proxsgd":
        from prunecli.engine.proxsgd import search_status

        on_epoch = search_status(header, cfg)
    metrics = fit(model, dataset, cfg, device, out, _saver(model, out, header), resume_state=state,
                  stop_after=stop_after, masks=sparse_masks(model, header), on_epoch=on_epoch)
    dist.finish()
    return metrics


def finetune(src: str, data_spec: str, out: str, cfg: TrainConfig, device: str, *,
             teacher: str | None = None, options: dict | None = None, given: set[str] | None = None) -> dict:
    """Fine-tune a (pruned) checkpoint; optional knowledge distillation from `teacher`
    (`given`: as in `train`)."""
    from prunecli.data import build_data
    from prunecli.engine import dist
    from prunecli.engine.fit import fit
    from prunecli.utils.runtime import seed_everything

    dist.check_batch(cfg.batch_size)
    device = dist.setup(device)
    dataset = build_data(data_spec)
    seed_everything(cfg.seed)
    cfg, options = _resolve_amp(cfg, options, device, dataset.task)
    loaded = ckpt.load(src)
    check_classes(loaded.header, dataset)
    dataset = at_model_size(dataset, loaded.header.input_shape)
    cfg, options = _task_defaults(cfg, options, loaded.header.task, loaded.header.model.name, given)
    if loaded.header.task == "reconstruction" and (cfg.strategy == "distill") != (teacher is not None):
        raise UserError("--strategy distill needs --teacher (the unpruned model), and only it takes one")
    if loaded.header.task != "reconstruction" and cfg.strategy != "supervised":
        raise UserError(f"--strategy {cfg.strategy} is for reconstruction models; use --teacher for distillation")
    teacher_model = None
    if teacher is not None:
        t = ckpt.load(teacher, device=device)
        check_classes(t.header, dataset)
        teacher_model = t.model.eval()
        for p in teacher_model.parameters():
            p.requires_grad_(False)
    entry_ = ckpt.lineage_entry("finetune", {**(options or cfg.model_dump()), **dist.lineage(cfg.batch_size)},
                                loaded.sha256)
    header = loaded.header.model_copy(update={"data": data_ref(dataset), "lineage": [*loaded.header.lineage, entry_]})
    model = loaded.model.to(device)
    apply_drop(model, header, cfg)
    cfg = resolve_loss(cfg, loaded.header.model.name)
    distilled = teacher_model is not None and cfg.distill == "hard" and hasattr(model, "set_distilled_training")
    if distilled:  # a DeiT with a distillation token: its dist head learns from the teacher
        model.set_distilled_training(True)
    try:
        metrics = fit(model, dataset, cfg, device, out, _saver(model, out, header), teacher=teacher_model,
                      masks=sparse_masks(model, header))
    finally:
        if distilled:
            model.set_distilled_training(False)
    dist.finish()
    return metrics


def model_preprocess(loaded, overrides: dict) -> dict | None:
    """timm models evaluate with their own data config (interpolation, crop, mean/std) resolved
    from the model (pruning does not change it), at the checkpoint's input size, `overrides` on top."""
    if loaded.entry.family != "timm":
        return None
    from timm.data import resolve_data_config

    cfg = dict(resolve_data_config({}, model=loaded.model))
    cfg["input_size"] = tuple(loaded.header.input_shape)  # the resolution the checkpoint works at
    if overrides.get("input_size"):
        cfg["input_size"] = (3, overrides["input_size"], overrides["input_size"])
    cfg.update({k: v for k, v in overrides.items() if v is not None and k != "input_size"})
    return cfg


def evaluate(src: str, data_spec: str, device: str, batch_size: int, split: str = "val", workers: int = 0,
             overrides: dict | None = None, amp: str = "off", channels_last: bool = False) -> dict:
    from prunecli.data import build_data
    from prunecli.engine import dist
    from prunecli.engine.loop import evaluate as eval_loop

    device = dist.setup(device)  # under torchrun each rank evaluates its slice, sums all-reduced
    dataset = build_data(data_spec)
    loaded = ckpt.load(src, device=device)
    check_classes(loaded.header, dataset)
    dataset = at_model_size(dataset, loaded.header.input_shape, model_preprocess(loaded, overrides or {}))
    loader = dist.shard(dataset.loader(split, batch_size, workers=workers), what=f"data {data_spec!r}")
    from prunecli.console import progress
    from prunecli.engine.amp import StepRunner, resolve_amp

    mode = resolve_amp(amp, device, loaded.header.task)
    kwargs = {}
    if loaded.header.task == "reconstruction":
        from prunecli.engine.recon import evaluate as eval_loop  # noqa: F811  PSNR/SSIM/NMSE
    else:
        kwargs["runner"] = StepRunner(mode, device, channels_last=channels_last)
        if channels_last:
            import torch

            loaded.model.to(memory_format=torch.channels_last)
    with progress() as bar:
        task = bar.add_task(f"evaluate {split}", total=len(loader), status="")
        result = eval_loop(loaded.model, loader, device, on_step=lambda: bar.advance(task), **kwargs)
    dist.finish()
    applied = dataset.preprocess if dataset.applies_preprocess else None
    used = {k: list(v) if isinstance(v, tuple) else v for k, v in (applied or {}).items()}
    return {"checkpoint": src, "model": loaded.header.model.name, "data": data_spec, "split": split, **result,
            "amp": mode, "preprocess": used or None, **evaluated_weights(loaded)}


def evaluated_weights(loaded) -> dict:
    """Which weights an evaluation measured (issue 17: `evaluate -o` sidecars, read by `report`):
    the file's sha256 (a sidecar of another file is stale), the kept epoch and the `--select`
    of the last train/finetune step that chose it, and that run's best / last epochs."""
    m = loaded.header.metrics
    trained = next((e.options for e in reversed(loaded.header.lineage) if e.command in ("train", "finetune")), {})
    epoch = {k: int(m[k]) for k in ("epoch", "best_epoch", "last_epoch") if isinstance(m.get(k), int | float)}
    return {"sha256": loaded.sha256, "select": trained.get("select"), **epoch}


def calibration_data(loaded, data_spec: str | None, images: int, *, seed: int, batch_size: int,
                     exact: bool = True):
    """A seeded random draw of `images` training images of `data_spec` for data-driven pruning,
    unaugmented, with the model's own evaluation preprocessing where the data family applies one
    (timm models on image folders, as `evaluate`); see prunecli/data/calibration.py."""
    if not data_spec:
        raise UserError("this method looks at data: give --data SPEC (training images for calibration)")
    from prunecli.data.calibration import draw

    dataset = data_for(loaded.header, data_spec, model_preprocess(loaded, {}))
    return draw(dataset, images, seed=seed, batch_size=batch_size, exact=exact)
