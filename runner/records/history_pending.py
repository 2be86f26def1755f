"""History rows that wait to be written: a run never waits for a busy history database.

Inside a run, history gets a short busy timeout; a row it cannot write then is kept in the run directory
(runs/<id>/history-pending.json, written through runner.safe_write) and written after the run, or by the next
history access (`runbook history`, `runbook metrics`). Whoever reads, writes or removes a run's pending file holds
an exclusive flock on the run directory, so a row is never written twice out of order nor lost between two
processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from runner import safe_write

PENDING_NAME = "history-pending.json"


@dataclass(frozen=True)
class StartRow:
    """What the history records when a run starts (params already masked)."""

    run_id: str
    runbook: str
    severity: str
    started: str
    params: dict[str, Any]
    operator: str
    trigger: str = ""
    check_mode: bool = False
    control_host: str = ""
    control_pid: int | None = None

    @classmethod
    def here(cls, **fields: Any) -> StartRow:
        """A start recorded by this process: its host and pid tell whether the run is still going."""
        return cls(**fields, control_host=socket.gethostname(), control_pid=os.getpid())


@dataclass(frozen=True)
class Pending:
    """A run's rows not yet in the database: its start, its end (the report as JSON and where it is), or both."""

    run_id: str
    start: StartRow | None = None
    end: dict[str, Any] | None = None
    report_path: str = ""

    def adding(self, later: Pending) -> Pending:
        start = later.start or self.start
        if later.end is not None:
            return replace(self, start=start, end=later.end, report_path=later.report_path)
        return replace(self, start=start)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Pending | None:
        """The pending rows of a file; None when it is unreadable (it is left for the operator to see)."""
        try:
            data = json.loads(text)
            start = data.get("start")
            return cls(
                run_id=str(data["run_id"]),
                start=StartRow(**start) if isinstance(start, dict) else None,
                end=data.get("end") if isinstance(data.get("end"), dict) else None,
                report_path=str(data.get("report_path") or ""),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def run_dir(state_dir: Path, run_id: str) -> Path:
    return Path(state_dir) / "runs" / run_id


def pending_path(state_dir: Path, run_id: str) -> Path:
    return run_dir(state_dir, run_id) / PENDING_NAME


def pending_files(state_dir: Path) -> list[Path]:
    """Every run's pending file, oldest run directory name first."""
    runs = Path(state_dir) / "runs"
    return sorted(runs.glob(f"*/{PENDING_NAME}")) if runs.is_dir() else []


def load(path: Path) -> Pending | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return Pending.from_json(text)


def save(path: Path, pending: Pending) -> None:
    safe_write.write_text(path, pending.to_json() + "\n", mode=0o600)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def claimed(directory: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the run directory's flock; yields False (without waiting) when wait is False and another holds it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
