"""runbook schedule: name and cron validation, the cron.d entry rendered, add/list/remove through the CLI."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner import cli
from runner.engine import schedules
from runner.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]


def test_bad_names_are_refused() -> None:
    for name in ("", "A", "../x", "a b", "-x", "x;rm"):
        with pytest.raises(InvalidInput):
            schedules.check_name(name)
    schedules.check_name("nightly-db_1")


def test_bad_cron_is_refused_with_one_line() -> None:
    for expression in ("", "* * *", "61 * * * *", "0 3 * * * *", "every day"):
        with pytest.raises(InvalidInput) as caught:
            schedules.check_cron(expression)
        assert len(str(caught.value).splitlines()) == 1


def test_next_fire() -> None:
    assert schedules.next_fire("0 3 * * *", datetime(2026, 1, 1, 4, 0, tzinfo=UTC)) == datetime(
        2026, 1, 2, 3, 0, tzinfo=UTC
    )


def test_render_cron_runs_under_flock_with_trigger_and_log() -> None:
    entry = schedules.Schedule("n1", "/r/x.yml", "/i/hosts.yml", "*/5 * * * *", "/st", ("k=50%",), "/usr/bin/runbook")
    text = schedules.render_cron(entry)
    line = text.splitlines()[-1]
    assert line.startswith("*/5 * * * * root flock -n /st/schedules/n1.lock /usr/bin/runbook run /r/x.yml")
    assert "--trigger schedule:n1" in line and "--state-dir /st" in line
    assert line.endswith(">> /st/schedules/n1.log 2>&1")
    assert "k=50\\%" in line


def test_cli_add_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crond = tmp_path / "cron.d"
    monkeypatch.setenv("RUNBOOK_CRON_DIR", str(crond))
    state = tmp_path / "state"
    runbook = next(iter(sorted((ROOT / "runbooks").glob("*.yml"))))
    inventory = ROOT / "inventories" / "lab" / "hosts.yml"
    base = ["schedule", "add", "n1", str(runbook), "-i", str(inventory), "--state-dir", str(state)]
    assert cli.main([*base, "--cron", "61 * * * *"]) == 2
    assert "invalid cron expression" in capsys.readouterr().err
    assert cli.main([*base, "--cron", "0 3 * * *"]) == 0
    entry = crond / "runbook-n1"
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o644
    assert "--trigger schedule:n1" in entry.read_text()
    capsys.readouterr()
    assert cli.main(["schedule", "list", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "n1" in out and "0 3 * * *" in out
    assert cli.main(["schedule", "remove", "n1", "--state-dir", str(state)]) == 0
    assert not entry.exists()
    assert cli.main(["schedule", "remove", "n1", "--state-dir", str(state)]) == 2


def test_systemd_units_render_the_same_command() -> None:
    from runner.engine import schedule_systemd

    assert schedule_systemd.on_calendar("0 3 * * *") == "*-*-* 3:0:00"
    assert schedule_systemd.on_calendar("*/5 1-4 * * 1-5") == "Mon..Fri *-*-* 1..4:0/5:00"
    with pytest.raises(InvalidInput):
        schedule_systemd.on_calendar("0 3 1 * 1")
    entry = schedules.Schedule("n1", "/r/x.yml", "/i/h.yml", "0 3 * * *", "/st", (), "/usr/bin/runbook")
    units = schedule_systemd.render_units(entry)
    assert "ExecStart=/bin/sh -c 'flock -n /st/schedules/n1.lock /usr/bin/runbook run" in units["runbook-n1.service"]
    assert "OnCalendar=*-*-* 3:0:00" in units["runbook-n1.timer"]


@pytest.mark.parametrize("value", ["x\n* * * * * root touch /tmp/owned", "x\ry", "tab\there"])
def test_a_param_with_a_line_break_never_reaches_a_cron_or_unit_line(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_CRON_DIR", str(tmp_path / "cron.d"))
    entry = schedules.Schedule("n1", "/r/x.yml", "/i/h.yml", "0 3 * * *", str(tmp_path), (f"why={value}",), "/bin/rb")
    with pytest.raises(InvalidInput, match="control character"):
        schedules.add(entry)
    assert not (tmp_path / "cron.d").exists() and not (tmp_path / "schedules").exists()  # nothing written


def test_systemd_specifiers_and_variables_in_a_value_reach_the_command_as_typed() -> None:
    from runner.engine import schedule_systemd

    entry = schedules.Schedule("n1", "/r/x.yml", "/i/h.yml", "0 3 * * *", "/st", ("k=50%$HOME'x",), "/bin/rb")
    service = schedule_systemd.render_units(entry)["runbook-n1.service"]
    assert "k=50%%$$HOME" in service
