"""Print the demo's before/after table from the JSON that `prunecli evaluate/profile --json` wrote."""

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def load(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def main(out: Path) -> None:
    base, pruned, ft = (load(out, f"eval_{k}.json") for k in ("base", "pruned", "finetuned"))
    prof = load(out, "profile.json")
    before, after = prof["compare"], prof
    lat = {(side, r["batch"]): r["median_ms"] for side, p in (("b", before), ("a", after)) for r in p["latency"]}
    table = Table(title="prunecli demo: ResNet-20 on digits, L1 pruning to ~0.5× MACs (CPU)", title_justify="left")
    for col in ("", "base", "pruned", "pruned + fine-tuned", "ratio"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("top-1 accuracy %", f"{base['top1']:.2f}", f"{pruned['top1']:.2f}", f"{ft['top1']:.2f}",
                  f"{ft['top1'] - base['top1']:+.2f} pt")
    table.add_row("params", f"{before['params']:,}", f"{after['params']:,}", f"{after['params']:,}",
                  f"{before['params'] / after['params']:.2f}× fewer")
    table.add_row("MACs / image", f"{before['macs']:,}", f"{after['macs']:,}", f"{after['macs']:,}",
                  f"{before['macs'] / after['macs']:.2f}× fewer")
    for batch in sorted({b for _, b in lat}):
        b, a = lat[("b", batch)], lat[("a", batch)]
        table.add_row(f"CPU latency, batch {batch} (ms)", f"{b:.2f}", f"{a:.2f}", f"{a:.2f}", f"{b / a:.2f}× faster")
    Console(width=110).print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
