"""Continue a failed or interrupted run from its journal, reusing the outputs it recorded.

One pass: read the journal, load the same runbook (unchanged since), merge the params (recorded ones, then the
params file, then -p; secrets are never recorded and must be given again), choose the first step and the hosts,
and hand the run a ResumePlan; the caller's options are never changed. A run killed before it began (no
run_start) starts from its first step. What the dead run left running on this control node is ended first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine import leftovers
from runner.engine.journal_state import JournalState, masked_entries, read_state
from runner.errors import InvalidInput
from runner.language.loader import load_runbook
from runner.language.model import Runbook, Step
from runner.language.params import SECRET_MASK, ResolvedParams, load_params_file, parse_assignments, resolve


@dataclass(frozen=True)
class ResumePlan:
    """Where the resumed run starts and what it reuses; the run records resumed_from in its journal and report."""

    resumed_from: str
    start_at: str  # "": every main step succeeded and the run was killed before it ended; only its end is left
    hosts: list[str]  # empty: all hosts of the steps
    recorded: dict[str, dict[str, Any]]  # host -> step id -> outputs of the steps before start_at
    origin_run_id: str = ""  # the first run of the chain: a step re-run finds its intents on the hosts by it

    def main_steps(self, runbook: Runbook) -> tuple[Step, ...]:
        if not self.start_at:
            return ()
        ids = [s.id for s in runbook.steps]
        return runbook.steps[ids.index(self.start_at) :]


@dataclass(frozen=True)
class ResumedRun:
    runbook: Runbook
    params: ResolvedParams
    inventory: Path
    limit: str | None
    plan: ResumePlan


@dataclass(frozen=True)
class ResumeRequest:
    """What the operator asked: `runbook resume RUN [--from STEP] [--failed-hosts-only] [-i INV] [-p k=v]...`."""

    from_step: str | None = None
    failed_hosts_only: bool = False
    assignments: tuple[str, ...] = ()
    params_file: str | None = None
    inventory: Path | None = None  # None: the original run's
    limit: str | None = None  # None: the original run's


def resume_run(run_dir: Path, roles_paths: list[Path], request: ResumeRequest) -> ResumedRun:
    state = read_state(run_dir)
    runbook = load_runbook(state.runbook_file, roles_paths)
    if state.runbook_sha256 and runbook.sha256 != state.runbook_sha256:
        raise InvalidInput(
            f"{state.runbook_file} changed since run {state.run_id}; start a new run instead of resuming"
        )
    params = _resumed_params(state, runbook, request)
    plan = plan_resume(state, runbook, request.from_step, request.failed_hosts_only)
    leftovers.refuse_if_running(state.run_id, state.control)
    leftovers.end_calls_left_running(run_dir)
    leftovers.remove_scratch(state.run_id)
    limit = ":".join(plan.hosts) if plan.hosts else request.limit or state.limit
    return ResumedRun(runbook, params, request.inventory or state.inventory, limit, plan)


def _resumed_params(state: JournalState, runbook: Runbook, request: ResumeRequest) -> ResolvedParams:
    """The recorded params, under the params file, under -p; every secret given again (or defaulted)."""
    given = parse_assignments(list(request.assignments))
    masked = state.masked_params & set(runbook.params)  # a value that held a secret: recorded masked
    recorded = {
        k: v
        for k, v in state.params.items()
        if k in runbook.params and v != SECRET_MASK and k not in given and k not in masked
    }
    file_values = {**recorded, **(load_params_file(request.params_file) if request.params_file else {})}
    missing_secrets = [n for n in runbook.secret_params if n not in given and n not in file_values]
    missing_masked = [n for n in masked if n not in given and n not in file_values]
    if missing_masked or (missing_secrets and any(not runbook.params[n].has_default for n in missing_secrets)):
        raise InvalidInput(
            "secret params are never recorded; give them again: "
            + " ".join(f"-p {n}=..." for n in sorted({*missing_secrets, *missing_masked}))
        )
    return resolve(runbook, given, file_values)


def plan_resume(
    state: JournalState, runbook: Runbook, from_step: str | None, failed_hosts_only: bool
) -> ResumePlan:
    ids = [s.id for s in runbook.steps]
    if from_step is not None and from_step not in ids:
        raise InvalidInput(f"--from {from_step!r}: no such main step (steps: {', '.join(ids)})")
    masked_outputs = {sid for (sid, _), r in state.results.items() if masked_entries(r, "outputs")}
    start = from_step
    if start is None:
        for step in runbook.steps:
            statuses = [r["status"] for (sid, _), r in state.results.items() if sid == step.id]
            if not statuses or any(s not in ("succeeded", "skipped") for s in statuses) or step.id in masked_outputs:
                start = step.id  # a step whose outputs held a secret runs again: the journal keeps them masked
                break
    if start is None:  # every step succeeded (killed before or after it ended): the resumed run only ends it
        return ResumePlan(state.run_id, "", [], _recorded(state, set(ids)), origin_run_id=state.origin_run_id)
    hosts: list[str] = []
    if failed_hosts_only:
        hosts = sorted(h for (sid, h), r in state.results.items() if sid == start and r["status"] != "succeeded")
        if not hosts:
            raise InvalidInput(f"no host failed step {start!r} in run {state.run_id}")
    before = set(ids[: ids.index(start)])
    unusable = [sid for sid in ids if sid in before and sid in masked_outputs]
    if unusable:
        raise InvalidInput(
            f"the outputs of step {unusable[0]!r} held a secret, which the journal keeps masked; resume from "
            f"that step or an earlier one (--from {unusable[0]})"
        )
    return ResumePlan(state.run_id, start, hosts, _recorded(state, before), origin_run_id=state.origin_run_id)


def _recorded(state: JournalState, steps: set[str]) -> dict[str, dict[str, Any]]:
    """host -> step id -> the outputs the run recorded for the succeeded steps among STEPS."""
    recorded: dict[str, dict[str, Any]] = {}
    for (sid, host), record in state.results.items():
        if sid in steps and record.get("status") == "succeeded":
            recorded.setdefault(host, {})[sid] = record.get("outputs") or {}
    return recorded
