"""`report --measure`: evaluate and profile the checkpoints that have no sidecar yet.

Without it `report` never runs a model: what is in the table is what `evaluate -o` and
`profile -o` measured when the runs were made. With it, each checkpoint lacking a
`<stem>.eval.json` is evaluated (`prunecli evaluate --split S -o <stem>.eval.json`, on its
recorded data spec unless `--data` is given) and each lacking a `<stem>.profile.json` is
profiled (`prunecli profile --batch-sizes B -o <stem>.profile.json`), and the results are kept
as those sidecars, so the next report reads them instead of measuring again. A checkpoint that
cannot be measured (no recorded data, a data folder that moved) is one warning line.
"""

from __future__ import annotations

from prunecli.errors import UserError
from prunecli.report.collect import Run, warn


def fill(runs: list[Run], *, data: str | None, split: str, device: str, batch_size: int,
         batch_sizes: list[int], timing_runs: int, warmup: int) -> int:
    """Measure what is missing, in place (run.side and the sidecar files); returns how many were measured."""
    done = 0
    for run in runs:
        if "eval" not in run.side:
            done += _evaluate(run, data, split, device, batch_size)
        if "profile" not in run.side:
            done += _profile(run, device, batch_sizes, timing_runs, warmup)
    return done


def _sidecar(run: Run, kind: str) -> str:
    return str(run.path.with_name(f"{run.stem}.{kind}.json"))


def _evaluate(run: Run, data: str | None, split: str, device: str, batch_size: int) -> int:
    from prunecli.engine import run as engine

    spec = data or (run.header.data.spec if run.header.data else None)
    if spec is None:
        warn(f"{run.path}: not evaluated, its header records no data; give --data SPEC")
        return 0
    return _kept(run, "eval", "evaluated",
                 lambda: engine.evaluate(str(run.path), spec, device, batch_size, split=split))


def _profile(run: Run, device: str, batch_sizes: list[int], timing_runs: int, warmup: int) -> int:
    from prunecli.profiling.report import profile_checkpoints

    return _kept(run, "profile", "profiled",
                 lambda: profile_checkpoints(str(run.path), None, batch_sizes=batch_sizes, runs=timing_runs,
                                             warmup=warmup, device=device, threads=None, per_layer=False))


def _kept(run: Run, kind: str, done: str, measure) -> int:
    """`measure()` kept as the run's `<stem>.<kind>.json` and in `run.side`: 1, or a warning and 0 if it refuses."""
    from prunecli.io.sidecars import write_result

    try:
        result = measure()
    except UserError as err:
        warn(f"{run.path}: not {done} ({err})")
        return 0
    write_result(_sidecar(run, kind), result)
    run.side[kind] = result
    return 1
