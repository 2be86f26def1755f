"""One exception hierarchy; each class carries the exit status DESIGN §4 gives it.

The CLI catches RunbookError in one place and turns it into a message and that status.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitStatus:
    SUCCEEDED = 0
    ROLLED_BACK = 1
    INVALID = 2
    NOT_RESTORED = 3
    LOCKED = 4
    INTERRUPTED = 130


class RunbookError(Exception):
    """Base of every error the product reports to a user (never shown as a traceback)."""

    exit_status = ExitStatus.INVALID


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


class ApprovalRequired(InvalidInput):
    """A confirm: gate cannot be answered (no TTY and no --yes)."""


class LockHeld(RunbookError):
    exit_status = ExitStatus.LOCKED


class Interrupted(RunbookError):
    exit_status = ExitStatus.INTERRUPTED


class NotRestored(RunbookError):
    exit_status = ExitStatus.NOT_RESTORED


class LabError(RunbookError):
    """The lab cannot be brought up or used; the message says what to install or do."""

    exit_status = ExitStatus.NOT_RESTORED


class ExecutionError(RunbookError):
    """Ansible could not be started or the run directory could not be prepared."""

    exit_status = ExitStatus.NOT_RESTORED
