"""`prunecli prune` vs a hand-written Torch-Pruning script doing the same work.

Both sides are whole processes timed from spawn to exit, so import cost counts on both: the
question is what prunecli's extras (checkpoint header, MAC counts, masks/flops sidecars, the
self-check forward) cost on top of the pruning a user would otherwise script. Both prune a
ResNet-56 checkpoint with L1 group magnitude at channel ratio 0.5, and must keep exactly the
same channels (compared tensor by tensor). Target: prunecli / hand-written <= 1.2.
"""

from __future__ import annotations

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
    prunecli_cmd,
    run_checked,
    set_torch_threads,
    verdict,
    wall_time,
    write_results,
)

TARGET_RATIO = 1.2
RATIO = "0.5"
BARE = ROOT / "bench" / "_bare_prune.py"


def make_checkpoint(path: Path) -> bool:
    """`prunecli train --epochs 0` saves the seeded initial model; check it equals a fresh seed-0 build."""
    run_checked(prunecli_cmd() + ["train", "--model", "resnet56", "--data", "synthetic", "--epochs", "0",
                                  "-o", str(path)])
    import torch
    from safetensors.torch import load_file

    from prunecli.models import build_model

    torch.manual_seed(0)
    model, _, _ = build_model("resnet56", num_classes=10)
    saved = load_file(str(path))
    expected = model.state_dict()
    return saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)


def same_weights(a: Path, b: Path) -> tuple[bool, int]:
    """(every tensor equal, number of tensors): equal weights mean the same channels were kept."""
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), len(ta)


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    rounds, warmup = (1, False) if args.quick else (5, True)
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        src, cli_out, bare_out = Path(tmp, "r56.safetensors"), Path(tmp, "cli.safetensors"), Path(tmp, "bare.safetensors")
        init_ok = make_checkpoint(src)
        cli_cmd = prunecli_cmd() + ["prune", str(src), "--method", "l1", "--ratio", RATIO, "-o", str(cli_out)]
        bare_cmd = [sys.executable, str(BARE), str(src), str(bare_out), RATIO]
        if warmup:
            wall_time(cli_cmd), wall_time(bare_cmd)
        times = interleave({"prunecli prune": lambda: wall_time(cli_cmd),
                            "hand-written TP": lambda: wall_time(bare_cmd)}, rounds)
        equal, n_tensors = same_weights(cli_out, bare_out)
    ratios = pair_ratios(times["prunecli prune"], times["hand-written TP"])
    ratio = median(ratios)
    ok = ratio <= TARGET_RATIO and equal
    print_table(f"prune ResNet-56, l1, ratio {RATIO} ({rounds} interleaved runs, torch threads {threads})",
                ["process", "median s", "min s"], [[k, median(v), min(v)] for k, v in times.items()])
    print_table("result", ["metric", "value"], [
        ["ratio prunecli / hand-written (median of pairs)", ratio], ["target", f"<= {TARGET_RATIO}"],
        ["--epochs 0 checkpoint == seed-0 initial model", init_ok],
        [f"pruned weights identical ({n_tensors} tensors, torch.equal)", equal], ["verdict", verdict(ok)]])
    write_results("prune_speed", {
        "machine": machine_info(threads), "rounds": rounds, "times_s": times, "pair_ratios": ratios,
        "ratio": ratio, "target_ratio": TARGET_RATIO, "epochs0_is_init": init_ok, "identical_weights": equal,
        "tensors_compared": n_tensors, "pass": ok})


if __name__ == "__main__":
    main()
