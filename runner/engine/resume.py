"""Continue a failed or interrupted run from its journal, reusing the outputs it recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.journal import read_journal
from runner.errors import InvalidInput
from runner.language.model import PHASE_MAIN, Runbook


@dataclass
class JournalState:
    run_id: str
    runbook_file: Path
    runbook_sha256: str
    inventory: Path
    params: dict[str, Any]
    limit: str | None
    ended_status: str | None
    results: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (step, host) -> last record


def read_state(run_dir: Path) -> JournalState:
    journal = run_dir / "journal.jsonl"
    if not journal.is_file():
        raise InvalidInput(f"{run_dir} has no journal.jsonl; it cannot be resumed")
    state: JournalState | None = None
    for record in read_journal(journal):
        kind = record.get("kind")
        if kind == "run_start" and state is None:
            state = JournalState(
                run_id=str(record.get("run_id")),
                runbook_file=Path(str(record.get("runbook_file", ""))),
                runbook_sha256=str(record.get("runbook_sha256", "")),
                inventory=Path(str(record.get("inventory", ""))),
                params=dict(record.get("params") or {}),
                limit=record.get("limit"),
                ended_status=None,
            )
        elif state is not None and kind == "step_result" and record.get("phase") == PHASE_MAIN:
            state.results[(str(record["step_id"]), str(record["host"]))] = record
        elif state is not None and kind == "run_end":
            state.ended_status = str(record.get("status"))
    if state is None:
        raise InvalidInput(f"the journal of {run_dir} has no run_start record")
    return state


@dataclass(frozen=True)
class ResumePlan:
    start_at: str
    hosts: list[str]  # empty: all hosts of the steps
    recorded: dict[str, dict[str, Any]]


def plan_resume(
    state: JournalState, runbook: Runbook, from_step: str | None, failed_hosts_only: bool
) -> ResumePlan:
    if state.ended_status == "succeeded":
        raise InvalidInput(f"run {state.run_id} succeeded; there is nothing to resume")
    ids = [s.id for s in runbook.steps]
    if from_step is not None and from_step not in ids:
        raise InvalidInput(f"--from {from_step!r}: no such main step (steps: {', '.join(ids)})")
    start = from_step
    if start is None:
        for step in runbook.steps:
            statuses = [r["status"] for (sid, _), r in state.results.items() if sid == step.id]
            if not statuses or any(s not in ("succeeded", "skipped") for s in statuses):
                start = step.id
                break
    if start is None:
        raise InvalidInput(f"every step of run {state.run_id} succeeded; use --from STEP to run again")
    hosts: list[str] = []
    if failed_hosts_only:
        hosts = sorted(h for (sid, h), r in state.results.items() if sid == start and r["status"] != "succeeded")
        if not hosts:
            raise InvalidInput(f"no host failed step {start!r} in run {state.run_id}")
    before = set(ids[: ids.index(start)])
    recorded: dict[str, dict[str, Any]] = {}
    for (sid, host), record in state.results.items():
        if sid in before and record.get("status") == "succeeded":
            recorded.setdefault(host, {})[sid] = record.get("outputs") or {}
    return ResumePlan(start_at=start, hosts=hosts, recorded=recorded)
