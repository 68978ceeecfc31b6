"""Analyses behind `prunecli analyze`: look at a checkpoint before deciding how to prune it.

Each analysis is one file exposing `analyze(loaded, opts) -> dict` (its per-layer results)
and `summary(report) -> rich renderable` (the human table); `prunecli.analysis.run` holds the
name → file table, the shared options and the report envelope. The method names and papers
are registered in `prunecli.methods` (kind "analysis"), so `prunecli ls methods` lists them.

- `magnitude`: filter-norm statistics per layer (Li et al., ICLR 2017, §3.1), no data.
- `sensitivity`: accuracy when each layer alone is pruned at several ratios (Li et al.,
  ICLR 2017, §3.2; Distiller's `--sense filter`), on validation data.

Nothing heavy is imported here, so the CLI can validate options before torch loads.
"""
