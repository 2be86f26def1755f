"""Run history: an embedded SQLite database at <state_dir>/history.sqlite3 (stdlib sqlite3, WAL).

record_start is called when a run starts and record_end with its final report; each is one transaction. A run
with a start and no end was cut off (the control node died, or the run is still going): list_runs shows it as
`running` while its control-node process is alive on this machine, else as `interrupted` with an unknown
outcome. Params are stored masked (the caller passes ResolvedParams.masked()) and every text field of a report
is already redacted, so no secret reaches the database.

Schema (versioned in the `meta` table, key `schema_version`):
  runs       one row per run: outcome, durations, budget, SEV target, rollback start/end/verified, data loss
  run_steps  one row per step x host of a run (ON DELETE CASCADE)
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import RunbookError

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 1

STATUS_RUNNING = "running"
STATUS_INTERRUPTED = "interrupted"

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id               TEXT PRIMARY KEY,
    runbook              TEXT NOT NULL,
    severity             TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL,            -- running until record_end
    status_detail        TEXT NOT NULL DEFAULT '',
    operator             TEXT NOT NULL DEFAULT '',
    trigger              TEXT NOT NULL DEFAULT '',
    check_mode           INTEGER NOT NULL DEFAULT 0,
    params_json          TEXT NOT NULL DEFAULT '{}',
    control_host         TEXT NOT NULL DEFAULT '',
    control_pid          INTEGER,
    started              TEXT NOT NULL,
    started_epoch        REAL NOT NULL,
    ended                TEXT,
    ended_epoch          REAL,
    duration_s           REAL,
    budget_s             REAL,
    budget_met           INTEGER,
    severity_target_s    REAL,
    severity_target_met  INTEGER,
    failure_detected     TEXT,
    rollback_ran         INTEGER NOT NULL DEFAULT 0,
    rollback_status      TEXT,
    rollback_started     TEXT,
    rollback_ended       TEXT,
    rollback_duration_s  REAL,
    rollback_verified    INTEGER,
    data_loss            INTEGER NOT NULL DEFAULT 0,
    data_check           TEXT NOT NULL DEFAULT '',
    hosts_json           TEXT NOT NULL DEFAULT '{}',
    report_path          TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_runbook ON runs (runbook, started_epoch);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_epoch);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    step_id     TEXT NOT NULL,
    phase       TEXT NOT NULL,
    host        TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration_s  REAL NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0,
    message     TEXT NOT NULL DEFAULT '',
    started     TEXT NOT NULL DEFAULT '',
    ended       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, seq)
);
"""

# schema_version -> statements that bring a database of the version before it up to that version
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}

_DATA_LOSS = re.compile(r"rows lost \{")


class HistoryError(RunbookError):
    """The history database cannot be opened or is newer than this runner understands."""


