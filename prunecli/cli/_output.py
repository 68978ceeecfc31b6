"""The console helpers, for imports written before they moved to `prunecli.console` (issue 14)."""

from prunecli.console import emit_json, err, fmt, human, log, print_result, progress, table, warn

__all__ = ["emit_json", "err", "fmt", "human", "log", "print_result", "progress", "table", "warn"]
