"""What a person (or a machine, with --json) sees while a run goes on."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from runner.durations import format_seconds

_MARK = {"succeeded": "ok", "failed": "FAILED", "unreachable": "UNREACHABLE", "skipped": "skipped"}


class PlainProgress:
    """One line per step x host result; used when not on a terminal (and as the default for now)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.t0 = time.monotonic()
        self.budget_s = 0.0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        elapsed = format_seconds(time.monotonic() - self.t0)
        line = None
        if kind == "run_start":
            self.budget_s = float(data.get("budget_s") or 0)
            line = f"run {data['run_id']} (budget {format_seconds(self.budget_s)})"
        elif kind == "segment_start":
            line = f"{data['phase']}: {', '.join(data['steps'])}"
        elif kind == "step_result":
            mark = _MARK.get(data["status"], data["status"])
            if data["status"] == "succeeded" and data.get("changed"):
                mark = "changed"
            message = f" — {data['message']}" if data.get("message") and data["status"] != "succeeded" else ""
            line = f"  {data['step_id']:<18} {data['host']:<12} {mark:<8} {format_seconds(data['duration_s'])}{message}"
        elif kind == "rollback_start":
            line = f"FAILURE: {data['reason']}\nrolling back (on_failure)"
        elif kind == "approval":
            line = f"approval needed for {data['step']}: {data['question']}"
        elif kind == "run_end":
            line = f"{data['status']} after {format_seconds(data['duration_s'])}"
        if line is not None:
            print(f"[{elapsed:>7}] {line}", file=self.stream, flush=True)


class JsonProgress:
    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        print(json.dumps({"event": kind, **data}, default=str), file=self.stream, flush=True)
