"""Why a run is cancelled: a signal (Ctrl-C, SIGTERM, SIGHUP) or its overall --timeout (default 3x the budget).

Either way the run's `event` is set: ansible-runner stops the call, the modules on the hosts stop their own work,
the runner settles what is left (host_work.py) and the run ends `interrupted` (exit 130) with a report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runner.engine.execute import cancel_on_signals
from runner.language.durations import format_seconds

TIMEOUT_BUDGETS = 3  # the default overall timeout, in budgets


def run_timeout_s(timeout_s: float | None, budget_s: float) -> float:
    """The run's overall deadline in seconds: --timeout, else TIMEOUT_BUDGETS times the budget."""
    return timeout_s if timeout_s is not None else TIMEOUT_BUDGETS * budget_s


class RunCancel:
    """The run's cancel event, set by a signal or by its overall deadline (on_timeout(timeout_s=...) is told)."""

    def __init__(self, timeout_s: float, on_timeout: Callable[..., None] | None = None) -> None:
        self.event = threading.Event()
        self.timeout_s = timeout_s
        self.timed_out = False
        self._on_timeout = on_timeout

    @contextmanager
    def armed(self) -> Iterator[None]:
        """Signals and the overall deadline cancel the run while inside."""
        timer = threading.Timer(self.timeout_s, self._time_up)
        timer.daemon = True
        timer.start()
        try:
            with cancel_on_signals(self.event):
                yield
        finally:
            timer.cancel()

    def _time_up(self) -> None:
        self.timed_out = True
        if self._on_timeout is not None:
            self._on_timeout(timeout_s=self.timeout_s)
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def reason(self) -> str:
        if self.timed_out:
            return f"interrupted: the run's timeout ({format_seconds(self.timeout_s)}) passed and the run was cancelled"
        return "interrupted by the operator (signal)"
