"""The step outputs later playbook calls read as steps.<id>.<key>: recorded on resume, and by this run's calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.engine.events import SUCCEEDED, HostStepResult

ANY_HOST = "*"  # outputs any host recorded, for a host that did not run the step (rendered plays read it)


class StepOutputs:
    """host -> step id -> the outputs that step published there, for on_failure and the steps after a gate."""

    def __init__(self, recorded: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.by_host: dict[str, dict[str, Any]] = {host: dict(steps) for host, steps in (recorded or {}).items()}

    def add(self, result: HostStepResult) -> None:
        if result.status == SUCCEEDED and result.outputs:
            self.by_host.setdefault(result.host, {})[result.step_id] = result.outputs

    def extravar(self) -> dict[str, dict[str, Any]]:
        """The `runbook_recorded_steps` extra var: per host, plus ANY_HOST (hosts by name, the first one wins)."""
        recorded = {host: dict(steps) for host, steps in self.by_host.items()}
        anywhere: dict[str, Any] = {}
        for host in sorted(h for h in recorded if h != ANY_HOST):
            for step_id, outputs in recorded[host].items():
                anywhere.setdefault(step_id, outputs)
        if anywhere:
            recorded[ANY_HOST] = anywhere
        return recorded
