"""What a method takes on the command line, declared beside the method (issue 14 item 3).

A `Param` is one `prune` option: its name, type, default, help text, the help panel it
shows in, and its check. Each method lists the params it takes (`Method.params`);
`prunecli.cli.prune` builds the `prune` options from the union over the registered methods,
refuses an option given to a method that does not list it (one `error:` line naming the
methods that take it), and runs the checks of the method's params. Groups that several
methods share (the channel budget, ViT heads and blocks, τ) are defined here once; a
method's own ones live in its file.

Nothing here imports torch, typer or the CLI: `prunecli prune --help` imports every method file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# help panels of `prune --help` (Typer's rich_help_panel), in the order they show
BUDGET = "Budget (structured methods)"
SIMILARITY = "Similarity graph and zero groups"
ISOMORPHIC = "Isomorphic, ViT heads and blocks"
SCHEDULE = "Unstructured schedule"
FINETUNE = "Fine-tuning between steps (l1-unstructured)"
DATA = "Data and device"
PANELS = (BUDGET, SIMILARITY, ISOMORPHIC, SCHEDULE, FINETUNE, DATA)


@dataclass(frozen=True)
class Param:
    """One command-line option a method takes."""

    name: str
    """The Python name; the flag is `--name-with-dashes` unless `flags` says otherwise."""
    type: Any
    """The annotation Typer reads (`float | None`, `bool`, `list[str] | None`, ...)."""
    default: Any
    help: str = ""
    panel: str = DATA
    flags: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    """A closed set: shell completion offers it; another value is one `error:` line."""
    min: float | None = None
    check: Callable[[Any], str | None] | None = None
    """value → what is wrong with it (a sentence after the flag), or None."""
    shared: str | None = None
    """The name of a typed option in `prunecli.cli._options` (train/finetune's) whose flags,
    help and choices this param reuses, so the same option reads the same everywhere."""
    show_default: bool = True

    @property
    def flag(self) -> str:
        """The flag that names this option in messages (`--global` for `--global/--local`)."""
        if self.flags:
            return next(f for f in self.flags if f.startswith("--")).split("/")[0]
        return f"--{self.name.replace('_', '-')}"

    def problem(self, value: Any) -> str | None:
        """The check's complaint about `value` as one line naming the flag, or None."""
        if self.check is None or value is None:
            return None
        text = self.check(value)
        return f"{self.flag} {text}" if text else None


def in_open_unit(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be in (0, 1), got {value}"


def in_half_open_unit(value: float) -> str | None:
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value}"


def check_target_latency(text: str) -> str | None:
    """`0.5x` (a factor in (0, 1) of the measured latency) or `12ms` (positive)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(x|ms)\s*", text)
    if not m:
        return f"{text!r}: expected a factor of the measured latency (0.5x) or milliseconds (12ms)"
    value = float(m.group(1))
    if value <= 0 or (m.group(2) == "x" and value >= 1):
        return f"{text}: a factor must be in (0, 1), milliseconds positive"
    return None


# latency-aware pruning (issue 16): a measured latency budget and the latency table's batch
LATENCY_PARAMS = (
    Param("target_latency", str | None, None, "latency budget on this device: a factor of the measured "
          "latency (0.5x) or milliseconds (12ms) at --latency-batch; the ratio is searched on a per-layer "
          "latency table (`<stem>.latency.json`) and checked by measurement", BUDGET, check=check_target_latency),
    Param("latency_batch", int, 64, "batch size the latency (--target-latency, --round-to auto) is measured at",
          BUDGET, min=1),
    Param("round_window", int, 8, "--round-to auto: look ±N channels around the ranked width", BUDGET, min=1),
)


# the channel budget of the methods that rank channels (l1, l2, taylor, random, isomorphic)
BUDGET_PARAMS = (
    Param("ratio", float | None, None, "channel pruning ratio in (0,1) (Torch-Pruning's pruning_ratio)",
          BUDGET, check=in_open_unit),
    Param("target_macs", str | None, None,
          "MAC budget: 2.5G, 300M, or a factor of the model's MACs (0.5x); the ratio is searched", BUDGET),
    Param("global_pruning", bool, False, "rank channels across layers (global) or within each layer (local)",
          BUDGET, flags=("--global/--local",)),
    Param("round_to", str | None, None, "keep channel counts multiples of N (e.g. 8 for fast kernels), or `auto`: "
          "per group the width this device runs fastest within ±--round-window of the ranked one (measured)",
          BUDGET, check=lambda v: None if v == "auto" or (v.isdigit() and int(v) >= 1)
          else f"must be a positive integer or auto, got {v!r}"),
    Param("max_ratio", float, 0.9, "most any one layer may lose (global pruning, MAC search)", BUDGET,
          check=in_open_unit),
    *LATENCY_PARAMS,
)

# ViT heads and whole blocks: any ranking method (isomorphic is the one that needs them)
HEAD_PARAMS = (
    Param("head_ratio", float, 0.0, "fraction of attention heads to remove, ranked across layers (ViTs)",
          ISOMORPHIC, check=in_half_open_unit),
    Param("head_dim_ratio", float | None, None, "pruning ratio of attention head dims, their own scope (ViTs)",
          ISOMORPHIC, check=in_half_open_unit),
    Param("remove_blocks", int, 0, "after width pruning, replace the N blocks matching --blocks with the lowest "
          "Taylor scores by identities (ConvNeXt-T-4.2G: 18)", ISOMORPHIC, min=0),
    Param("blocks", str | None, None, "glob of the removable blocks for --remove-blocks, e.g. "
          "'stages.2.blocks.*' (timm ConvNeXt)", ISOMORPHIC),
)

CALIB_BATCHES = Param("calib_batches", int, 8, "calibration batches (taylor, --remove-blocks): N × --batch-size "
                      "training images drawn at random (--seed), eval transform, model in eval mode", DATA, min=1)

TIMEOUT = Param("timeout", float, 600.0, "seconds allowed for building the dependency graph and pruning together "
                "(structured methods; each MAC-search trial counts); past it: one error line, nothing written. "
                "0: no limit", DATA, check=lambda v: None if v >= 0 else f"must be ≥ 0 seconds (0: no limit), got {v}")

THRESHOLD = Param("threshold", float | None, None, "similarity: τ in (0,1), filters joined by an edge when mean "
                  "similarity ≥ τ; zero-groups: filter-norm threshold, default the paper's 1e-6", SIMILARITY)

RANKING = (*BUDGET_PARAMS, *HEAD_PARAMS, CALIB_BATCHES, TIMEOUT)
"""What every method that ranks channels (a Torch-Pruning importance) takes."""
