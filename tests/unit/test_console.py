"""What the terminal shows of a step's result: one line per step x host, and a step's plan under it."""

from __future__ import annotations

import io

from runner.console import PlainProgress


def test_a_step_plan_output_is_shown_under_its_result_line() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    plan = ["keep            b3  (keep_last 2)", "compress+copy   b2  (older than 7d)\x1b[2J"]
    progress("step_result", {"step_id": "cleanup", "host": "db", "status": "succeeded", "changed": True,
                             "duration_s": 3.2, "message": "", "outputs": {"plan": plan}})
    progress("step_result", {"step_id": "verify", "host": "app1", "status": "failed", "duration_s": 1.0,
                             "message": "HTTP 500", "outputs": {"plan": "not a list"}})
    lines = [line.split("] ", 1)[1] if "] " in line else line for line in out.getvalue().splitlines()]
    assert lines == [
        "  cleanup            db           changed  3.2s",
        "      keep            b3  (keep_last 2)",
        "      compress+copy   b2  (older than 7d) [2J",  # no escape sequence reaches the terminal
        "  verify             app1         FAILED   1.0s — HTTP 500",
    ]
