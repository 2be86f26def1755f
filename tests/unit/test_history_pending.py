"""A history database another process keeps locked never blocks a run: its rows wait in the run directory and
are written after the run or by the next history access. The database and its -wal/-shm files are private."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runner.records import history
from runner.records.model import as_report
from runner.records.recorder import RunRecorder
from runner.records.redact import Redactor

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE meta SET value = value WHERE key = 'created'")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextmanager
def locked(state: Path) -> Iterator[None]:
    """Another process holds the history database's write lock until the block ends."""
    history.connect(state).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(history.db_path(state))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(10)


def report(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "runbook": {"name": "rb"},
        "severity": "SEV2",
        "status": "succeeded",
        "started": "2026-01-15T10:00:00.000+00:00",
        "ended": "2026-01-15T10:00:05.000+00:00",
        "duration_s": 5.0,
        "steps": [{"id": "a", "phase": "main", "host": "db", "status": "succeeded", "duration_s": 1.0}],
    }


def start(state: Path, run_id: str) -> None:
    history.record_start(state, run_id, "rb", "SEV2", "2026-01-15T10:00:00.000+00:00", {}, "me@here", in_run=True)


def test_a_locked_history_never_blocks_the_run_and_its_rows_are_written_later(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pending = state / "runs" / "r1" / "history-pending.json"
    with locked(state):
        began = time.monotonic()
        with pytest.raises(history.HistoryDeferred, match=r"history-pending\.json"):
            start(state, "r1")
        with pytest.raises(history.HistoryDeferred):
            history.record_end(state, report("r1"), in_run=True)
        assert time.monotonic() - began < 2  # not 2 x 30 s
        assert pending.stat().st_mode & 0o777 == 0o600
        began = time.monotonic()
        assert history.list_runs(state) == []  # still locked: the rows keep waiting, the reader does not
        assert time.monotonic() - began < 2
    rows = history.list_runs(state, with_steps=True)
    assert [(r.run_id, r.status, r.finished, len(r.steps)) for r in rows] == [("r1", "succeeded", True, 1)]
    assert not pending.exists()


def test_a_start_that_waited_is_written_when_the_run_ends(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with locked(state), pytest.raises(history.HistoryDeferred):
        start(state, "r2")
    history.record_end(state, report("r2"), in_run=True)
    row = history.get_run(state, "r2")
    assert row is not None and (row.status, row.finished, len(row.steps)) == ("succeeded", True, 1)
    assert not (state / "runs" / "r2" / "history-pending.json").exists()


def test_a_start_that_waited_shows_the_run_as_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with locked(state), pytest.raises(history.HistoryDeferred):
        start(state, "r3")
    [row] = history.list_runs(state)
    assert (row.run_id, row.status) == ("r3", "running")  # this process is the run's control process


def test_the_recorder_warns_and_keeps_the_end_of_a_run_when_history_is_locked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_dir = state / "runs" / "r4"
    run_dir.mkdir(parents=True)
    warnings: list[str] = []

    def emit(kind: str, **data: Any) -> None:
        warnings.append(str(data.get("message")))

    recorder = RunRecorder(run_dir, state, None, Redactor([]), emit)
    with locked(state):
        began = time.monotonic()
        recorder.record_end(as_report(report("r4")))
        assert time.monotonic() - began < 2
    assert warnings and "waits in" in warnings[0]
    assert [r.run_id for r in history.list_runs(state)] == ["r4"]


def test_history_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history.record_end(state, report("r5"))
    conn = history.connect(state)  # an open connection keeps -wal and -shm
    try:
        conn.execute("SELECT count(*) FROM runs").fetchone()
        files = {p.name: p.stat().st_mode & 0o777 for p in state.iterdir() if p.name.startswith("history")}
    finally:
        conn.close()
    assert files == dict.fromkeys(["history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm"], 0o600)


def test_a_history_database_left_readable_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = history.db_path(state)
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    history.list_runs(state)
    history.connect(state).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_run_directory_is_private(tmp_path: Path) -> None:
    from runner.engine.journal import Journal

    journal = Journal(tmp_path / "runs" / "r6" / "journal.jsonl", Redactor([]))
    journal.close()
    assert (tmp_path / "runs" / "r6").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "runs" / "r6" / "journal.jsonl").stat().st_mode & 0o777 == 0o600
