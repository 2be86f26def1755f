"""The history database itself: <state_dir>/history.sqlite3 (stdlib sqlite3, WAL), its versioned schema and
migrations, and how it is opened.

Schema (versioned in the `meta` table, key `schema_version`):
  runs       one row per run: outcome, durations, budget, SEV target, rollback start/end/verified, data loss,
             time to detect (v3)
  run_steps  one row per step x host of a run (ON DELETE CASCADE)
  lease_events  leases an operator removed by hand (`runbook lock release --force`): host, lease, holder, who, when
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from runner.errors import RunbookError

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 3
WAIT_S = 30.0  # how long a history command waits for another writer
IN_RUN_WAIT_S = 0.2  # how long a run waits: then its row waits in the run directory (history_pending)

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
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS lease_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    at_epoch       REAL NOT NULL,
    kind           TEXT NOT NULL,            -- forced_release
    host           TEXT NOT NULL,
    name           TEXT NOT NULL,
    holder_run_id  TEXT NOT NULL DEFAULT '',
    lease_json     TEXT NOT NULL DEFAULT '{}',
    operator       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS lease_events_by_time ON lease_events (at_epoch);
"""

# release live -> breach confirmed by a watch (runner.records.watch_record); NULL when no watch breached
_SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN time_to_detect_s REAL
"""

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}


class HistoryError(RunbookError):
    """The history database cannot be opened or is newer than this runner understands."""


def db_path(state_dir: Path) -> Path:
    return Path(state_dir) / DB_NAME


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The version the database says it has; None when it has no meta table yet (a new database)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(row[0]) if row else None


def _migrate(conn: sqlite3.Connection) -> None:
    if _schema_version(conn) == SCHEMA_VERSION:
        return  # the usual case: no write lock needed, so a reader never waits for a writer
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


def _private(path: Path) -> None:
    """The database file exists and only its owner can read it. SQLite gives its -wal and -shm files the
    database file's mode when it creates them; files an older runner left readable are narrowed too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for name in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if os.lstat(name).st_mode & 0o077:
                os.chmod(name, 0o600, follow_symlinks=False)


def connect(state_dir: Path, *, wait_s: float = WAIT_S) -> sqlite3.Connection:
    """Open (creating and migrating when needed) the history database; autocommit, explicit transactions.

    wait_s: how long to wait for another writer before sqlite3 reports the database as locked.
    """
    path = db_path(state_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _private(path)
        conn = sqlite3.connect(str(path), timeout=wait_s, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open the run history {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
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
def transaction(state_dir: Path, *, wait_s: float = WAIT_S) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE) on a connection of its own; a locked database is a HistoryError."""
    with closing(connect(state_dir, wait_s=wait_s)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise HistoryError(f"the run history {db_path(state_dir)} is busy: {exc}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise HistoryError(f"the run history {db_path(state_dir)} could not be written: {exc}") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise HistoryError(f"the run history {db_path(state_dir)} could not be written: {exc}") from exc
