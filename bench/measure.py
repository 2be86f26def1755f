"""Helpers shared by the benchmarks: timed commands, alternating contenders, medians and ratios.

The machine is small and noisy (2 cores, other sessions at work), so every comparison runs its contenders side by
side in one process, alternating which goes first on each repetition (A B, B A, A B...), and reports medians.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.paths import PRODUCT_ROOT

VENV_BIN = Path(sys.executable).parent
RUNBOOK = VENV_BIN / "runbook"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"
LAB_INVENTORY = PRODUCT_ROOT / "inventories" / "lab" / "hosts.yml"
FIXTURE_ROLES = PRODUCT_ROOT / "tests" / "fixtures" / "roles"


@dataclass
class Timed:
    seconds: float
    rc: int
    stdout: str
    stderr: str
    argv: list[str]
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (seconds since start, event)

    def check(self, what: str) -> Timed:
        if self.rc != 0:
            tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"{what} failed (exit {self.rc}): {' '.join(self.argv)}\n{tail}")
        return self


def base_env(**extra: str) -> dict[str, str]:
    """The caller's environment without what would change the product's behaviour, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ANSIBLE_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 3600,
    input_text: str | None = None,
) -> Timed:
    """Run a command to completion; wall seconds from fork to exit."""
    args = [str(a) for a in argv]
    start = time.perf_counter()
    proc = subprocess.run(
        args,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        check=False,
    )
    return Timed(time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr, args)


def run_json_events(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 3600,
) -> Timed:
    """Run `runbook run --json ...`, stamping each JSON event line with when it arrived."""
    args = [str(a) for a in argv]
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    events: list[tuple[float, dict[str, Any]]] = []
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append((now, event))
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    seconds = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    return Timed(seconds, int(proc.returncode), "".join(lines), err, args, events)


def alternate(
    contenders: Mapping[str, Callable[[], float]],
    reps: int,
    *,
    before_each: Mapping[str, Callable[[], None]] | None = None,
    progress: Callable[[str], None] = print,
    label: str = "",
) -> dict[str, list[float]]:
    """Run every contender `reps` times, alternating: A B, B A, A B... Each callable returns its seconds.

    before_each[name] (untimed) puts the system in the contender's starting state right before each run."""
    names = list(contenders)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else list(reversed(names))
        for name in order:
            if before_each and name in before_each:
                before_each[name]()
            seconds = contenders[name]()
            samples[name].append(seconds)
            progress(f"  {label}rep {rep + 1}/{reps} {name:<10} {seconds:8.2f} s")
    return samples


def summary(samples: Sequence[float]) -> dict[str, Any]:
    values = [float(s) for s in samples]
    return {
        "median_s": round(statistics.median(values), 3) if values else None,
        "min_s": round(min(values), 3) if values else None,
        "max_s": round(max(values), 3) if values else None,
        "stdev_s": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
        "n": len(values),
        "samples_s": [round(v, 3) for v in values],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Median of the per-repetition ratios a[i]/b[i] (robust to slow drifts of the machine)."""
    pairs = [x / y for x, y in zip(a, b, strict=False) if y]
    return {
        "median": round(statistics.median(pairs), 3) if pairs else None,
        "min": round(min(pairs), 3) if pairs else None,
        "max": round(max(pairs), 3) if pairs else None,
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def fmt_s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def fmt_x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


@dataclass
class TaskTime:
    ident: str  # the ansible-runner job (main-<first step>, on_failure-<step>)
    play: str
    task: str
    host: str
    status: str
    seconds: float
    start: str
    end: str


def task_times(run_dir: Path) -> tuple[list[TaskTime], dict[str, float]]:
    """Per task x host durations from ansible-runner's job events of one run, and each job's playbook span (s)."""
    tasks: list[TaskTime] = []
    spans: dict[str, float] = {}
    for job in sorted((run_dir / "ansible" / "artifacts").glob("*/job_events")):
        ident = job.parent.name
        first = last = None
        for path in sorted(job.glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0])):
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            created = _parse_time(event.get("created"))
            if created is not None:
                first = created if first is None else min(first, created)
                last = created if last is None else max(last, created)
            kind = str(event.get("event", ""))
            data = event.get("event_data") or {}
            if kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
                tasks.append(
                    TaskTime(
                        ident=ident,
                        play=str(data.get("play", "")),
                        task=str(data.get("task", "")),
                        host=str(data.get("host", "")),
                        status=kind.removeprefix("runner_on_"),
                        seconds=float(data.get("duration") or 0.0),
                        start=str(data.get("start", "")),
                        end=str(data.get("end", "")),
                    )
                )
        if first is not None and last is not None:
            spans[ident] = round(last - first, 3)
    return tasks, spans


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def run_dir_of(timed: Timed) -> Path | None:
    """The run directory of a `runbook run --json` (its run_end event names the report)."""
    for _, event in reversed(timed.events):
        if event.get("event") == "run_end" and event.get("report"):
            return Path(str(event["report"])).parent
    return None


def event_times(timed: Timed) -> dict[str, float]:
    """When the milestones of a `runbook run --json` arrived (seconds since the command started)."""
    marks: dict[str, float] = {}
    for at, event in timed.events:
        kind = str(event.get("event", ""))
        if kind in ("lock", "run_start", "run_end") and kind not in marks:
            marks[kind] = at
        if kind == "segment_start":
            marks.setdefault("first_segment_start", at)
        if kind == "step_result":
            marks["last_step_result"] = at
    marks["exit"] = timed.seconds
    return marks
