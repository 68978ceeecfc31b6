"""Training images/s: prunecli's training loop vs a bare PyTorch loop, in one process.

The library side is `prunecli.engine.fit.fit`, the function behind `prunecli train`, with
its `TensorLoader` over synthetic data, its optimizer and per-step LR schedule, its progress
bar, and the `images_per_s` metric it stores in the checkpoint header. The bare side is the
loop one would write by hand: pre-normalised tensors, a random permutation, forward,
cross-entropy, backward, step. Same model (ResNet-20, identical initial weights), batch 128,
same images, same SGD settings, same number of steps, same torch threads. Target: >= 0.95.

Two more kinds of rows, each a ratio against the same round's bare loop:
- `bare PyTorch (A/A)`: a second, identical bare loop. Its ratio to the first is pure noise
  (same code, same work), so its spread says how far a ratio of 0.94 can be noise.
- `prunecli fit --amp bf16` / `--channels-last`: the options' cost or gain on this CPU (bf16
  autocast on CPU is fast only where the CPU has bf16 instructions, e.g. AVX512-BF16/AMX).
"""

from __future__ import annotations

import copy
import time

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

TARGET = 0.95
BATCH = 128
LR = 0.01  # small, so neither side drifts into NaN/denormal arithmetic over many repeats


def library_side(model, dataset, cfg):
    """One epoch through `fit`, returning the images/s it records in the checkpoint's metrics."""
    from prunecli.engine.fit import fit

    def run() -> float:
        return fit(model, dataset, cfg, "cpu", "-", save=lambda metrics: None)["images_per_s"]

    return run


def bare_side(model, images, labels, steps: int):
    """A hand-written loop over the same images (normalised once, as one would by hand)."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4, nesterov=True)

    def run() -> float:
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(labels))
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * BATCH / (time.perf_counter() - start)

    return run


def build(steps: int, model_name: str = "resnet20", variants: bool = True):
    """The sides, sharing initial weights and the very same uint8 images."""
    import torch

    from prunecli.data import build_data
    from prunecli.data.synthetic import make_tensors, parse_options
    from prunecli.engine.config import make_config
    from prunecli.models import build_model

    spec = f"n={steps * BATCH},val=64"
    dataset = build_data(f"synthetic:{spec}")
    cfg = make_config(epochs=1, batch_size=BATCH, lr=LR, momentum=0.9, weight_decay=5e-4)
    bf16 = cfg.model_copy(update={"amp": "bf16"})
    channels_last = cfg.model_copy(update={"channels_last": True})
    torch.manual_seed(0)
    model = (build_model(model_name, num_classes=dataset.num_classes)[0] if model_name != "linear"
             else torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, dataset.num_classes)))
    x, y = make_tensors(parse_options(spec))["train"]
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(dataset.std).view(1, -1, 1, 1) * 255
    images = (x.float() - mean) / std
    sides = {"prunecli fit": library_side(model, dataset, cfg),
             "bare PyTorch": bare_side(copy.deepcopy(model), images, y, steps)}
    if not variants:
        return sides
    return {**sides, "bare PyTorch (A/A)": bare_side(copy.deepcopy(model), images, y, steps),
            "prunecli fit --amp bf16": library_side(copy.deepcopy(model), dataset, bf16),
            "prunecli fit --channels-last": library_side(copy.deepcopy(model), dataset, channels_last)}


def overhead(steps: int, rounds: int) -> dict:
    """The loop's own cost per step, measured where the model costs nearly nothing (one Linear):
    1/(library steps/s) − 1/(bare steps/s), in ms. Unlike the ResNet-20 ratio this is not
    drowned by the model's run-time swings on a shared machine; divided by a ResNet-20 step it
    is the slowdown the library loop can cause at most."""
    sides = build(steps, "linear", variants=False)
    for run in sides.values():
        run()
    ips = interleave(sides, rounds)
    per_step = {k: [BATCH / v * 1000 for v in vals] for k, vals in ips.items()}
    diffs = [a - b for a, b in zip(per_step["prunecli fit"], per_step["bare PyTorch"])]
    return {"library_ms_per_step": median(per_step["prunecli fit"]),
            "bare_ms_per_step": median(per_step["bare PyTorch"]), "overhead_ms_per_step": median(diffs)}


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    steps, rounds = (4, 3) if args.quick else (16, 6)
    loop_cost = overhead(64, 3 if args.quick else 7)
    sides = build(steps)
    for run in sides.values():  # warm-up: allocator, oneDNN primitives, first-touch pages
        run()
    ips = interleave(sides, rounds)
    base = ips["bare PyTorch"]
    side_ratios = {k: pair_ratios(v, base) for k, v in ips.items() if k != "bare PyTorch"}
    ratios = side_ratios["prunecli fit"]
    ratio = median(ratios)
    print_table(f"ResNet-20 training, batch {BATCH}, {steps} steps/epoch, {rounds} interleaved epochs, "
                f"torch threads {threads}", ["loop", "median images/s", "max images/s", "/ bare (median)",
                                             "/ bare (min-max)"],
                [[k, median(v), max(v), median(side_ratios[k]) if k in side_ratios else 1.0,
                  f"{min(side_ratios[k]):.3f}-{max(side_ratios[k]):.3f}" if k in side_ratios else ""]
                 for k, v in ips.items()])
    print_table("result", ["metric", "value"], [
        ["ratio prunecli / bare (median of pairs)", ratio], ["target", f">= {TARGET}"],
        ["verdict", verdict(ratio >= TARGET)],
        ["loop overhead per step, 1-Linear model (ms)", loop_cost["overhead_ms_per_step"]],
        ["  as % of a bare ResNet-20 step", 100 * loop_cost["overhead_ms_per_step"] / (BATCH / median(base) * 1000)],
        ["A/A noise: bare / bare (median, min-max)", f"{median(side_ratios['bare PyTorch (A/A)']):.3f} "
         f"({min(side_ratios['bare PyTorch (A/A)']):.3f}-{max(side_ratios['bare PyTorch (A/A)']):.3f})"]])
    write_results("train_throughput", {
        "machine": machine_info(threads), "model": "resnet20", "batch": BATCH, "steps": steps, "rounds": rounds,
        "images_per_s": ips, "pair_ratios": ratios, "ratio": ratio, "target_ratio": TARGET,
        "side_ratios": side_ratios, "loop_overhead": loop_cost, "pass": ratio >= TARGET})


if __name__ == "__main__":
    main()
