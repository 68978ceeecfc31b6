"""Options shared by several commands, typed once (Annotated, so Typer stays replaceable)."""

from __future__ import annotations

from typing import Annotated

import typer


# closed sets (issue 14): real choices, so `--help` lists them and shell completion offers them
class Choice:
    """A closed set of values for one option: Typer's `parser` (a value outside it is our one
    `error:` line, exit 2, not a usage box), `autocompletion` (the shell offers the values) and
    `metavar` (`--help` lists them). `on_miss(value)` may raise a more helpful UserError first
    (an unknown method name gets the registry's "did you mean" and the kind it belongs to)."""

    def __init__(self, flag: str, values, on_miss=None):
        self.flag, self.values, self.on_miss = flag, tuple(values), on_miss

    def __call__(self, value):
        if value is None or value in self.values:
            return value
        if self.on_miss is not None:
            self.on_miss(value)
        from prunecli.errors import UserError

        *rest, last = self.values
        listed = f"{', '.join(rest)} or {last}" if rest else last
        raise UserError(f"{self.flag} must be {listed}, got {value!r}")

    def complete(self, incomplete: str) -> list[str]:
        return [v for v in self.values if v.startswith(incomplete)]

    def option(self) -> dict:
        """The typer.Option keyword arguments."""
        return {"parser": self, "autocompletion": self.complete, "metavar": "[" + "|".join(self.values) + "]"}


def choice(flag: str, *values: str, on_miss=None) -> dict:
    """`typer.Option(..., **choice("--amp", "off", "auto", "bf16", "fp16"))`."""
    return Choice(flag, values, on_miss).option()


# help panels of train / finetune (and of evaluate, analyze, profile where they share an option)
OPTIM = "Optimisation"
SCHEDULE = "Schedule and checkpoint selection"
AUGMENT = "Augmentation and regularisation"
SPEED = "Speed and averaging"
DIST = "Distributed (torchrun)"
DATA = "Data and device"
SPARSITY = "Group sparsity (GSparsity search)"
DISTILL = "Distillation and reconstruction strategy"


Ckpt = Annotated[str, typer.Argument(help="input checkpoint (.safetensors); `-` reads stdin", show_default=False)]
Out = Annotated[str, typer.Option("-o", "--output", help="output checkpoint; `-` writes stdout", show_default=False)]
Data = Annotated[str, typer.Option("--data", help="data spec: digits, synthetic[:k=v,..], cifar10:DIR, cifar100:DIR (these three take ?aug=crop|shift|none&norm=dataset|half), imagefolder:DIR[?size=N], ham10000:DIR[?size=N] (`prunecli ls data`)", rich_help_panel=DATA)]
Json = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N", rich_help_panel=DATA)]
Seed = Annotated[int, typer.Option("--seed", help="random seed (data order, augmentation, init)", rich_help_panel=DATA)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="batch size", rich_help_panel=DATA)]
Workers = Annotated[int, typer.Option("--workers", min=0, help="data-loading worker processes", rich_help_panel=DATA)]
Epochs = Annotated[int, typer.Option("--epochs", min=0, help="training epochs", rich_help_panel=OPTIM)]
SkipBadImages = Annotated[bool, typer.Option("--skip-bad-images", help="leave out image files that cannot be decoded (imagefolder, ham10000) and say how many, instead of stopping at the first", rich_help_panel=DATA)]
Lr = Annotated[float, typer.Option("--lr", min=0.0, help="peak learning rate (reconstruction models, unless given: the MBDL reference's, 1e-4 DEQ / 1e-3 VarNets)", rich_help_panel=OPTIM)]

# the optimisation options `train` and `finetune` share (their defaults differ, so each command sets them)
Optimizer = Annotated[str, typer.Option(help="sgd (Nesterov momentum; --no-nesterov: plain), adam (coupled L2), adamw (decoupled decay) or proxsgd (GSparsity search: Adam-like scale, group soft-threshold, --momentum is ρ, no weight decay). Reconstruction models default to adam, as the MBDL reference, unless given", rich_help_panel=OPTIM, **choice("--optimizer", "sgd", "adam", "adamw", "proxsgd"))]
Momentum = Annotated[float, typer.Option(help="SGD momentum (Nesterov unless --no-nesterov)", rich_help_panel=OPTIM)]
WeightDecay = Annotated[float, typer.Option("--weight-decay", "--wd", help="weight decay (reconstruction models, unless given: 0 DEQ / 1e-8 VarNets and self-supervised DEQ)", rich_help_panel=OPTIM)]
Schedule = Annotated[str, typer.Option(help="cosine, step or constant (reconstruction models default to constant, unless given)", rich_help_panel=SCHEDULE, **choice("--schedule", "cosine", "step", "constant"))]
StepSize = Annotated[int, typer.Option(help="epochs between decays (step schedule)", rich_help_panel=SCHEDULE)]
Milestones = Annotated[str | None, typer.Option(help="epochs of the decays, e.g. 80,120 (step schedule; replaces --step-size)", rich_help_panel=SCHEDULE)]
Gamma = Annotated[float, typer.Option(help="decay factor (step schedule)", rich_help_panel=SCHEDULE)]
Warmup = Annotated[int, typer.Option(help="linear warm-up epochs", rich_help_panel=SCHEDULE)]
LabelSmoothing = Annotated[float, typer.Option(help="label smoothing in [0,1)", rich_help_panel=OPTIM)]
# multi-process training (torchrun / DDP) — prunecli/engine/dist.py
SyncBn = Annotated[bool, typer.Option("--sync-bn/--no-sync-bn", help="under torchrun on CUDA: BatchNorm statistics over the global batch (torch's SyncBatchNorm; not available on CPU, where each process normalises its own slice)", rich_help_panel=DIST)]
RepeatedAug = Annotated[bool, typer.Option("--repeated-aug", help="timm's RepeatAugSampler (DeiT): each sample 3 times per epoch, differently augmented, the copies on different processes; each process sees len(data)/processes samples an epoch. Changes the sample stream; works in one process too", rich_help_panel=DIST)]
Nesterov = Annotated[bool, typer.Option(help="SGD with Nesterov momentum; --no-nesterov: plain (heavy-ball) momentum, torch's default and the MTP report's", rich_help_panel=OPTIM)]

