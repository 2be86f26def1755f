"""The run's ansible-playbook calls, each inside the run's host leases (DESIGN section 5).

Every call takes (or renews) the leases first and the call the run ends in gives them back (run_leases.py). The
first call refused by a lease whose holder is provably dead takes it over and calls again; refused by a live (or
unknowable) holder, the run gives back what it took and stops (LeaseHeld, exit 4). A later call refused (this run's
lease expired and another run took the host) is a lost lease: no step of that call ran.

A call with leases is limited to the run's target hosts, so no step touches a host the leases do not cover. A host
unreachable while the call took its leases runs none of the call's steps: each of them is reported unreachable
there, saying so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.engine import host_leases
from runner.engine.events import UNREACHABLE, EventCollector, HostStepResult
from runner.engine.execute import PlaybookOutcome, run_playbook, write_extravars
from runner.engine.inventory import StepHosts
from runner.engine.render import extra_vars_text, step_tag
from runner.engine.run_leases import CallWatch, RunLeases
from runner.engine.start_gate import StartGate
from runner.engine.step_outputs import StepOutputs
from runner.language.model import Runbook, Step

Emit = Callable[..., None]


@dataclass(frozen=True)
class CallSetup:
    """What every call of one run is made with."""

    run_id: str
    runbook_name: str
    private_dir: Path
    inventory: Path
    roles_paths: list[Path]
    limit: str | None
    check: bool
    cancel: threading.Event
    params: dict[str, Any]
    outputs: StepOutputs  # the step outputs recorded so far, read by the steps of later calls
    on_result: Callable[[HostStepResult], None]
    on_task: Callable[[str, str, str], None]
    origin_run_id: str = ""  # roles key the intents they record on the hosts by it (a resumed run's origin)
    on_intent: Callable[[HostStepResult, dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class Called:
    outcome: PlaybookOutcome
    results: list[HostStepResult]  # every step x host the call reported on, final


@dataclass(frozen=True)
class LeaseLost:
    """Another run holds a host this run held before: no step of the call ran."""

    error: host_leases.LeaseHeld


def plan_leases(runbook: Runbook, hosts: StepHosts, setup: CallSetup, run_dir: Path, emit: Emit) -> RunLeases | None:
    """One lease per target host (none in check mode or with lock: none), taken in the run's first call."""
    if runbook.lock == "none" or setup.check:
        return None
    targets = hosts.of(runbook.all_steps)
    if not targets:
        return None
    emit("lock", hosts=targets, name=runbook.lock)
    ttl_s = max(2 * runbook.budget_s, 600)
    return RunLeases(
        setup.inventory, targets, setup.run_id, ttl_s=ttl_s, name=runbook.lock, work_dir=run_dir, step_hosts=hosts
    )


class RunCalls:
    """Makes the calls; begins the run (gate) once it holds its leases, or at once when it takes none."""

    def __init__(self, setup: CallSetup, leases: RunLeases | None, gate: StartGate) -> None:
        self.setup = setup
        self.leases = leases
        self.gate = gate

    def begin_before_playbooks(self, asks_first: bool) -> None:
        """Without leases the run begins at once. When an operator must approve the first step (asks_first), the
        leases are taken first by a playbook of their own (no one is asked about a host another run holds);
        otherwise they are taken in the first call and the run begins there."""
        if self.leases is None:
            self.gate.begin()
        elif asks_first:
            self.leases.acquire_now()
            self.gate.begin()

    def lock_taken(self) -> dict[str, Any] | None:
        """The leases the run holds as it begins (renewed from now on); None when it takes none."""
        if self.leases is None:
            return None
        entry = self.leases.report_entry()
        self.leases.start_renewals()
        return entry

    def call(
        self, phase: str, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool
    ) -> Called | LeaseLost:
        """One ansible-playbook call for the group, its leases taken (renewed) first and, when the run ends in it
        (last), given back last."""
        ident = f"{phase}-{group[0].id}"
        called, watch = self._call_once(playbook, steps, group, last=last, ident=ident)
        refused = watch.refused() if watch is not None else {}
        if refused and not self.gate.begun:
            assert self.leases is not None
            if not self.leases.take_over_dead(refused):
                self.leases.give_up(refused)
            called, watch = self._call_once(playbook, steps, group, last=last, ident=ident + "-again")
            refused = watch.refused() if watch is not None else {}
            if refused and not self.gate.begun:
                self.leases.give_up(refused)
        if refused:
            assert self.leases is not None
            return LeaseLost(host_leases.held_error(self.leases.name, refused))
        self.gate.begin()
        if watch is None or not watch.unreachable():
            return called
        return Called(called.outcome, called.results + self._not_leased(group, watch.unreachable()))

    def _not_leased(self, group: list[Step], unreachable: dict[str, str]) -> list[HostStepResult]:
        """The steps of the call on each host unreachable when the call took its leases: not run, unreachable."""
        assert self.leases is not None
        now = datetime.now(UTC).isoformat()
        results = []
        for step in group:
            for host in self.leases.hosts_of(step):
                if host in unreachable:
                    why = f"unreachable when the run took its lease ({unreachable[host]}): not run on this host"
                    result = HostStepResult(step.id, step.phase, host, UNREACHABLE, message=why, started=now, ended=now)
                    self.setup.on_result(result)
                    results.append(result)
        return results

    def extravars(self) -> str:
        """env/extravars of the next call: the params (all !unsafe), the run's own variables, the outputs so far."""
        setup = self.setup
        extra: dict[str, Any] = {
            "runbook_run_id": setup.run_id,
            "runbook_origin_run_id": setup.origin_run_id or setup.run_id,
            "runbook_name": setup.runbook_name,
        }
        recorded = setup.outputs.extravar()
        if recorded:
            extra["runbook_recorded_steps"] = recorded
        if self.leases is not None:
            extra.update(self.leases.extravars())
        return extra_vars_text(setup.params, extra)

    def finish(self) -> None:
        """Stop renewing; give back every lease the calls did not."""
        if self.leases is not None:
            self.leases.finish()

    def _call_once(
        self, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool, ident: str
    ) -> tuple[Called, CallWatch | None]:
        setup = self.setup
        collector = EventCollector(
            list(steps), on_result=setup.on_result, on_task=setup.on_task, on_intent=setup.on_intent
        )
        handler: Callable[[dict[str, Any]], bool] = collector
        watch = None
        limit = setup.limit
        if self.leases is not None:
            playbook = self.leases.playbook(setup.private_dir / "project", playbook, release=last)
            watch = self.leases.watch(collector, self.gate.begin)
            handler = watch
            limit = ",".join(self.leases.targets)  # resolved under the operator's --limit
        write_extravars(setup.private_dir, self.extravars())
        outcome = run_playbook(
            setup.private_dir,
            playbook,
            setup.inventory,
            handler,
            tags=[step_tag(s) for s in group],
            limit=limit,
            check=setup.check,
            cancel=setup.cancel,
            ident=ident,
            roles_paths=setup.roles_paths,
        )
        collector.finish()
        return Called(outcome, collector.ordered()), watch
