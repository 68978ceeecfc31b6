"""Resolved options of a training or fine-tuning run (recorded in the checkpoint lineage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(30, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    optimizer: Literal["sgd", "adam", "adamw", "proxsgd"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = Field(30, ge=1, description="epochs between ×gamma decays (step schedule)")
    milestones: list[int] = Field(default_factory=list, description="epochs of the ×gamma decays (step schedule); "
                                  "replaces step_size when given")
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    workers: int = Field(0, ge=0)
    # knowledge distillation (finetune --teacher)
    kd_alpha: float = Field(0.5, ge=0, le=1, description="weight of the KD term; CE gets 1-alpha")
    kd_temperature: float = Field(4.0, gt=0)
    distill: Literal["soft", "hard"] = "soft"
    kd_label_smoothing: bool = Field(False, description="hard distillation: label smoothing also on CE(dist, teacher "
                                     "argmax), as the Isomorphic-Pruning reference's train.py; off: DeiT's "
                                     "DistillationLoss, the label term only")
    # group sparsity (GSparsity search: --optimizer proxsgd)
    mu: float = Field(0.0, ge=0, description="group-sparsity strength μ (proxsgd)")
    normalization: Literal["div", "mul", "none"] = "div"
    prunable: Literal["conv12", "all"] = "conv12"
    mu_scale: dict[str, float] = Field(default_factory=dict, description="layer glob → factor on μ")
    prox_snap: bool = Field(False, description="set a filter whose prox output is 0 to exactly 0 (an algorithm "
                            "change; the reference takes the convex step)")
    # reconstruction (MRI) fine-tuning
    strategy: Literal["supervised", "distill", "selfsup", "supervised+distill", "testdc+distill"] = "supervised"
    loss: Literal["auto", "smoothl1", "ssim", "l1", "mse"] = "auto"
    select: Literal["last", "best", "val_dc"] = Field("last", description="the epoch the checkpoint keeps: last, "
                                                      "best (highest val top-1) or val_dc (reconstruction)")
    bn_recalibrate: int = Field(0, ge=0, description="after each epoch, recompute BN statistics on N train batches")
    nesterov: bool = Field(True, description="SGD: Nesterov momentum (False: plain momentum, torch's default and "
                           "the MTP report's)")
    weight_decay_mode: Literal["all", "keras"] = Field(
        "all", description="all: weight_decay on every parameter; keras: Keras l2(λ), a gradient 2λw on the "
        "regularised kernels only")
    # augmentation and regularisation from timm (issue 13: the DeiT/ConvNeXt stack; engine/augment.py)
    randaugment: str | None = Field(None, description="timm RandAugment spec (rand-m9-mstd0.5-inc1); "
                                    "file-based data (imagefolder, ham10000)")
    reprob: float = Field(0.0, ge=0, le=1, description="random erasing probability (timm, file-based data)")
    mixup: float = Field(0.0, ge=0, description="timm Mixup alpha (0: off)")
    cutmix: float = Field(0.0, ge=0, description="timm CutMix alpha (0: off)")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth rate (timm drop_path_rate)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier (timm drop_rate)")
    # multi-process training (torchrun / DDP) and repeated augmentation — prunecli/engine/dist.py
    sync_bn: bool = Field(True, description="under torchrun on CUDA, BatchNorm statistics over the global batch")
    repeated_aug: bool = Field(False, description="timm's RepeatAugSampler: 3 differently augmented copies of "
                               "each sample, dealt to different processes (changes the sample stream)")
    # speed and averaging (--amp, --channels-last, --compile, --grad-accum, --ema; engine/amp.py)
    amp: Literal["auto", "bf16", "fp16", "off"] = Field("off", description="autocast dtype; the CLI's auto is "
                                                        "resolved (bf16 on CUDA that supports it, else off)")
    channels_last: bool = False
    compile: bool = False
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (batch_size is the total)")
    ema: float = Field(0.0, ge=0, lt=1, description="ModelEmaV3 decay; 0 = off. The EMA weights are validated "
                       "and saved")
    # MBDL protocol (issue 15: finetune --adapt-on, train/finetune --tol; engine/fit.py, engine/run.py)
    adapt_on: Literal["train", "test"] = Field("train", description="the split whose measurements are trained on: "
                                               "test = test-time adaptation (ground-truth-free strategies only)")
    tol: float | None = Field(None, gt=0, description="fixed-point solver tolerance (DEQ) while training, also "
                              "saved as the model's tol; None: the model's own")

    @field_validator("randaugment")
    @classmethod
    def _randaugment(cls, spec: str | None) -> str | None:
        if spec is None:
            return None
        from prunecli.engine.augment import check_randaugment  # imports torch: only for a given spec

        return check_randaugment(spec)


def make_config(**kwargs) -> TrainConfig:
    """Validate options; a bad value becomes one line naming the flag."""
    from pydantic import ValidationError

    from prunecli.errors import UserError

    try:
        return TrainConfig(**kwargs)
    except ValidationError as error:
        first = error.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        raise UserError(f"--{str(first['loc'][0]).replace('_', '-')}: {msg}") from None


def parse_milestones(text: str | None) -> list[int]:
    """`80,120` → [80, 120] (strictly increasing positive epochs)."""
    from prunecli.errors import UserError

    if not text:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--milestones {text!r}: expected epochs like 80,120") from None
    if not values or any(v < 1 for v in values) or values != sorted(set(values)):
        raise UserError(f"--milestones {text!r}: expected increasing positive epochs like 80,120")
    return values


def parse_scales(items: list[str]) -> dict[str, float]:
    """`['layer2.*=2', 'layer3.*=2']` → {'layer2.*': 2.0, 'layer3.*': 2.0} (--mu-scale)."""
    from prunecli.errors import UserError

    out = {}
    for item in items:
        glob, eq, value = item.rpartition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not eq or not glob or factor < 0:
            raise UserError(f"--mu-scale {item!r}: expected GLOB=FACTOR, e.g. 'layer2.*=2'")
        out[glob] = factor
    return out
