"""What a person (or a machine, with --json) sees while a run goes on."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from runner.engine.events import PLAN_OUTPUT
from runner.language.durations import format_seconds


def one_line(text: str, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_MARK = {"succeeded": "ok", "failed": "FAILED", "unreachable": "UNREACHABLE", "skipped": "skipped"}


def plan_lines(data: dict[str, Any]) -> list[str]:
    """The lines of a step's plan output (backup_retention: keep / compress / copy / delete per backup)."""
    outputs = data.get("outputs")
    plan = outputs.get(PLAN_OUTPUT) if isinstance(outputs, dict) else None
    if not isinstance(plan, list):
        return []
    return [f"      {''.join(c if c.isprintable() else ' ' for c in str(line))[:240].rstrip()}" for line in plan]


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
            message = f" — {one_line(data['message'])}" if data.get("message") and data["status"] != "succeeded" else ""
            line = f"  {data['step_id']:<18} {data['host']:<12} {mark:<8} {format_seconds(data['duration_s'])}{message}"
            line = "\n".join([line, *plan_lines(data)])
        elif kind == "rollback_start":
            line = f"FAILURE: {one_line(data['reason'])}\n          rolling back (on_failure)"
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


class RichProgress:
    """Live view on a terminal: current step, hosts done/failed, elapsed against the budget."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)
        self.t0 = time.monotonic()
        self.budget_s = 0.0
        self.step = ""
        self.task = ""
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.started = False

    def _view(self) -> Any:
        from rich.text import Text

        elapsed = time.monotonic() - self.t0
        over = self.budget_s and elapsed > self.budget_s
        line = Text()
        line.append(f" {self.step or '…'} ", style="bold")
        line.append(f"{self.task} ")
        line.append(f" ok {self.done.get(self.step, 0)}", style="green")
        line.append(f"  failed {self.failed.get(self.step, 0)}", style="red")
        line.append(
            f"  {format_seconds(elapsed)} / {format_seconds(self.budget_s)}", style="red" if over else "dim"
        )
        return line

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if not self.started:
            self.live.start()
            self.started = True
        if kind == "run_start":
            self.budget_s = float(data.get("budget_s") or 0)
            self.console.print(f"run [bold]{data['run_id']}[/] (budget {format_seconds(self.budget_s)})")
        elif kind == "task_start":
            self.step, self.task = str(data["step"]), str(data["task"])
        elif kind == "step_result":
            step = str(data["step_id"])
            bucket = self.done if data["status"] in ("succeeded", "skipped") else self.failed
            bucket[step] = bucket.get(step, 0) + 1
            mark = _MARK.get(data["status"], data["status"])
            if data["status"] == "succeeded" and data.get("changed"):
                mark = "changed"
            style = "green" if data["status"] in ("succeeded", "skipped") else "bold red"
            message = f" — {one_line(data['message'])}" if data.get("message") and data["status"] != "succeeded" else ""
            self.console.print(
                f"  {step:<18} {data['host']:<12} [{style}]{mark:<8}[/] "
                f"{format_seconds(data['duration_s'])}{message}",
                highlight=False,
            )
            for plan_line in plan_lines(data):
                self.console.print(plan_line, highlight=False, markup=False)
        elif kind == "rollback_start":
            self.console.print(f"[bold red]FAILURE:[/] {one_line(data['reason'])}\n[bold]rolling back (on_failure)[/]")
        elif kind == "approval":
            self.live.stop()
            self.started = False
        elif kind == "run_end":
            self.live.stop()
            self.started = False
            self.console.print(f"[bold]{data['status']}[/] after {format_seconds(data['duration_s'])}")
            return
        self.live.update(self._view())


def choose(json_stream: bool) -> Any:
    """--json: machine events on stdout; a terminal: live view; otherwise plain lines."""
    if json_stream:
        return JsonProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()
