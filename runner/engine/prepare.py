"""What a run needs before its first playbook call, worked out once per run: the role options checked with the
resolved params, the hosts of every step resolved, the project rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.engine.inventory import StepHosts, step_hosts
from runner.engine.render import RenderedProject, render_project
from runner.engine.resume import ResumePlan
from runner.language.model import Runbook, Step
from runner.language.params import ResolvedParams
from runner.language.typecheck import ensure_resolved_options


@dataclass(frozen=True)
class PreparedRun:
    runbook: Runbook
    params: ResolvedParams
    project: RenderedProject  # params travel as extra vars: the project is the one `runbook render` writes
    hosts: StepHosts
    resumption: ResumePlan | None = None

    @property
    def main_steps(self) -> tuple[Step, ...]:
        """The main steps this run executes: all of them, or from where a resumed run starts."""
        if self.resumption is None:
            return self.runbook.steps
        return self.resumption.main_steps(self.runbook)


def prepare_run(
    runbook: Runbook,
    params: ResolvedParams,
    roles_paths: list[Path],
    inventory: Path,
    limit: str | None,
    resumption: ResumePlan | None = None,
) -> PreparedRun:
    ensure_resolved_options(runbook, params.values, roles_paths)
    hosts = step_hosts(inventory, runbook.all_steps, limit, params.values)  # a templated hosts: too, to lease it
    return PreparedRun(runbook, params, render_project(runbook, roles_paths), hosts, resumption)
