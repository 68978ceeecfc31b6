"""One line per run and method: top-1 after fine-tuning, the latency prune measured, MACs kept.

Until `prunecli report` tabulates runs/<setting>/seed<N>/ (issue 17), this reads the JSON that
`prune --json`, `evaluate --json` and `profile --json` wrote. Usage: summary.py RUN_DIR... -- METHOD...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    split = argv.index("--")
    runs, methods = argv[:split], argv[split + 1:]
    print("| run | method | top-1 (%) | latency ms, pruned / base (batch) | measured / asked | MAC ratio | "
          "profile speedup |")
    print("|---|---|---|---|---|---|---|")
    for run in map(Path, runs):
        for m in methods:
            top1 = json.loads((run / f"{m}_ft.eval.json").read_text())["top1"]
            pruned = json.loads((run / f"{m}.prune.json").read_text())
            lat = pruned["latency"]
            speedup = json.loads((run / f"{m}_ft.profile.json").read_text())["ratios"]["speedup"]
            asked = lat["target_ratio"]
            print(f"| {run} | {m} | {top1:.2f} | {lat['after_ms']:.3g} / {lat['before_ms']:.3g} ({lat['batch']}) | "
                  f"{lat['after_ms'] / lat['before_ms'] / asked:.3f} | {pruned['macs_ratio']:.2f} | "
                  f"{', '.join(f'b={b}: {s:.2f}x' for b, s in speedup.items())} |")


if __name__ == "__main__":
    main(sys.argv[1:])
