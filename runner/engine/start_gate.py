"""A run begins once it holds its leases; what it journals and shows before that is held back until then."""

from __future__ import annotations

from collections.abc import Callable

Action = Callable[[], None]


class StartGate:
    """begin() runs on_begin once (lock entry, history row, run_start), then every action held back, in order."""

    def __init__(self, on_begin: Action) -> None:
        self.on_begin = on_begin
        self.begun = False
        self._held: list[Action] = []

    def when_begun(self, action: Action) -> None:
        if self.begun:
            action()
        else:
            self._held.append(action)

    def begin(self) -> None:
        if self.begun:
            return
        self.begun = True
        self.on_begin()
        held, self._held = self._held, []
        for action in held:
            action()
