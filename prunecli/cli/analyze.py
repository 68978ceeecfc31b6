"""`prunecli analyze`: per-layer statistics, pruning sensitivity, similarity or CKA of a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.analysis.run import ANALYSES
from prunecli.cli import _options as O

SENSITIVITY, SIMILARITY, CKA = "Sensitivity", "Similarity", "CKA"  # help panels, one per analysis with options


def _not_an_analysis(name: str) -> None:
    """An unknown name gets the registry's "did you mean"; a pruning method is sent to `prune`."""
    from prunecli.analysis.run import analysis_for

    analysis_for(name)


def analyze(
    checkpoint: O.Ckpt,
    method: Annotated[str, typer.Option("--method", help="magnitude, sensitivity, similarity or cka (`prunecli ls methods`)", **O.choice("--method", *ANALYSES, on_miss=_not_an_analysis))] = "magnitude",
    data: Annotated[str | None, typer.Option("--data", help="validation data (sensitivity, cka; training images for similarity): digits, synthetic[:..], cifar10:DIR, ...", rich_help_panel=O.DATA)] = None,
    ratios: Annotated[str, typer.Option("--ratios", help="comma-separated per-layer pruning ratios in (0,1) (sensitivity)", rich_help_panel=SENSITIVITY)] = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
    max_batches: Annotated[int | None, typer.Option("--max-batches", min=1, help="use at most N validation batches (per trial for sensitivity; cka) (default: all)", rich_help_panel=SENSITIVITY)] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="training images whose feature maps are hashed (similarity)", rich_help_panel=SIMILARITY)] = 100,
    thresholds: Annotated[str, typer.Option("--thresholds", help="comma-separated similarity thresholds τ to sweep (similarity)", rich_help_panel=SIMILARITY)] = "0.6,0.65,0.7,0.75,0.8,0.85,0.9,0.95",
    plot: Annotated[str | None, typer.Option("--plot", help="PNG: accuracy vs filters pruned per layer (sensitivity, Li et al. Fig. 2b); sorted filter norms per layer (magnitude); kept filters and MACs vs τ (similarity); CKA heatmap (cka)")] = None,
    compare: Annotated[str | None, typer.Option("--compare", help="second checkpoint: CKA of A's layers against its layers (cka; default: A against itself)", rich_help_panel=CKA)] = None,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="glob on module names, repeatable (cka; default: every Conv2d/Linear)", rich_help_panel=CKA)] = None,
    batch_size: O.BatchSize = 256,
    device: O.Device = "auto",
    output: Annotated[str, typer.Option("-o", "--output", help="report JSON path; `-` (the default) prints it on stdout")] = "-",
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random draw of --samples training images (similarity)", rich_help_panel=SIMILARITY)] = 0,
    cka_modules: Annotated[str, typer.Option("--cka-modules", help="cka: layers (every Conv2d/Linear, or --layers) or all (every named_modules() entry, root and containers included, outputs read after the forward: torch_cka's default, the MTP report's VGG maps)", **O.choice("--cka-modules", "layers", "all"), rich_help_panel=CKA)] = "layers",
    selection: Annotated[str, typer.Option("--selection", help="similarity tie-breaks: reference (the paper's code exactly) or strength (ours: ascending order, full weighted degree)", **O.choice("--selection", "reference", "strength"), rich_help_panel=SIMILARITY)] = "reference",
) -> None:
    """Analyse a checkpoint layer by layer before pruning it (Li et al., ICLR 2017, §3).

    magnitude: L1/L2 filter-norm statistics per Conv/Linear layer, the fraction of
    near-zero filters and the sorted L1 norms; --plot draws them per layer, normalised
    (Li et al. Fig. 2a); no data needed.

    sensitivity: prune each layer alone (with the layers coupled to it) at each
    --ratios value, lowest group-L1 filters first, and report top-1 accuracy, the
    drop from the unpruned model and the MACs left; needs --data (validation split).
    Slow (a trial per layer and ratio): stderr shows the progress and the expected time.
    --plot draws accuracy vs filters pruned away, one curve per layer (Li et al. Fig. 2b).

    similarity (Li et al., PRL 2023): hash each filter's feature maps on --samples
    training images (a random draw seeded by --seed, evaluation transform), and for each τ in --thresholds report per layer the filters the
    similarity-graph rule keeps, its edges and degree histogram, and the model's MACs and
    params; --plot draws kept-vs-τ and MACs-vs-τ. `prune --reuse REPORT` reuses it.

    cka (Kornblith et al. ICML 2019; Nguyen et al. ICLR 2021): linear minibatch CKA with
    the unbiased HSIC estimator between every pair of layers of the checkpoint (A against
    itself) or, with --compare B, of A's layers against B's (e.g. one-shot vs iterative
    pruned copies); a matrix of len(A layers) × len(B layers) over the validation split of
    --data. --layers GLOB (repeatable) picks the layers of each model (default: every
    Conv2d/Linear); --plot draws the heatmap. The estimator is averaged over batches, so
    --batch-size changes it slightly (the paper used 8 or 16); a final batch of fewer than
    4 examples is dropped. --max-batches limits the batches. --cka-modules all hooks every
    entry of named_modules() as torch_cka does without a layer list (the MTP report's VGG maps:
    42×42 for VGG-16): the root (its logits, named ""), containers after their children, in
    the order the hooks fire, each output read after the forward (so in-place ReLUs show).

    The report (JSON, format "prunecli-analysis") goes to -o; with a file, a summary
    table is printed on stdout (the report itself with --json), split into several tables
    when the sweep is wider than the terminal. --plot writes a PNG.

    Examples:

      prunecli analyze base.safetensors --method magnitude -o norms.json

      prunecli analyze base.safetensors --method sensitivity --data digits --ratios 0.2,0.5,0.8 -o sens.json --plot sens.png

      prunecli analyze r56.safetensors --method sensitivity --data cifar10:DIR --max-batches 10 --json -o sens.json

      prunecli analyze r56.safetensors --method similarity --data cifar10:DIR --samples 50 -o sim.json --plot sim.png

      prunecli analyze oneshot.safetensors --method cka --compare iterative.safetensors --data cifar100:DIR --batch-size 16 --layers 'features.*' -o cka.json --plot cka.png
    """
    from prunecli.analysis.run import AnalysisOptions, parse_ratios, resolve, run_analysis, summary
    from prunecli.cli._output import print_result

    opts = AnalysisOptions(data=data, ratios=parse_ratios(ratios), max_batches=max_batches,
                           batch_size=batch_size, device=device, samples=samples,
                           thresholds=parse_ratios(thresholds, "--thresholds"), plot=plot,
                           compare=compare, layers=tuple(layers or ()), seed=seed, cka_modules=cka_modules,
                           selection=selection)
    resolve(method, opts)  # option errors before torch is imported
    from prunecli.data.images import set_skip_bad_images
    from prunecli.io.atomic import check_output

    check_output(output, checkpoint, compare)
    if plot:
        check_output(plot, checkpoint, compare, option="--plot")
    set_skip_bad_images(skip_bad_images)
    report = run_analysis(checkpoint, method, opts, output)
    if output != "-":
        print_result(report, json, lambda: summary(report))
