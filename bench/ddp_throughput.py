"""Multi-process training images/s: `torchrun --nproc_per_node 2 -m prunecli train` vs a bare
torchrun DDP script, on CPU (gloo).

prunecli side: `prunecli train --model resnet20 --data synthetic:n=STEPS·128 --batch-size 128
--lr 0.01 --device cpu` under torchrun: its sharded `TensorLoader` (each rank its contiguous half
of every global batch, normalised per batch), DistributedDataParallel, SGD (Nesterov momentum 0.9,
wd 5e-4), per-step cosine LR schedule, progress bar, validation after each epoch; the number is the
`images_per_s` it records for the last epoch (global images / rank 0's training-loop time).
Bare side: bench/_bare_ddp.py, the same model, seed, images, batch, optimizer and split, written
by hand (images normalised once up front). Each side is a fresh torchrun job of 2 epochs; the
second epoch counts. One thread per process (2 processes on the 2 cores). Target: >= 0.95.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from _common import (
    ROOT,
    interleave,
    machine_info,
    median,
    pair_ratios,
    parse_args,
    print_table,
    run_checked,
    verdict,
    write_results,
)

TARGET = 0.95
BATCH = 128
NPROC = 2
EPOCHS = 2


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(NPROC), *args]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def prunecli_side(steps: int, folder: Path):
    def run() -> float:
        out = folder / "ddp.safetensors"
        proc = run_checked(torchrun("-m", "prunecli", "train", "--model", "resnet20", "--data",
                                    f"synthetic:n={steps * BATCH},val=64", "--epochs", str(EPOCHS), "-b", str(BATCH),
                                    "--lr", "0.01", "--device", "cpu", "-o", str(out), "--json"), env=env())
        return json.loads(proc.stdout)["images_per_s"]

    return run


def bare_side(steps: int):
    def run() -> float:
        proc = run_checked(torchrun(str(ROOT / "bench" / "_bare_ddp.py"), str(steps), str(EPOCHS)), env=env())
        return json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"]

    return run


def main() -> None:
    args = parse_args(__doc__)
    steps, rounds = (6, 2) if args.quick else (16, 4)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"prunecli train (torchrun)": prunecli_side(steps, Path(tmp)), "bare DDP script": bare_side(steps)}
        ips = interleave(sides, rounds)
    ratios = pair_ratios(ips["prunecli train (torchrun)"], ips["bare DDP script"])
    ratio = median(ratios)
    print_table(f"ResNet-20, {NPROC} processes (gloo, CPU, 1 thread each), global batch {BATCH}, {steps} steps/epoch, "
                f"{rounds} interleaved jobs per side", ["side", "median images/s", "max images/s"],
                [[k, median(v), max(v)] for k, v in ips.items()])
    print_table("result", ["metric", "value"], [
        ["ratio prunecli / bare (median of pairs)", ratio], ["pair ratios", " ".join(f"{r:.3f}" for r in ratios)],
        ["target", f">= {TARGET}"], ["verdict", verdict(ratio >= TARGET)]])
    write_results("ddp_throughput", {
        "machine": machine_info(1), "nproc": NPROC, "backend": "gloo", "model": "resnet20", "global_batch": BATCH,
        "steps": steps, "rounds": rounds, "images_per_s": ips, "pair_ratios": ratios, "ratio": ratio,
        "target_ratio": TARGET, "pass": ratio >= TARGET})


if __name__ == "__main__":
    main()
