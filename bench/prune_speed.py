"""`prunecli prune` vs a hand-written Torch-Pruning script doing the same work.

Both sides are whole processes timed from spawn to exit, so import cost counts on both: the
question is what prunecli's extras (checkpoint header, MAC counts, masks/flops sidecars, the
check that the written bytes reload into the same model) cost on top of the pruning a user
would otherwise script. Two cases, each side keeping exactly the same channels (compared tensor
by tensor):
- ResNet-56 (CIFAR), L1 group magnitude, local, channel ratio 0.5;
- torchvision ResNet-50 (10 classes) at 64×64, L2 group magnitude, global, ratio 0.4.
Both the wall time and the CPU time (user + sys of the child) are compared; the CPU time is
steadier on a shared machine. Target: prunecli / hand-written <= 1.1 in both cases.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ROOT,
    interleave,
    machine_info,
    median,
    pair_ratios,
    parse_args,
    print_table,
    prunecli_cmd,
    run_checked,
    set_torch_threads,
    verdict,
    write_results,
)

TARGET_RATIO = 1.1
BARE = ROOT / "bench" / "_bare_prune.py"
CASES = {  # name: (model, data spec of the --epochs 0 checkpoint, prune options, bare script's case, ratio)
    "resnet56 l1 local 0.5": ("resnet56", "synthetic", ["--method", "l1"], "r56-local", "0.5"),
    "tv_resnet50 64px l2 global 0.4": ("tv_resnet50", "synthetic:size=64,n=8,val=8",
                                       ["--method", "l2", "--global"], "r50-global", "0.4"),
}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + sys) of one whole process."""
    before = os.times()
    start = time.perf_counter()
    run_checked(cmd)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def make_checkpoint(path: Path, model: str, data: str) -> bool:
    """`prunecli train --epochs 0` saves the seeded initial model; check it equals a fresh seed-0 build."""
    run_checked(prunecli_cmd() + ["train", "--model", model, "--data", data, "--epochs", "0", "-o", str(path)])
    import torch
    from safetensors.torch import load_file

    from prunecli.models import build_model

    torch.manual_seed(0)
    built, _, _ = build_model(model, num_classes=10)
    saved = load_file(str(path))
    expected = built.state_dict()
    return saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)


def same_weights(a: Path, b: Path) -> tuple[bool, int]:
    """(every tensor equal, number of tensors): equal weights mean the same channels were kept."""
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), len(ta)


def run_case(tmp: str, name: str, rounds: int, warmup: bool) -> dict:
    model, data, options, bare_case, ratio = CASES[name]
    src = Path(tmp, f"{bare_case}.safetensors")
    cli_out, bare_out = Path(tmp, f"{bare_case}-cli.safetensors"), Path(tmp, f"{bare_case}-bare.safetensors")
    init_ok = make_checkpoint(src, model, data)
    cli_cmd = prunecli_cmd() + ["prune", str(src), *options, "--ratio", ratio, "-o", str(cli_out)]
    bare_cmd = [sys.executable, str(BARE), bare_case, str(src), str(bare_out), ratio]
    if warmup:
        timed(cli_cmd), timed(bare_cmd)
    runs = interleave({"prunecli": lambda: timed(cli_cmd), "hand-written": lambda: timed(bare_cmd)}, rounds)
    equal, n_tensors = same_weights(cli_out, bare_out)
    wall = {k: [w for w, _ in v] for k, v in runs.items()}
    cpu = {k: [c for _, c in v] for k, v in runs.items()}
    wall_ratio = median(pair_ratios(wall["prunecli"], wall["hand-written"]))
    cpu_ratio = median(pair_ratios(cpu["prunecli"], cpu["hand-written"]))
    return {"wall_s": wall, "cpu_s": cpu, "wall_ratio": wall_ratio, "cpu_ratio": cpu_ratio,
            "epochs0_is_init": init_ok, "identical_weights": equal, "tensors_compared": n_tensors,
            "pass": equal and min(wall_ratio, cpu_ratio) <= TARGET_RATIO}


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    rounds, warmup = (1, False) if args.quick else (5, True)
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        results = {name: run_case(tmp, name, rounds, warmup) for name in CASES}
    print_table(f"prune: prunecli / hand-written Torch-Pruning ({rounds} interleaved runs, torch threads {threads})",
                ["case", "prunecli wall s", "hand-written wall s", "wall ratio", "CPU ratio", "same weights"],
                [[name, median(r["wall_s"]["prunecli"]), median(r["wall_s"]["hand-written"]), r["wall_ratio"],
                  r["cpu_ratio"], f"{r['identical_weights']} ({r['tensors_compared']} tensors)"]
                 for name, r in results.items()])
    ok = all(r["pass"] for r in results.values())
    print_table("result", ["metric", "value"], [["target (median of pair ratios)", f"<= {TARGET_RATIO}"],
                                                ["verdict", verdict(ok)]])
    write_results("prune_speed", {"machine": machine_info(threads), "rounds": rounds, "cases": results,
                                  "target_ratio": TARGET_RATIO, "pass": ok})


if __name__ == "__main__":
    main()
