"""runbook.ops.nginx_upstream (the traffic_switch role's module) on real files, with test and reload commands that
record their calls and pass or fail on demand (the real nginx is exercised in tests/integration/test_traffic.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from opsmodule import load

mod = load("nginx_upstream")

COLOURS = {"blue": ["127.0.10.11:8080"], "green": ["127.0.10.12:8080"]}
LAB_FILE = """# The app servers behind the lab load balancer.
upstream backend {
    server 127.0.10.11:8080;
    server 127.0.10.12:8080;
}
"""


class Nginx:
    """Test and reload commands: shell scripts that log each call and exit with the status asked for."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "calls.log"
        self.test_rc = tmp / "test.rc"
        self.reload_rc = tmp / "reload.rc"
        for name, rc in (("test", self.test_rc), ("reload", self.reload_rc)):
            rc.write_text("0")
            script = tmp / f"nginx-{name}"
            script.write_text(f"#!/bin/sh\necho {name} >> {self.log}\necho '{name} output'\nexit $(cat {rc})\n")
            script.chmod(0o755)
        self.test_cmd = [str(tmp / "nginx-test")]
        self.reload_cmd = [str(tmp / "nginx-reload")]

    def calls(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    conf = tmp_path / "upstream-backend.conf"
    conf.write_text(LAB_FILE)
    conf.chmod(0o644)
    nginx = Nginx(tmp_path)
    params = {
        "file": str(conf),
        "upstream": "backend",
        "colours": COLOURS,
        "state_dir": str(tmp_path / "state"),
        "test_command": nginx.test_cmd,
        "reload_command": nginx.reload_cmd,
        "run_id": "run-1",
    }
    return {"conf": conf, "nginx": nginx, "params": params}


def switch(site: dict[str, Any], check_mode: bool = False, **over: Any) -> dict[str, Any]:
    result: dict[str, Any] = mod.switch(dict(site["params"], **over), check_mode=check_mode)
    return result


def test_switch_to_a_colour_tests_then_reloads_and_keeps_the_mode(site: dict[str, Any]) -> None:
    result = switch(site, to="blue")
    assert result["changed"] and result["colour_before"] is None and result["colour_after"] == "blue"
    assert result["servers_before"] == ["127.0.10.11:8080", "127.0.10.12:8080"]
    assert mod.upstream_servers(site["conf"].read_text(), "backend") == ["127.0.10.11:8080"]
    assert site["nginx"].calls() == ["test", "reload"]
    assert stat.S_IMODE(site["conf"].stat().st_mode) == 0o644
    state = json.loads((Path(site["params"]["state_dir"]) / "backend.json").read_text())
    assert state["active"] == "blue" and state["previous"]["content"] == LAB_FILE
    assert state["history"][-1]["run_id"] == "run-1"


def test_the_colour_already_served_changes_nothing(site: dict[str, Any]) -> None:
    switch(site, to="green")
    before = site["conf"].read_bytes()
    again = switch(site, to="green")
    assert not again["changed"] and again["colour_before"] == again["colour_after"] == "green"
    assert site["conf"].read_bytes() == before
    assert site["nginx"].calls() == ["test", "reload"]  # only the first switch tested and reloaded


def test_other_and_previous_switch_back_exactly(site: dict[str, Any]) -> None:
    switch(site, to="blue")
    blue_file = site["conf"].read_text()
    to_green = switch(site, to="other")
    assert (to_green["colour_before"], to_green["colour_after"]) == ("blue", "green")
    back = switch(site, to="previous")
    assert (back["colour_before"], back["colour_after"]) == ("green", "blue")
    assert site["conf"].read_text() == blue_file  # the very bytes, not a re-rendering
    toggled = switch(site, to="previous")
    assert toggled["colour_after"] == "green"


def test_previous_can_restore_a_file_that_lists_no_colour(site: dict[str, Any]) -> None:
    switch(site, to="blue")
    back = switch(site, to="previous")
    assert back["colour_after"] is None
    assert site["conf"].read_text() == LAB_FILE


def test_a_configuration_nginx_rejects_is_put_back_and_not_reloaded(site: dict[str, Any]) -> None:
    site["nginx"].test_rc.write_text("1")
    with pytest.raises(mod.SwitchFailed, match=r"rejects the new configuration .*put back, nginx not reloaded"):
        switch(site, to="blue")
    assert site["conf"].read_text() == LAB_FILE
    assert site["nginx"].calls() == ["test"]
    assert not (Path(site["params"]["state_dir"]) / "backend.json").exists()


def test_a_failed_reload_puts_the_old_file_back_and_reloads_it(site: dict[str, Any]) -> None:
    site["nginx"].reload_rc.write_text("1")
    with pytest.raises(mod.SwitchFailed, match="failed"):
        switch(site, to="green")
    assert site["conf"].read_text() == LAB_FILE
    assert site["nginx"].calls() == ["test", "reload", "reload"]


def test_check_mode_writes_and_runs_nothing(site: dict[str, Any]) -> None:
    result = switch(site, check_mode=True, to="green")
    assert result["changed"] and result["msg"].startswith("would switch")
    assert site["conf"].read_text() == LAB_FILE and site["nginx"].calls() == []


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"to": "purple"}, "to is 'purple'"),
        ({"to": "previous"}, "nothing to switch back to"),
        ({"to": "other"}, "cannot tell the other colour"),
        ({"colours": {"blue": ["127.0.10.11:8080; include /etc/shadow"]}, "to": "blue"}, "is not host:port"),
        ({"colours": {"blue": []}, "to": "blue"}, "needs a list"),
        ({"colours": {"previous": ["127.0.0.1:80"]}, "to": "previous"}, "reserved"),
        ({"upstream": "backend { }", "to": "blue"}, "not a plain name"),
        ({"upstream": "missing", "to": "blue"}, "has no upstream missing block"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(
    site: dict[str, Any], over: dict[str, Any], message: str
) -> None:
    with pytest.raises(mod.SwitchFailed, match=message):
        switch(site, **over)
    assert site["conf"].read_text() == LAB_FILE and site["nginx"].calls() == []


def test_servers_are_read_from_the_named_block_only() -> None:
    text = (
        "upstream other { server 10.0.0.1:80; }\n"
        "upstream backend {\n    # server 10.9.9.9:80;\n    server 127.0.10.12:8080 max_fails=3;\n"
        "    server [::1]:8080 backup;\n}\n"
    )
    assert mod.upstream_servers(text, "backend") == ["127.0.10.12:8080", "[::1]:8080"]
    assert mod.upstream_servers(text, "nope") is None
    assert mod.colour_of(["127.0.10.12:8080"], COLOURS) == "green"


def killed_after_the_reload(site: dict[str, Any], to: str) -> None:
    """A switch killed after nginx reloaded and before the state said it was done (the state still `pending`)."""
    state_path = Path(site["params"]["state_dir"]) / "backend.json"
    before = json.loads(state_path.read_text()) if state_path.exists() else {}
    switch(site, to=to)
    after = json.loads(state_path.read_text())
    pending = {"colour": after["previous"]["colour"], "servers": after["previous"]["servers"],
               "content": after["previous"]["content"], "to": after["active"], "to_servers": after["history"][-1][
                   "servers"], "to_content": site["conf"].read_text(), "run_id": "run-1", "at": "now"}
    state_path.write_text(json.dumps(dict(before, pending=pending)))


def test_a_switch_killed_between_the_reload_and_the_state_write_is_finished_not_skipped(site: dict[str, Any]) -> None:
    switch(site, to="blue")
    killed_after_the_reload(site, "green")
    back = switch(site, to="previous")  # the switch back goes to blue: the file the killed switch replaced
    assert (back["colour_before"], back["colour_after"]) == ("green", "blue")
    assert back["settled"].startswith("an interrupted switch was finished")
    assert mod.upstream_servers(site["conf"].read_text(), "backend") == COLOURS["blue"]


def test_a_switch_killed_before_it_wrote_the_file_is_dropped(site: dict[str, Any]) -> None:
    switch(site, to="blue")
    state_path = Path(site["params"]["state_dir"]) / "backend.json"
    state = json.loads(state_path.read_text())
    state["pending"] = {"colour": "blue", "servers": COLOURS["blue"], "content": site["conf"].read_text(),
                        "to": "green", "to_servers": COLOURS["green"], "to_content": "upstream backend {}\n"}
    state_path.write_text(json.dumps(state))
    back = switch(site, to="previous")
    assert back["settled"].endswith("was dropped") and back["colour_after"] is None
    assert site["conf"].read_text() == LAB_FILE
    assert "pending" not in json.loads(state_path.read_text())


def test_plan_writes_nothing_and_content_writes_exactly_what_it_planned(site: dict[str, Any]) -> None:
    switch(site, to="blue")
    planned = switch(site, to="previous", plan=True)
    assert planned["changed"] and planned["content"] == LAB_FILE
    assert mod.upstream_servers(site["conf"].read_text(), "backend") == COLOURS["blue"]
    done = switch(site, to="previous", content=planned["content"])
    assert done["changed"] and site["conf"].read_text() == LAB_FILE
    # re-run with the same recorded content: the file is there already, nothing to do (not one switch further back)
    again = switch(site, to="previous", content=planned["content"])
    assert not again["changed"] and site["conf"].read_text() == LAB_FILE