@dataclass(frozen=True)
class StepRow:
    step_id: str
    phase: str
    host: str
    status: str
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
    status: str  # succeeded | rolled_back | failed | interrupted | running
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

    @property
    def outcome_known(self) -> bool:
        return self.finished

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def db_path(state_dir: Path) -> Path:
    return Path(state_dir) / DB_NAME


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise HistoryError(
                f"the history database was written by a newer runbook runner (schema {current}, "
                f"this one knows {SCHEMA_VERSION}); upgrade, or use another --state-dir"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
        if current != SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created', ?)",
                (datetime.now(UTC).isoformat(timespec="seconds"),),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(state_dir: Path) -> sqlite3.Connection:
    """Open (creating and migrating when needed) the history database; autocommit, explicit transactions."""
    path = db_path(state_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open the run history {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise HistoryError(f"the run history {path} is unusable: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _transaction(state_dir: Path) -> Iterator[sqlite3.Connection]:
    with closing(connect(state_dir)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


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
) -> None:
    """A run began. params_masked must already have secrets masked (ResolvedParams.masked())."""
    started_epoch = _epoch(started) or time.time()
    with _transaction(state_dir) as conn:
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
                run_id,
                runbook,
                severity,
                STATUS_RUNNING,
                operator,
                trigger,
                int(check_mode),
                json.dumps(params_masked, sort_keys=True, default=str),
                socket.gethostname(),
                os.getpid(),
                started,
                started_epoch,
            ),
        )


def data_lost(data_check: Any) -> bool:
    """True when a report's data_check says rows were lost (text 'rows lost {..}', or a structured form)."""
    if isinstance(data_check, str):
        return bool(_DATA_LOSS.search(data_check))
    if isinstance(data_check, dict):
        if "lost" in data_check or "rows_lost" in data_check:
            return bool(data_check.get("lost") or data_check.get("rows_lost"))
        return any(data_lost(v) for v in data_check.values())
    if isinstance(data_check, list):
        return any(data_lost(v) for v in data_check)
    return False


def _opt_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _opt_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_end(state_dir: Path, report: dict[str, Any], report_path: Path | str | None = None) -> None:
    """A run ended: store its outcome and every step x host from the (redacted) report, in one transaction.

    Works without a record_start (the row is created). report_path defaults to <state_dir>/runs/<id>/report.json.
    """
    run_id = str(report["run_id"])
    runbook = report.get("runbook") or {}
    runbook_name = str(runbook.get("name", "")) if isinstance(runbook, dict) else str(runbook)
    on_failure = report.get("on_failure") or {}
    started = str(report.get("started") or "")
    ended = str(report.get("ended") or "") or None
    data_check = report.get("data_check", "")
    path = str(report_path) if report_path is not None else str(Path(state_dir) / "runs" / run_id / "report.json")
    row = {
        "run_id": run_id,
        "runbook": runbook_name,
        "severity": str(report.get("severity") or ""),
        "status": str(report.get("status") or "failed"),
        "status_detail": str(report.get("status_detail") or ""),
        "operator": str(report.get("operator") or ""),
        "trigger": str(report.get("trigger") or ""),
        "check_mode": int(bool(report.get("check_mode"))),
        "params_json": json.dumps(report.get("params") or {}, sort_keys=True, default=str),
        "control_host": socket.gethostname(),
        "control_pid": os.getpid(),
        "started": started,
        "started_epoch": _epoch(started) or time.time(),
        "ended": ended,
        "ended_epoch": _epoch(ended),
        "duration_s": _opt_float(report.get("duration_s")),
        "budget_s": _opt_float(report.get("budget_s")),
        "budget_met": _opt_bool(report.get("budget_met")),
        "severity_target_s": _opt_float(report.get("severity_target_s")),
        "severity_target_met": _opt_bool(report.get("severity_target_met")),
        "failure_detected": report.get("failure_detected") or None,
        "rollback_ran": int(bool(on_failure.get("ran"))),
        "rollback_status": on_failure.get("status"),
        "rollback_started": on_failure.get("started"),
        "rollback_ended": on_failure.get("ended"),
        "rollback_duration_s": _opt_float(on_failure.get("duration_s")) if on_failure.get("ran") else None,
        "rollback_verified": _opt_bool(on_failure.get("verified")) if on_failure.get("ran") else None,
        "data_loss": int(data_lost(data_check)),
        "data_check": data_check if isinstance(data_check, str) else json.dumps(data_check, default=str),
        "hosts_json": json.dumps(report.get("hosts") or {}, sort_keys=True, default=str),
        "report_path": path,
    }
    columns = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "run_id")
    with _transaction(state_dir) as conn:
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
                (
                    run_id,
                    seq,
                    str(step.get("id", "")),
                    str(step.get("phase", "main")),
                    str(step.get("host", "")),
                    str(step.get("status", "")),
                    float(step.get("duration_s") or 0),
                    int(bool(step.get("changed"))),
                    str(step.get("message") or ""),
                    str(step.get("started") or ""),
                    str(step.get("ended") or ""),
                )
                for seq, step in enumerate(report.get("steps") or [])
                if isinstance(step, dict)
            ],
        )


def _process_alive(host: str, pid: int | None) -> bool:
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(record: sqlite3.Row, steps: list[StepRow]) -> RunRow:
    finished = record["ended"] is not None and record["status"] != STATUS_RUNNING
    status, detail = record["status"], record["status_detail"]
    if not finished:
        if _process_alive(record["control_host"], record["control_pid"]):
            status, detail = STATUS_RUNNING, "in progress"
        else:
            status = STATUS_INTERRUPTED
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
                        status=step["status"],
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
    from runner.language.durations import format_seconds

    header = f"{'STARTED':<20} {'RUNBOOK':<28} {'SEV':<4} {'STATUS':<12} {'DURATION':>9} {'ROLLBACK':>9}  RUN"
    lines = [header]
    for row in rows:
        duration = format_seconds(row.duration_s) if row.duration_s is not None else "—"
        rollback = format_seconds(row.rollback_duration_s) if row.rollback_duration_s is not None else "—"
        flags = (" DATA-LOSS" if row.data_loss else "") + (" check" if row.check_mode else "")
        lines.append(
            f"{row.started[:19]:<20} {row.runbook:<28} {row.severity:<4} {row.status:<12} {duration:>9} "
            f"{rollback:>9}  {row.run_id}{flags}"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "HistoryError",
    "RunRow",
    "StepRow",
    "connect",
    "data_lost",
    "db_path",
    "format_runs",
    "get_run",
    "list_runs",
    "record_end",
    "record_start",
]
