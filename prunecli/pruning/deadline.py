"""A time limit on the slow steps of structured pruning (`prune --timeout`), with a progress line.

Torch-Pruning's dependency graph can take minutes on an architecture it mis-reads (group
expansion that grows quadratically), and the MAC search repeats graph builds. A user should
get one line naming the step that ran out of time instead of a process that never ends.

Only the phases wrapped in `phase(...)` count against the limit (building the dependency graph,
pruning, each MAC-search trial): loading, calibration and writing never do, so a limit can never
interrupt a write half-way and leave a partial file. On a POSIX main thread a `SIGALRM` timer
interrupts a single long call (Python runs the handler between bytecodes, so a long C kernel
finishes first); the previous handler and timer are restored afterwards. Where there is no
`SIGALRM` (Windows) or off the main thread, the limit is only checked between phases and trials.

No torch import here: the CLI imports this module to set the limit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from prunecli.errors import UserError

_HINT = "try --ignore GLOB for the slow blocks, or a larger --timeout (0: no limit)"


class TimeLimitExceeded(UserError):
    """A step ran past `--timeout`: a user error (one line, exit 2) callers can tell from a refusal."""


class _Expired(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` in library code swallows it."""


class _Limit:
    def __init__(self, seconds: float):
        self.seconds, self.used, self.stack = seconds, 0.0, []
        self.started = self.previous = None
        self.bar = self.task = None
        self.armed = False

    def remaining(self) -> float:
        running = time.monotonic() - self.started if self.started is not None else 0.0
        return self.seconds - self.used - running

    def expired(self) -> TimeLimitExceeded:
        where = ": ".join(self.stack) or "pruning"
        return TimeLimitExceeded(f"{where} took longer than --timeout {self.seconds:g} s; {_HINT}")


_active: _Limit | None = None


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Set the budget shared by every `phase` inside; `None` or 0 means no limit (progress only)."""
    global _active
    outer, _active = _active, _Limit(float(seconds) if seconds else 0.0)
    try:
        yield _active
    finally:
        _active = outer


def _alarm_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _raise(signum, frame):
    if _active is not None and _active.armed:  # a late alarm after the step ended is ignored
        raise _Expired()


@contextlib.contextmanager
def phase(name: str):
    """Run a step under the active limit, shown as a progress line with its elapsed time.

    Phases nest (`MAC search trial 3: building the dependency graph`); the outermost one owns
    the timer and the progress line, and prints the step's time when it ends.
    """
    limit = _active
    if limit is None:
        yield
        return
    outermost = not limit.stack
    limit.stack.append(name)
    try:
        if outermost:
            _start(limit)
        elif limit.bar is not None:
            limit.bar.update(limit.task, description=": ".join(limit.stack))
        if limit.seconds and limit.remaining() <= 0:
            raise limit.expired()
        try:
            yield
        except _Expired:
            raise limit.expired() from None
        if limit.seconds and limit.remaining() <= 0:  # where no alarm could interrupt the step
            raise limit.expired()
    finally:
        if outermost:
            _stop(limit, name)
        limit.stack.pop()
        if limit.bar is not None and limit.stack:
            limit.bar.update(limit.task, description=": ".join(limit.stack))


def _start(limit: _Limit) -> None:
    from prunecli.console import err, progress

    limit.started = time.monotonic()
    if err.is_terminal:  # a live line with the elapsed time; piped, only the closing line is printed
        from rich.errors import LiveError

        bar = progress()
        try:
            bar.start()
        except LiveError:  # another live display (a caller's progress bar) owns the terminal
            bar = None
        if bar is not None:
            limit.bar, limit.task = bar, bar.add_task(limit.stack[0], total=None, status="")
    if limit.seconds and _alarm_usable() and limit.remaining() > 0:
        limit.previous = (signal.signal(signal.SIGALRM, _raise), signal.setitimer(signal.ITIMER_REAL, 0))
        limit.armed = True
        signal.setitimer(signal.ITIMER_REAL, limit.remaining())


def _stop(limit: _Limit, name: str) -> None:
    from prunecli.console import err

    limit.armed = False
    if limit.previous is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        handler, (delay, interval) = limit.previous
        signal.signal(signal.SIGALRM, handler)
        if delay:
            signal.setitimer(signal.ITIMER_REAL, delay, interval)
        limit.previous = None
    elapsed = time.monotonic() - limit.started
    limit.used += elapsed
    limit.started = None
    if limit.bar is not None:
        limit.bar.stop()
    limit.bar = limit.task = None
    err.print(f"  {name}: {elapsed:.1f} s")
