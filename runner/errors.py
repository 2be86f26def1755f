"""One exception hierarchy; each class carries the exit status DESIGN §4 gives it.

The CLI catches RunbookError in one place and turns it into a message and that status.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCEEDED = 0
    ROLLED_BACK = 1
    BACKUPS_UNVERIFIED = 1  # `backups status`: a database has no verified backup (younger than --max-age)
    WATCH_BREACHED = 1  # `runbook watch`: a check breaches now, or gives no value
    INVALID = 2
    NOT_RESTORED = 3
    LOCKED = 4
    LAB_UNAVAILABLE = 5
    INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: a defect of the runner; the traceback is in the state dir's log
    INTERRUPTED = 130


class RunbookError(Exception):
    """Base of every error the product reports to a user (never shown as a traceback).

    The message is the problem alone; the CLI prefixes each of its lines with `error: ` once, except the lines of
    diagnostics, which already say `FILE:LINE:COL: error:`."""

    exit_status = ExitStatus.INVALID

    def lines(self) -> list[str]:
        return [f"error: {line}" for line in str(self).splitlines() or [""]]


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file, with where it is."""

    file: str
    line: int
    column: int
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f" (at {self.path})" if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: error: {self.message}{where}"


class InvalidInput(RunbookError):
    """Bad runbook, params, inventory or options. Carries every problem found, not only the first."""

    exit_status = ExitStatus.INVALID

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or []

    def __str__(self) -> str:
        if self.diagnostics:
            return "\n".join(str(d) for d in self.diagnostics)
        return super().__str__()

    def lines(self) -> list[str]:
        return [str(d) for d in self.diagnostics] if self.diagnostics else super().lines()


class ApprovalRequired(InvalidInput):
    """A confirm: gate cannot be answered (no TTY and no --yes)."""


class LockHeld(RunbookError):
    exit_status = ExitStatus.LOCKED


class LabError(RunbookError):
    """The lab cannot be brought up or used; the message says what to install or do."""

    exit_status = ExitStatus.LAB_UNAVAILABLE


class ExecutionError(RunbookError):
    """Ansible could not be started or the run directory could not be prepared."""

    exit_status = ExitStatus.NOT_RESTORED
