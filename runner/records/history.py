"""Run history: an embedded SQLite database at <state_dir>/history.sqlite3 (stdlib sqlite3, WAL).

record_start is called when a run starts and record_end with its final report; each is one transaction. Inside a
run (in_run=True) they never block it: a database another process keeps locked is waited for IN_RUN_WAIT_S only,
then the row waits in the run directory (runner.records.history_pending) for the end of the run or the next
history access (list_runs, get_run), which writes it. A run
with a start and no end was cut off (the control node died, or the run is still going): list_runs shows it as
`running` while its control-node process is alive on this machine, else as `interrupted` with an unknown
outcome. Params are stored masked (the caller passes ResolvedParams.masked()) and every text field of a report
is already redacted, so no secret reaches the database. The database itself, its schema and migrations:
runner.records.history_store.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.language.durations import format_seconds, parse_time
from runner.processes import pid_alive
from runner.records import history_pending
from runner.records.history_pending import Pending, StartRow
from runner.records.history_store import (
    DB_NAME,
    IN_RUN_WAIT_S,
    SCHEMA_VERSION,
    HistoryError,
    connect,
    db_path,
    transaction,
)
from runner.records.model import Report, RunStatus, StepStatus, as_report

STATUS_RUNNING: Literal["running"] = "running"


@dataclass(frozen=True)
class StepRow:
    step_id: str
    phase: str
    host: str
    status: StepStatus
    duration_s: float
    changed: bool
    message: str
    started: str
    ended: str


@dataclass(frozen=True)
class RunRow:
    run_id: str
    runbook: str
    severity: str
    status: RunStatus | Literal["running"]
    status_detail: str
    operator: str
    trigger: str
    check_mode: bool
    params: dict[str, Any]
    started: str
    started_epoch: float
    ended: str | None
    duration_s: float | None
    budget_s: float | None
    budget_met: bool | None
    severity_target_s: float | None
    severity_target_met: bool | None
    failure_detected: str | None
    rollback_ran: bool
    rollback_status: str | None
    rollback_started: str | None
    rollback_ended: str | None
    rollback_duration_s: float | None
    rollback_verified: bool | None
    data_loss: bool
    data_check: str
    hosts: dict[str, Any]
    report_path: str | None
    finished: bool  # record_end was called
    steps: list[StepRow] = field(default_factory=list)
    time_to_detect_s: float | None = None  # release live -> breach confirmed by a watch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def epoch(timestamp: str | None) -> float | None:
    """Unix time of an ISO 8601 timestamp of a report; None when absent or unreadable."""
    moment = parse_time(timestamp)
    return None if moment is None else moment.timestamp()


class HistoryDeferred(HistoryError):
    """The database was busy: the row waits in the run directory and is written later."""


def record_start(
    state_dir: Path,
    run_id: str,
    runbook: str,
    severity: str,
    started: str,
    params_masked: dict[str, Any],
    operator: str,
    *,
    trigger: str = "",
    check_mode: bool = False,
    in_run: bool = False,
) -> None:
    """A run began. params_masked must already have secrets masked (ResolvedParams.masked()).

    in_run: never wait long; a row not written is kept (HistoryDeferred says where).
    """
    row = StartRow.here(
        run_id=run_id, runbook=runbook, severity=severity, started=started, params=params_masked,
        operator=operator, trigger=trigger, check_mode=check_mode,
    )
    _store(state_dir, Pending(run_id, start=row), in_run=in_run)


def _insert_start(conn: sqlite3.Connection, row: StartRow) -> None:
    conn.execute(
        """
        INSERT INTO runs (run_id, runbook, severity, status, operator, trigger, check_mode, params_json,
                          control_host, control_pid, started, started_epoch)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (run_id) DO UPDATE SET
            status = excluded.status, control_host = excluded.control_host,
            control_pid = excluded.control_pid, ended = NULL, ended_epoch = NULL
        """,
        (
            row.run_id,
            row.runbook,
            row.severity,
            STATUS_RUNNING,
            row.operator,
            row.trigger,
            int(row.check_mode),
            json.dumps(row.params, sort_keys=True, default=str),
            row.control_host,
            row.control_pid,
            row.started,
            epoch(row.started) or time.time(),
        ),
    )


def _rollback_columns(report: Report) -> dict[str, Any]:
    rollback = report.on_failure
    return {
        "rollback_ran": int(rollback.ran),
        "rollback_status": rollback.status.value,
        "rollback_started": rollback.started,
        "rollback_ended": rollback.ended,
        "rollback_duration_s": rollback.duration_s if rollback.ran else None,
        "rollback_verified": int(rollback.verified) if rollback.ran else None,
    }


def _run_columns(report: Report, report_path: str) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "runbook": report.runbook.name,
        "severity": report.severity,
        "status": report.status.value,
        "status_detail": report.status_detail,
        "operator": report.operator,
        "trigger": report.trigger,
        "check_mode": int(report.check_mode),
        "params_json": json.dumps(report.params, sort_keys=True, default=str),
        "control_host": socket.gethostname(),
        "control_pid": os.getpid(),
        "started": report.started,
        "started_epoch": epoch(report.started) or time.time(),
        "ended": report.ended or None,
        "ended_epoch": epoch(report.ended),
        "duration_s": report.duration_s,
        "budget_s": report.budget_s,
        "budget_met": int(report.budget_met),
        "severity_target_s": report.severity_target_s,
        "severity_target_met": int(report.severity_target_met),
        "failure_detected": report.failure_detected or None,
        **_rollback_columns(report),
        "data_loss": int(report.data_check.rows_lost),
        "data_check": report.data_check.summary,
        "time_to_detect_s": report.time_to_detect_s,
        "hosts_json": json.dumps({h: v.to_json() for h, v in report.hosts.items()}, sort_keys=True, default=str),
        "report_path": report_path,
    }


def record_end(
    state_dir: Path, report: Report | Mapping[str, Any], report_path: Path | str | None = None, *, in_run: bool = False
) -> None:
    """A run ended: store its outcome and every step x host from the (redacted) report, in one transaction.

    Works without a record_start (the row is created). report_path defaults to <state_dir>/runs/<id>/report.json.
    in_run: the start waiting in the run directory is written first; never wait long (see record_start).
    """
    report = as_report(report)
    default_path = history_pending.run_dir(state_dir, report.run_id) / "report.json"
    path = str(report_path if report_path is not None else default_path)
    _store(state_dir, Pending(report.run_id, end=report.to_json(), report_path=path), in_run=in_run)


def _insert_end(conn: sqlite3.Connection, report: Report, report_path: str) -> None:
    run_id = report.run_id
    row = _run_columns(report, report_path)
    columns = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "run_id")
    conn.execute(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT (run_id) DO UPDATE SET {updates}",
        [row[c] for c in columns],
    )
    conn.execute("DELETE FROM run_steps WHERE run_id = ?", (run_id,))
    conn.executemany(
        "INSERT INTO run_steps (run_id, seq, step_id, phase, host, status, duration_s, changed, message, "
        "started, ended) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (run_id, seq, s.id, s.phase, s.host, s.status.value, s.duration_s, int(s.changed), s.message,
             s.started, s.ended)
            for seq, s in enumerate(report.steps)
        ],
    )


def _write(conn: sqlite3.Connection, pending: Pending) -> None:
    if pending.start is not None:
        _insert_start(conn, pending.start)
    if pending.end is not None:
        _insert_end(conn, as_report(pending.end), pending.report_path)


def _store(state_dir: Path, rows: Pending, *, in_run: bool) -> None:
    if not in_run:
        with transaction(state_dir) as conn:
            _write(conn, rows)
        return
    path = history_pending.pending_path(state_dir, rows.run_id)
    try:
        with history_pending.claimed(path.parent, wait=True):
            waiting = history_pending.load(path)
            rows = waiting.adding(rows) if waiting is not None else rows
            try:
                with transaction(state_dir, wait_s=IN_RUN_WAIT_S) as conn:
                    _write(conn, rows)
            except HistoryError as exc:
                history_pending.save(path, rows)
                when = "the next `runbook history` or `runbook metrics`"
                when = when if rows.end is not None else f"the end of the run or {when}"
                raise HistoryDeferred(f"{exc}; the run's row waits in {path} and is written at {when}") from exc
            history_pending.discard(path)
    except OSError as exc:  # the run directory itself cannot keep it: a warning, as any history failure
        raise HistoryError(f"the run's history row could not be kept in {path}: {exc}") from exc


def write_pending(state_dir: Path) -> None:
    """Write the rows runs left waiting (a busy database or another process's claim leaves them for later)."""
    for path in history_pending.pending_files(state_dir):
        try:
            with history_pending.claimed(path.parent, wait=False) as mine:
                rows = history_pending.load(path) if mine else None
                if rows is None:
                    continue
                with transaction(state_dir, wait_s=IN_RUN_WAIT_S) as conn:
                    _write(conn, rows)
                history_pending.discard(path)
        except HistoryError:
            return  # still busy: the next access tries again
        except OSError:
            continue  # a run directory this user cannot use: its row stays where it is


def _process_alive(host: str, pid: int | None) -> bool:
    return pid is not None and host == socket.gethostname() and pid_alive(pid)


def _status(text: str, kind: type[RunStatus] | type[StepStatus]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise HistoryError(f"the run history holds a status this runner does not know: {text!r}") from None


def _row(record: sqlite3.Row, steps: list[StepRow]) -> RunRow:
    finished = record["ended"] is not None and record["status"] != STATUS_RUNNING
    status: RunStatus | Literal["running"]
    if finished:
        status, detail = _status(record["status"], RunStatus), record["status_detail"]
    elif _process_alive(record["control_host"], record["control_pid"]):
        status, detail = STATUS_RUNNING, "in progress"
    else:
        status = RunStatus.INTERRUPTED
        detail = "started but never ended (the control node stopped?): outcome unknown"

    def opt_bool(value: Any) -> bool | None:
        return None if value is None else bool(value)

    return RunRow(
        run_id=record["run_id"],
        runbook=record["runbook"],
        severity=record["severity"],
        status=status,
        status_detail=detail,
        operator=record["operator"],
        trigger=record["trigger"],
        check_mode=bool(record["check_mode"]),
        params=json.loads(record["params_json"] or "{}"),
        started=record["started"],
        started_epoch=float(record["started_epoch"]),
        ended=record["ended"],
        duration_s=record["duration_s"],
        budget_s=record["budget_s"],
        budget_met=opt_bool(record["budget_met"]),
        severity_target_s=record["severity_target_s"],
        severity_target_met=opt_bool(record["severity_target_met"]),
        failure_detected=record["failure_detected"],
        rollback_ran=bool(record["rollback_ran"]),
        rollback_status=record["rollback_status"],
        rollback_started=record["rollback_started"],
        rollback_ended=record["rollback_ended"],
        rollback_duration_s=record["rollback_duration_s"],
        rollback_verified=opt_bool(record["rollback_verified"]),
        data_loss=bool(record["data_loss"]),
        data_check=record["data_check"],
        hosts=json.loads(record["hosts_json"] or "{}"),
        report_path=record["report_path"],
        finished=finished,
        steps=steps,
        time_to_detect_s=record["time_to_detect_s"],
    )


def list_runs(
    state_dir: Path,
    runbook: str | None = None,
    since_s: float | None = None,
    *,
    with_steps: bool = False,
    now: float | None = None,
) -> list[RunRow]:
    """Runs, oldest first; only runbook NAME when given; only those started in the last since_s seconds."""
    where: list[str] = []
    args: list[Any] = []
    if runbook:
        where.append("runbook = ?")
        args.append(runbook)
    if since_s is not None:
        where.append("started_epoch >= ?")
        args.append((now if now is not None else time.time()) - since_s)
    return _query(state_dir, where, args, with_steps)


def get_run(state_dir: Path, run_id: str) -> RunRow | None:
    """One run with its step x host rows; None when history has no such run."""
    rows = _query(state_dir, ["run_id = ?"], [run_id], with_steps=True)
    return rows[0] if rows else None


def _query(state_dir: Path, where: list[str], args: list[Any], with_steps: bool) -> list[RunRow]:
    write_pending(state_dir)
    if not db_path(state_dir).is_file():
        return []
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    with closing(connect(state_dir)) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")  # one consistent snapshot for both queries
        records = conn.execute(f"SELECT * FROM runs{condition} ORDER BY started_epoch, run_id", args).fetchall()
        steps: dict[str, list[StepRow]] = {}
        if with_steps and records:
            for step in conn.execute(
                f"SELECT * FROM run_steps WHERE run_id IN (SELECT run_id FROM runs{condition}) ORDER BY run_id, seq",
                args,
            ):
                steps.setdefault(step["run_id"], []).append(
                    StepRow(
                        step_id=step["step_id"],
                        phase=step["phase"],
                        host=step["host"],
                        status=_status(step["status"], StepStatus),
                        duration_s=float(step["duration_s"]),
                        changed=bool(step["changed"]),
                        message=step["message"],
                        started=step["started"],
                        ended=step["ended"],
                    )
                )
        conn.execute("COMMIT")
    return [_row(record, steps.get(record["run_id"], [])) for record in records]


def format_runs(rows: list[RunRow]) -> str:
    """The `runbook history` table."""
    if not rows:
        return "no runs recorded\n"
    header = f"{'STARTED':<20} {'RUNBOOK':<28} {'SEV':<4} {'STATUS':<12} {'DURATION':>9} {'ROLLBACK':>9}  RUN"
    lines = [header + "  TRIGGER"]
    for row in rows:
        duration = format_seconds(row.duration_s) if row.duration_s is not None else "—"
        rollback = format_seconds(row.rollback_duration_s) if row.rollback_duration_s is not None else "—"
        flags = (" DATA-LOSS" if row.data_loss else "") + (" check" if row.check_mode else "")
        lines.append(
            f"{row.started[:19]:<20} {row.runbook:<28} {row.severity:<4} {row.status:<12} {duration:>9} "
            f"{rollback:>9}  {row.run_id}{flags}" + (f"  {row.trigger}" if row.trigger else "")
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "HistoryDeferred",
    "HistoryError",
    "RunRow",
    "StepRow",
    "connect",
    "db_path",
    "epoch",
    "format_runs",
    "get_run",
    "list_runs",
    "record_end",
    "record_start",
    "write_pending",
]
