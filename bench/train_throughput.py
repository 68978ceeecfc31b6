"""Training images/s: prunecli's training loop vs a bare PyTorch loop, in one process.

The library side is `prunecli.engine.fit.fit`, the function behind `prunecli train`, with
its `TensorLoader` over synthetic data, its optimizer and per-step LR schedule, its progress
bar, and the `images_per_s` metric it stores in the checkpoint header. The bare side is the
loop one would write by hand: pre-normalised tensors, a random permutation, forward,
cross-entropy, backward, step. Same model (ResNet-20, identical initial weights), batch 128,
same images, same SGD settings, same number of steps, same torch threads. Target: >= 0.95.
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


def build(steps: int):
    """The two sides, sharing initial weights and the very same uint8 images."""
    import torch

    from prunecli.data import build_data
    from prunecli.data.synthetic import make_tensors, parse_options
    from prunecli.engine.config import make_config
    from prunecli.models import build_model

    spec = f"n={steps * BATCH},val=64"
    dataset = build_data(f"synthetic:{spec}")
    cfg = make_config(epochs=1, batch_size=BATCH, lr=LR, momentum=0.9, weight_decay=5e-4)
    torch.manual_seed(0)
    model, _, _ = build_model("resnet20", num_classes=dataset.num_classes)
    x, y = make_tensors(parse_options(spec))["train"]
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(dataset.std).view(1, -1, 1, 1) * 255
    images = (x.float() - mean) / std
    return {"prunecli fit": library_side(model, dataset, cfg),
            "bare PyTorch": bare_side(copy.deepcopy(model), images, y, steps)}


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    steps, rounds = (4, 3) if args.quick else (16, 6)
    sides = build(steps)
    for run in sides.values():  # warm-up: allocator, oneDNN primitives, first-touch pages
        run()
    ips = interleave(sides, rounds)
    ratios = pair_ratios(ips["prunecli fit"], ips["bare PyTorch"])
    ratio = median(ratios)
    print_table(f"ResNet-20 training, batch {BATCH}, {steps} steps/epoch, {rounds} interleaved epochs, "
                f"torch threads {threads}", ["loop", "median images/s", "max images/s"],
                [[k, median(v), max(v)] for k, v in ips.items()])
    print_table("result", ["metric", "value"], [
        ["ratio prunecli / bare (median of pairs)", ratio], ["target", f">= {TARGET}"],
        ["verdict", verdict(ratio >= TARGET)]])
    write_results("train_throughput", {
        "machine": machine_info(threads), "model": "resnet20", "batch": BATCH, "steps": steps, "rounds": rounds,
        "images_per_s": ips, "pair_ratios": ratios, "ratio": ratio, "target_ratio": TARGET,
        "pass": ratio >= TARGET})


if __name__ == "__main__":
    main()
