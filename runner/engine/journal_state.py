"""What a run directory says about its run, for resume: the request, the last result of each main step x host,
how it ended. Records are checked as they are read: a journal edited by hand is refused with the line to fix,
never followed into a traceback."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.journal import (
    JOURNAL_FILE,
    REQUEST_FILE,
    JournalDamaged,
    journal_records,
    nesting_depth,
    parse_record,
)
from runner.errors import InvalidInput
from runner.language.model import PHASE_MAIN

OUTPUTS_DEPTH = 64  # recorded outputs travel to later steps as extra vars: no deeper than params may be


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
    masked_params: frozenset[str] = frozenset()  # params the journal holds masked (they held a secret value)
    origin_run_id: str = ""  # the run a chain of resumes continues (intents on the hosts are keyed by it)
    control: dict[str, Any] = field(default_factory=dict)  # the `runbook` process that ran it (request.json)
    began: bool = True  # False: killed (or refused) before its run_start; it starts from its first step


def masked_entries(record: dict[str, Any], field_name: str) -> frozenset[str]:
    """The entries of a record's field that the journal holds masked (Journal.append lists them)."""
    masked = record.get("masked")
    entries = [str(e) for e in masked] if isinstance(masked, list) else []
    return frozenset(e.split(".", 1)[1] for e in entries if e.startswith(f"{field_name}."))


def read_state(run_dir: Path) -> JournalState:
    journal = run_dir / JOURNAL_FILE
    if not journal.is_file():
        raise InvalidInput(f"{run_dir} has no journal.jsonl; it cannot be resumed")
    try:
        records = list(journal_records(journal))
    except JournalDamaged as exc:
        raise InvalidInput(f"{journal}: {exc} (edited by hand?); it cannot be resumed") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {journal}: {exc.strerror}") from None
    started = next(((n, r) for n, r in records if r.get("kind") == "run_start"), None)
    state = _state(started[1], f"{journal}:{started[0]}") if started is not None else _requested(run_dir)
    for number, record in records:
        kind = record.get("kind")
        if kind == "step_result" and record.get("phase") == PHASE_MAIN and state.began:
            state.results[_result_key(record, f"{journal}:{number}")] = record
        elif kind == "run_end":
            state.ended_status = str(record.get("status"))
    return state


def _requested(run_dir: Path) -> JournalState:
    """A run without run_start: what request.json says it was asked to do (nothing of it ran)."""
    path = run_dir / REQUEST_FILE
    try:
        record = parse_record(path.read_bytes())
    except OSError:
        record = None
    if record is None:
        raise InvalidInput(f"the journal of {run_dir} has no run_start record")
    state = _state(record, str(path))
    state.began = False
    return state


def _state(record: dict[str, Any], where: str) -> JournalState:
    texts = {key: record.get(key) for key in ("run_id", "runbook_file", "inventory")}
    bad = [key for key, value in texts.items() if not isinstance(value, str) or not value]
    params, limit = record.get("params", {}), record.get("limit")
    if not isinstance(params, dict):
        bad.append("params")
    if limit is not None and not isinstance(limit, str):
        bad.append("limit")
    if bad:
        raise InvalidInput(f"{where}: the run's record has no usable {', '.join(bad)} (edited by hand?)")
    run_id = str(texts["run_id"])
    origin, control = record.get("origin_run_id"), record.get("control")
    return JournalState(
        run_id=run_id,
        runbook_file=Path(str(texts["runbook_file"])),
        runbook_sha256=str(record.get("runbook_sha256", "")),
        inventory=Path(str(texts["inventory"])),
        params=dict(params),
        limit=limit,
        ended_status=None,
        masked_params=masked_entries(record, "params"),
        origin_run_id=origin if isinstance(origin, str) and origin else run_id,
        control=control if isinstance(control, dict) else {},
    )


def _result_key(record: dict[str, Any], where: str) -> tuple[str, str]:
    step, host, status, outputs = (record.get(k) for k in ("step_id", "host", "status", "outputs"))
    usable = isinstance(outputs, dict | None) and nesting_depth(outputs) <= OUTPUTS_DEPTH
    if not all(isinstance(v, str) and v for v in (step, host, status)) or not usable:
        shown = json.dumps({k: record.get(k) for k in ("step_id", "host", "status")}, default=str)[:200]
        raise InvalidInput(f"{where}: a step_result needs step_id, host, status and outputs (nested at most "
                           f"{OUTPUTS_DEPTH} levels), not {shown} (edited by hand?)")
    return str(step), str(host)
