"""How a failed run is told (DESIGN §4): rolled back, or refused with nothing changed; its exit status.

A step that fails before it changes anything (a restore refusing a missing or corrupt backup, a switch refusing
a configuration nginx rejects) has nothing to roll back. When no step x host of the run changed anything, or may
have (docs/decisions.md, "Refusals"), the run says the step refused and that nothing was changed; when on_failure
then changed nothing either and verified the service, the status is `failed` (nothing was rolled back) with exit
1, the service verified as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.engine.events import FAILED, SKIPPED, SUCCEEDED, HostStepResult
from runner.errors import ExitStatus
from runner.records.model import Rollback, RunStatus

EXIT_FOR_STATUS = {
    RunStatus.SUCCEEDED: ExitStatus.SUCCEEDED,
    RunStatus.ROLLED_BACK: ExitStatus.ROLLED_BACK,
    RunStatus.FAILED: ExitStatus.NOT_RESTORED,
    RunStatus.INTERRUPTED: ExitStatus.INTERRUPTED,
}


def exit_status_for(status: RunStatus, rollback: Rollback) -> ExitStatus:
    """1 when a failed run leaves the service verified by on_failure: rolled back, or refused with nothing
    changed (status failed); 3 when the service is not known to be good."""
    if status == RunStatus.FAILED and rollback.verified:
        return ExitStatus.ROLLED_BACK
    return EXIT_FOR_STATUS[status]


def changed_nothing(results: Iterable[HostStepResult]) -> bool:
    """No step x host changed anything or may have: each finished (or failed on its own, the host still there),
    no task said it changed something or timed out, no failed task left it unsaid, no version moved."""
    return all(
        result.status in (SUCCEEDED, SKIPPED, FAILED)
        and not (result.changed or result.timed_out or result.failure_may_have_changed)
        and result.outputs.get("version_before") == result.outputs.get("version_after")
        for result in results
    )


def failure_text(failure: HostStepResult | None, stopped: str, *, refused: bool) -> str:
    """What failed, as the status detail starts: `step 'X' failed on H: why` or, when the run changed nothing,
    `step 'X' refused on H: why; nothing was changed`."""
    if failure is None:
        return stopped or "the run failed"
    if refused:
        return f"step {failure.step_id!r} refused on {failure.host}: {failure.message}; nothing was changed"
    return f"step {failure.step_id!r} failed on {failure.host}: {failure.message}"
