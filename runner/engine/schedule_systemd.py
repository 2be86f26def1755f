"""systemd timers for `runbook schedule` where systemd is PID 1: runbook-<name>.service + .timer in
/etc/systemd/system, the same command line as the cron.d entry (flock, trigger, log)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner import safe_write
from runner.engine.schedules import Schedule
from runner.errors import InvalidInput

UNIT_DIR = Path("/etc/systemd/system")
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def systemd_is_init() -> bool:
    try:
        return Path("/proc/1/comm").read_text(encoding="utf-8").strip() == "systemd"
    except OSError:
        return False


def _field(text: str) -> str:
    """One cron numeric field in OnCalendar syntax: */N -> 0/N, A-B -> A..B, A-B/N -> A..B/N."""
    if text == "*":
        return "*"
    parts = []
    for part in text.split(","):
        base, _, step = part.partition("/")
        base = "0" if base == "*" else base.replace("-", "..")
        parts.append(f"{base}/{step}" if step else base)
    return ",".join(parts)


def _weekdays(text: str) -> str:
    if text == "*":
        return ""
    out = []
    for part in text.split(","):
        if "/" in part or not all(p.isdigit() for p in part.split("-")):
            raise InvalidInput(f"weekday field {text!r}: systemd timers take numbers, lists and ranges only")
        ends = [_DAYS[int(p) % 8] for p in part.split("-")]
        out.append("..".join(ends))
    return ",".join(out) + " "


def on_calendar(cron: str) -> str:
    minute, hour, dom, month, dow = cron.split()
    if dom != "*" and dow != "*":
        raise InvalidInput(f"cron {cron!r}: day of month and weekday together (cron ORs them) has no systemd timer")
    return f"{_weekdays(dow)}*-{_field(month)}-{_field(dom)} {_field(hour)}:{_field(minute)}:00"


def _unit_escaped(line: str) -> str:
    """A shell line inside ExecStart's single quotes: systemd expands % specifiers and $ variables first."""
    return line.replace("%", "%%").replace("$", "$$").replace("'", "'\\''")


def render_units(schedule: Schedule) -> dict[str, str]:
    unit = f"runbook-{schedule.name}"
    service = (
        f"[Unit]\nDescription=runbook schedule {schedule.name}\n\n[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh -c '{_unit_escaped(schedule.shell_line())}'\n"
    )
    timer = (
        f"[Unit]\nDescription=runbook schedule {schedule.name}\n\n[Timer]\nOnCalendar={on_calendar(schedule.cron)}\n"
        f"Unit={unit}.service\n\n[Install]\nWantedBy=timers.target\n"
    )
    return {f"{unit}.service": service, f"{unit}.timer": timer}


def install(schedule: Schedule, unit_dir: Path = UNIT_DIR) -> Path:
    for name, text in render_units(schedule).items():
        safe_write.write_text(unit_dir / name, text, mode=0o644)
    subprocess.run(["systemctl", "daemon-reload"], check=False)
    subprocess.run(["systemctl", "enable", "--now", f"runbook-{schedule.name}.timer"], check=False)
    return unit_dir / f"runbook-{schedule.name}.timer"


def uninstall(name: str, unit_dir: Path = UNIT_DIR) -> None:
    subprocess.run(["systemctl", "disable", "--now", f"runbook-{name}.timer"], check=False, capture_output=True)
    for suffix in (".service", ".timer"):
        (unit_dir / f"runbook-{name}{suffix}").unlink(missing_ok=True)
