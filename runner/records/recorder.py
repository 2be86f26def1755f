"""What a run leaves behind when it ends: its redacted report, the notifications it sends, the report files
(report.json, .md, .html, junit.xml) and its row in the run history."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.events import HostStepResult
from runner.language.model import Notification
from runner.records import formats, history, notify
from runner.records.build import RunFacts, build_report
from runner.records.model import Report
from runner.records.redact import Redactor
from runner.records.report import JSON_NAME, MARKDOWN_NAME, ReportFiles, write_report

Emit = Callable[..., None]  # emit(kind, **data): a progress event of the run


@dataclass(frozen=True)
class RunRecorder:
    run_dir: Path
    state_dir: Path
    report_dir: Path | None  # --report-dir: the report files are written there too
    redactor: Redactor
    emit: Emit

    def finish(
        self,
        facts: RunFacts,
        results: Sequence[HostStepResult],
        *,
        notifications: Sequence[Notification],
        params: Mapping[str, Any],
        record: bool,
        inventory: Callable[[], Mapping[str, Any]] = dict,
    ) -> tuple[Report, ReportFiles]:
        """Build and redact the report, send the notifications (with the real params and the inventory's `all`
        variables, read only when there are notifications), write the files and, when record, the history row.
        Returns the report as written and the files to point the operator at."""
        report = build_report(facts, results).scrubbed(self.redactor.scrub)
        if notifications:
            self.emit("notify", count=len(notifications))
            sent = notify.send_all(
                notifications, report, params, self.redactor, report_path=str(self.run_dir / MARKDOWN_NAME),
                inventory=inventory(),
            )
            report = report.with_notifications(sent)
        files = self.write(report)
        if record:
            self.record_end(report)
        return report, files

    def write(self, report: Report) -> ReportFiles:
        files = write_report(report, self.run_dir)
        formats.write_all(report, self.run_dir)
        if self.report_dir is not None:
            files = write_report(report, self.report_dir)
            formats.write_all(report, self.report_dir)
        return files

    def record_end(self, report: Report) -> None:
        """History must never stop or hold up a recovery: a failure to record is a warning (a busy database: the
        row waits in the run directory for the next history access)."""
        try:
            history.record_end(self.state_dir, report, report_path=self.run_dir / JSON_NAME, in_run=True)
        except history.HistoryError as exc:
            self.emit("warning", message=f"history not recorded: {exc}")
