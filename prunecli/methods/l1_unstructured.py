"""Unstructured L1 magnitude pruning with one-shot, iterative and layerwise schedules.

Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015 (magnitude pruning with retraining); the three schedules and their comparison
(with CKA) from Akhtar & Bathula, MTP report, IIT Ropar 2023 — our spec is
`shared/research/seeds-similarity-mtp-isomorphic.md` §2. Weights become exact zeros; the
network keeps its shape (dense kernels do not get faster). The schedules live in
`prunecli.pruning.unstructured`.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import FINETUNE, SCHEDULE, Param, in_open_unit

SCHEDULES = ("oneshot", "iterative", "layerwise")
UNITS = ("layer", "block")
LR_SCHEDULES = ("constant", "cosine", "step")

PARAMS = (
    Param("sparsity", float | None, None, "fraction of the prunable weights to zero", SCHEDULE),
    Param("schedule", str, "oneshot", "oneshot, iterative (cumulative sparsity += --step, fine-tune each) or "
          "layerwise (one layer/block at a time)", SCHEDULE, choices=SCHEDULES),
    Param("step", float, 0.1, "iterative: cumulative sparsity added per step", SCHEDULE, check=in_open_unit),
    Param("unit", str, "layer", "layerwise: layer (each Conv/Linear) or block (first two name parts, e.g. "
          "features.denseblock1)", SCHEDULE, choices=UNITS),
    Param("include_bn", bool, False, "also zero BatchNorm weights γ (the MTP report's DenseNet)", SCHEDULE,
          flags=("--include-bn/--no-include-bn",)),
    Param("snapshots", str | None, None, "folder: write a checkpoint with sidecars after every step", SCHEDULE),
    Param("finetune_epochs", int, 10, "fine-tuning epochs after each step", FINETUNE, min=0),
    Param("total_finetune_epochs", int | None, None, "one epoch budget spread over all steps (equal-budget "
          "comparisons); replaces --finetune-epochs", FINETUNE, min=0),
    Param("lr", float, 1e-3, "fine-tuning learning rate between steps", FINETUNE),
    Param("optimizer", None, "sgd", panel=FINETUNE, shared="Optimizer"),
    Param("momentum", None, 0.9, panel=FINETUNE, shared="Momentum"),
    Param("weight_decay", None, 5e-4, panel=FINETUNE, shared="WeightDecay"),
    Param("lr_schedule", str, "constant", "fine-tuning LR schedule within each step: constant, cosine or step",
          FINETUNE, choices=LR_SCHEDULES),
    Param("nesterov", None, True, panel=FINETUNE, shared="Nesterov"),
    Param("shared_optimizer", bool | None, None, "one SGD (momentum buffers and all) across the steps' "
          "fine-tuning, or a new one per step (default: as the MTP report's code: shared for layerwise, fresh "
          "for oneshot/iterative)", FINETUNE, flags=("--shared-optimizer/--fresh-optimizer",), show_default=False),
    Param("sync_bn", None, True, panel=FINETUNE, shared="SyncBn"),
    # augmentation and regularisation from timm (issue 13)
    Param("randaugment", None, None, panel=FINETUNE, shared="RandAugment"),
    Param("reprob", None, 0.0, panel=FINETUNE, shared="Reprob"),
    Param("mixup", None, 0.0, panel=FINETUNE, shared="Mixup"),
    Param("cutmix", None, 0.0, panel=FINETUNE, shared="Cutmix"),
    Param("drop_path", None, 0.0, panel=FINETUNE, shared="DropPath"),
    Param("dropout", None, 0.0, panel=FINETUNE, shared="Dropout"),
    # speed (engine/amp.py); fp32 unless asked: the MTP report's numbers stay reproducible
    Param("amp", None, "off", panel=FINETUNE, shared="Amp"),
    Param("channels_last", None, False, panel=FINETUNE, shared="ChannelsLast"),
    Param("grad_accum", None, 1, panel=FINETUNE, shared="GradAccum"),
)

register_method(Method(
    "l1-unstructured", "unstructured", "Han et al. NeurIPS 2015; Akhtar & Bathula 2023 (MTP report)",
    "global L1 weight pruning to --sparsity: --schedule oneshot|iterative|layerwise, fine-tuning between steps",
    params=PARAMS,
))