# augmentation and regularisation from timm (issue 13: the DeiT/ConvNeXt stack; engine/augment.py)
RandAugment = Annotated[str | None, typer.Option("--randaugment", help="timm RandAugment spec, e.g. rand-m9-mstd0.5-inc1 (DeiT/ConvNeXt); switches the training transform to timm's create_transform (bicubic RandomResizedCrop, flip, RandAugment). imagefolder and ham10000 only", show_default=False, rich_help_panel=AUGMENT)]
Reprob = Annotated[float, typer.Option("--reprob", help="random erasing probability (timm, per-pixel noise; DeiT/ConvNeXt 0.25); imagefolder and ham10000 only", rich_help_panel=AUGMENT)]
Mixup = Annotated[float, typer.Option("--mixup", help="timm Mixup alpha (DeiT 0.8, ConvNeXt 0.2); soft targets with --label-smoothing folded in, SoftTargetCrossEntropy; 0: off", rich_help_panel=AUGMENT)]
Cutmix = Annotated[float, typer.Option("--cutmix", help="timm CutMix alpha (DeiT/ConvNeXt 1.0); with --mixup, one of the two per batch (switch prob 0.5); 0: off", rich_help_panel=AUGMENT)]
DropPath = Annotated[float, typer.Option("--drop-path", help="stochastic depth rate (timm's drop_path_rate, per-block linear schedule; timm models only); the checkpoint reloads unchanged", rich_help_panel=AUGMENT)]
Dropout = Annotated[float, typer.Option("--dropout", help="dropout rate: timm's drop_rate (before the classifier); other models: p of their existing dropout layers", rich_help_panel=AUGMENT)]
# speed and averaging (engine/amp.py): train, finetune (evaluate takes --amp and --channels-last)
Amp = Annotated[str, typer.Option("--amp", help="mixed precision: bf16, fp16 (CUDA only, with a GradScaler), off, or auto (bf16 on a CUDA device that supports it, else off: CPU runs stay fp32). Reconstruction models train in fp32 (their FFTs are complex). The lineage records the mode that ran", rich_help_panel=SPEED, **choice("--amp", "off", "auto", "bf16", "fp16"))]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="model and input images in channels_last memory format (faster convolutions on GPUs with tensor cores)", rich_help_panel=SPEED)]
Compile = Annotated[bool, typer.Option("--compile", help="train through torch.compile (inductor); the first epoch pays the compilation. A compilation failure stops with one error line", rich_help_panel=SPEED)]
GradAccum = Annotated[int, typer.Option("--grad-accum", help="micro-batches per optimizer step: --batch-size stays the total per step and must be divisible by N (less memory, same gradient)", rich_help_panel=SPEED)]
Ema = Annotated[float, typer.Option("--ema", help="exponential moving average of the weights (timm ModelEmaV3) with this decay, e.g. 0.9999; the EMA weights are validated and saved, the raw ones live in the resume state. 0: off", rich_help_panel=SPEED)]
Select = Annotated[str, typer.Option("--select", help="which epoch's weights the checkpoint keeps: last, best (highest val top-1; classification) or val_dc (lowest measurement error ‖Ax̂−y‖₁/‖y‖₁ on the val split; reconstruction, no ground truth). The header records best_epoch/best_val_top1 and last_epoch/last_val_top1 either way", rich_help_panel=SCHEDULE, **choice("--select", "last", "best", "val_dc"))]

# issue 17 (report): TensorBoard scalars per epoch (train, finetune; prunecli/engine/tblog.py)
TensorBoard = Annotated[str | None, typer.Option("--tensorboard", help="also write per-epoch scalars (loss, val metrics, lr, sparsity / zero groups) for TensorBoard to this folder (needs `pip install -e .[tensorboard]`; rank 0 under torchrun)", rich_help_panel=SCHEDULE)]
