"""Similarity analysis (feature-map hashing) vs one plain forward pass over the same images.

`prunecli.analysis.similarity.collect` is what `analyze/prune --method similarity` spend their
time in: it runs the samples through the model with a hook on every deciding conv that turns
each feature map into a pHash (2-D DCT, 8×8 block, mean threshold) and adds the pairwise
agreement matrix (two matmuls per layer). The reference code recomputed hashes for every pair
of filters; ours hashes once per (sample, filter), so the whole analysis should cost a small
multiple of the forward pass it hooks. Both sides: ResNet-56 (seed-0 init), 50 synthetic
32×32 images, CPU, no grad, in one process, interleaved. Target: collect / forward <= 3.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from _common import (
    interleave,
    machine_info,
    median,
    pair_ratios,
    parse_args,
    print_table,
    set_torch_threads,
    verdict,
    write_results,
)

TARGET_RATIO = 3.0
SAMPLES = 50
DATA = "synthetic:n=64"


def setup():
    """ResNet-56 and its channel groups as `analyze` builds them, plus the first 50 training images."""
    import torch

    from prunecli.data import build_data
    from prunecli.models import build_model
    from prunecli.pruning.groups import channel_groups

    torch.manual_seed(0)
    model, _, _ = build_model("resnet56", num_classes=10)
    model.eval()
    groups = channel_groups(model, (3, 32, 32), ("fc",))
    x, _ = next(iter(build_data(DATA).loader("train", SAMPLES)))
    return model, groups, x[:SAMPLES]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    import torch

    from prunecli.analysis.similarity import collect

    model, groups, x = setup()
    header = SimpleNamespace(num_classes=10, task="classification")
    rounds = 3 if args.quick else 9

    def analysis() -> None:
        collect(model, groups, DATA, SAMPLES, SAMPLES, "cpu", header)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    analysis(), forward()  # warm-up: first calls pay allocator and kernel selection
    times = interleave({"similarity collect": lambda: timed(analysis), "plain forward": lambda: timed(forward)},
                       rounds)
    ratios = pair_ratios(times["similarity collect"], times["plain forward"])
    ratio = median(ratios)
    ok = ratio <= TARGET_RATIO
    print_table(f"ResNet-56, {SAMPLES} images, {len(groups)} hooked convs ({rounds} interleaved rounds, "
                f"torch threads {threads})", ["side", "median s", "min s"],
                [[k, median(v), min(v)] for k, v in times.items()])
    print_table("result", ["metric", "value"], [
        ["ratio collect / forward (median of pairs)", ratio], ["target", f"<= {TARGET_RATIO}"],
        ["verdict", verdict(ok)]])
    write_results("similarity_speed", {
        "machine": machine_info(threads), "rounds": rounds, "samples": SAMPLES, "hooked_convs": len(groups),
        "times_s": times, "pair_ratios": ratios, "ratio": ratio, "target_ratio": TARGET_RATIO, "pass": ok})


if __name__ == "__main__":
    main()
