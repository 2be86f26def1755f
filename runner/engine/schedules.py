"""`runbook schedule`: runbooks run by Debian's cron daemon, one /etc/cron.d/runbook-<name> entry per schedule.

Each entry runs `runbook run` (absolute paths of the executable, runbook and inventory, and the state dir) under
`flock -n`, so the runs of one schedule never pile up, with `--trigger schedule:<name>` so the run lands in
history with that trigger; its output is appended to <state_dir>/schedules/<name>.log. The schedule's own record
(what `list` shows) is <state_dir>/schedules/<name>.json. Cron expressions are checked with croniter.
A schedule whose target is `drill:NAME[,NAME...]` runs `runbook drill NAME...` instead (the drills of a checkout,
in the lab, each recorded in history with trigger drill:NAME), the same way.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from croniter import croniter

from runner import safe_write
from runner.errors import InvalidInput

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DRILL_PREFIX = "drill:"
DRILL_TARGET_RE = re.compile(r"^drill:[a-z0-9][a-z0-9_.-]*(,[a-z0-9][a-z0-9_.-]*)*$")


def drill_names(target: str) -> list[str]:
    """The drills of a `drill:NAME[,NAME...]` target; [] for a runbook."""
    if not target.startswith(DRILL_PREFIX):
        return []
    if not DRILL_TARGET_RE.match(target):
        raise InvalidInput(f"drill target {target!r}: use drill:NAME[,NAME...] (the names of molecule/ scenarios)")
    return target[len(DRILL_PREFIX):].split(",")


def cron_dir() -> Path:
    return Path(os.environ.get("RUNBOOK_CRON_DIR") or "/etc/cron.d")


@dataclass(frozen=True)
class Schedule:
    name: str
    runbook: str
    inventory: str
    cron: str
    state_dir: str
    params: tuple[str, ...] = ()
    executable: str = ""
    roles_paths: tuple[str, ...] = ()
    project: str = ""  # drills: the checkout holding molecule/

    def command(self) -> list[str]:
        drills = drill_names(self.runbook)
        if drills:
            project = ["--project", self.project] if self.project else []
            return [self.executable or runbook_executable(), "drill", *drills, *project, "--state-dir", self.state_dir]
        argv = [self.executable or runbook_executable(), "run", self.runbook, "-i", self.inventory]
        for param in self.params:
            argv += ["-p", param]
        for roles in self.roles_paths:
            argv += ["--roles-path", roles]
        return [*argv, "--state-dir", self.state_dir, "--trigger", f"schedule:{self.name}"]

    def log_path(self) -> Path:
        return Path(self.state_dir) / "schedules" / f"{self.name}.log"

    def lock_path(self) -> Path:
        return Path(self.state_dir) / "schedules" / f"{self.name}.lock"

    def shell_line(self) -> str:
        """One line of shell; a value holding a line break would end the cron or unit line and start another."""
        for value in (*self.command(), self.cron):
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise InvalidInput(
                    f"schedule {self.name}: {value!r} holds a control character (a line break, a tab): a cron or "
                    "systemd line cannot carry it"
                )
        run = " ".join(shlex.quote(a) for a in self.command())
        lock, log = shlex.quote(str(self.lock_path())), shlex.quote(str(self.log_path()))
        return f"flock -n {lock} {run} >> {log} 2>&1"


def runbook_executable() -> str:
    beside = Path(sys.executable).with_name("runbook")
    if beside.exists():
        return str(beside)
    found = shutil.which("runbook")
    if not found:
        raise InvalidInput("cannot find the installed `runbook` executable to schedule")
    return str(Path(found).resolve())


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidInput(f"schedule name {name!r}: use 1-63 of a-z, 0-9, '-', '_' (starting with a letter or digit)")


def check_cron(expression: str) -> None:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise InvalidInput(f"invalid cron expression {expression!r} (five fields: minute hour day month weekday)")


def next_fire(expression: str, now: datetime | None = None) -> datetime:
    return croniter(expression, now or datetime.now(UTC)).get_next(datetime)


def render_cron(schedule: Schedule) -> str:
    """The /etc/cron.d file: cron.d lines carry the user; % is special to cron and is escaped."""
    line = schedule.shell_line().replace("%", "\\%")
    return (
        f"# runbook schedule {schedule.name}: written by runbook-runner; remove with `runbook schedule remove`\n"
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"{schedule.cron} root {line}\n"
    )


def _record(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "schedules" / f"{name}.json"


def entry_path(name: str) -> Path:
    return cron_dir() / f"runbook-{name}"


def add(schedule: Schedule) -> Path:
    check_name(schedule.name)
    check_cron(schedule.cron)
    schedule.shell_line()  # refused before anything is written
    record = _record(Path(schedule.state_dir), schedule.name)
    record.parent.mkdir(parents=True, exist_ok=True)
    safe_write.write_text(record, json.dumps(asdict(schedule), indent=2) + "\n", mode=0o600)
    from runner.engine import schedule_systemd

    if schedule_systemd.systemd_is_init() and not os.environ.get("RUNBOOK_CRON_DIR"):
        return schedule_systemd.install(schedule)
    target = entry_path(schedule.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    safe_write.write_text(target, render_cron(schedule), mode=0o644)
    return target


def load(state_dir: Path, name: str) -> Schedule:
    check_name(name)
    record = _record(state_dir, name)
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"no schedule named {name!r}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"schedule {name!r} is unreadable: {exc}") from None
    data["params"] = tuple(data.get("params") or ())
    data["roles_paths"] = tuple(data.get("roles_paths") or ())
    return Schedule(**data)


def all_schedules(state_dir: Path) -> list[Schedule]:
    directory = Path(state_dir) / "schedules"
    names = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
    return [load(state_dir, n) for n in names if NAME_RE.match(n)]


def remove(state_dir: Path, name: str) -> None:
    from runner.engine import schedule_systemd

    load(state_dir, name)
    if schedule_systemd.systemd_is_init() and not os.environ.get("RUNBOOK_CRON_DIR"):
        schedule_systemd.uninstall(name)
    entry_path(name).unlink(missing_ok=True)
    _record(state_dir, name).unlink(missing_ok=True)


def run_now(schedule: Schedule) -> int:
    """Run it now exactly as cron would: the same shell line (flock, log)."""
    schedule.log_path().parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["/bin/sh", "-c", schedule.shell_line()], check=False).returncode


def listing(state_dir: Path, now: datetime | None = None) -> list[dict[str, object]]:
    """Per schedule: name, runbook, cron, next fire time, the last run's status and time (from history)."""
    from runner.records import history

    rows: list[dict[str, object]] = []
    runs = history.list_runs(state_dir) if any(True for _ in all_schedules(state_dir)) else []
    for entry in all_schedules(state_dir):
        drills = {f"{DRILL_PREFIX}{n}" for n in drill_names(entry.runbook)}
        mine = [r for r in runs if r.trigger == f"schedule:{entry.name}" or r.trigger in drills]
        last = mine[-1] if mine else None
        rows.append({
            "name": entry.name, "runbook": entry.runbook, "cron": entry.cron,
            "next": next_fire(entry.cron, now).isoformat(timespec="seconds"),
            "last_status": last.status if last else "", "last_started": last.started if last else "",
        })
    return rows


def format_list(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "no schedules\n"
    lines = [f"{'NAME':<20} {'CRON':<16} {'NEXT':<26} {'LAST RUN':<34} RUNBOOK"]
    for r in rows:
        last = f"{r['last_status']} {str(r['last_started'])[:19]}" if r["last_status"] else "-"
        lines.append(f"{r['name']!s:<20} {r['cron']!s:<16} {r['next']!s:<26} {last:<34} {r['runbook']}")
    return "\n".join(lines) + "\n"
