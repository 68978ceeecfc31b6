"""Optimisation defaults that follow the task: what `train`/`finetune` use when not told.

Classification keeps the CLI's defaults (SGD with Nesterov momentum, cosine schedule). A
reconstruction model (MRI: DEQ, VarNet, E2E-VarNet) instead gets the optimiser of the MBDL
reference code (Hu et al., "Model-Based Deep Learning Pruning and Fine-Tuning", arXiv 2311.02003;
its `recon_lr`/weight decay per model in ../shared/research/seeds-mbdl-gsparsity.md):

| model | optimiser | lr | weight decay | schedule |
|---|---|---|---|---|
| DEQ (`deq*`) | Adam | 1e-4 (1e-5 for `--strategy selfsup`) | 0 (1e-8 for selfsup) | constant |
| VarNet, E2E-VarNet | Adam | 1e-3 | 1e-8 | constant |

SGD at lr 0.1–0.01 with a 5e-4 decay, the classification defaults, makes these networks diverge
or stall within an epoch. Only options the user did not give are replaced (an explicit
`--optimizer sgd` stays SGD), and the resolved values are said once on stderr and recorded in
the lineage. The reference decays the self-supervised VarNets' lr ×0.1 at epoch 30; that schedule
is not a default here (give `--schedule step --milestones 30`).
"""

from __future__ import annotations

from prunecli.engine.config import TrainConfig

TUNED = ("optimizer", "lr", "weight_decay", "schedule")
"""The options a task default may fill; anything else keeps the CLI's default."""


def reconstruction(model_name: str, strategy: str) -> dict:
    """The MBDL reference's optimiser settings for this model and fine-tuning strategy."""
    if model_name.startswith("deq"):
        selfsup = strategy == "selfsup"
        return {"optimizer": "adam", "lr": 1e-5 if selfsup else 1e-4, "weight_decay": 1e-8 if selfsup else 0.0,
                "schedule": "constant"}
    return {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-8, "schedule": "constant"}


def for_task(cfg: TrainConfig, task: str, model_name: str, given: set[str] | None) -> tuple[TrainConfig, dict]:
    """(cfg with the task's defaults in place of the options not `given`, what changed).

    `given=None` means "everything was given" (library callers that build a TrainConfig
    themselves get exactly what they asked for)."""
    if task != "reconstruction" or given is None:
        return cfg, {}
    wanted = reconstruction(model_name, cfg.strategy)
    changed = {k: v for k, v in wanted.items() if k not in given and getattr(cfg, k) != v}
    return (cfg.model_copy(update=changed) if changed else cfg), changed


def describe(changed: dict) -> str:
    """`--optimizer adam --lr 0.0001 ...`: the flags a user would type for the same run."""
    flags = {"weight_decay": "--wd"}
    return " ".join(f"{flags.get(k, '--' + k.replace('_', '-'))} {v:g}" if isinstance(v, float)
                    else f"{flags.get(k, '--' + k.replace('_', '-'))} {v}" for k, v in changed.items())
