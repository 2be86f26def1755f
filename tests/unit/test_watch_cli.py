"""`runbook watch RUNBOOK STEP`: a watch step's checks sampled once against a real loopback service through
ansible-playbook (local connection), each value shown against its threshold; exit 0, 1 or 2."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.engine import watch_once
from runner.paths import ROLES_DIR

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "watch" / "watch-once.yml"


class _Service(BaseHTTPRequestHandler):
    failing = False

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = 500 if type(self).failing else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[int, Path, type[_Service]]]:
    handler = type("Service", (_Service,), {"failing": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    web1: {ansible_connection: local, ansible_host: 127.0.0.1, "
        'ansible_python_interpreter: "{{ ansible_playbook_python }}"}\n'
    )
    try:
        yield int(httpd.server_address[1]), inventory, handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def watch(inventory: Path, step: str, port: int, *extra: str) -> int:
    return cli.main(["watch", str(FIXTURE), step, "-i", str(inventory), "-p", "hosts=web1", "-p", f"port={port}",
                     *extra])


def test_a_healthy_check_exits_0_and_shows_its_value_against_the_threshold(
    service: tuple[int, Path, type[_Service]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, inventory, _ = service
    assert watch(inventory, "errors", port) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "error rate" in line)
    assert line.split() == ["web1", "error", "rate", "0", ">", "0", "1m00s", "ok"]
    assert out.splitlines()[0] == "watch step errors: one sample per check, now (for and the window are not applied)"
    assert out.splitlines()[-1] == "ok: no check breaches"


def test_a_breaching_check_exits_1_whatever_its_for(
    service: tuple[int, Path, type[_Service]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, inventory, handler = service
    assert watch(inventory, "latency", port, "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    (check,) = answer["checks"]
    assert answer["breached"] is True and answer["ok"] is False and answer["host_errors"] == {}
    assert (check["host"], check["name"], check["verdict"], check["fail_if"]) == ("web1", "p50 latency", "breached",
                                                                                  "< 1")
    assert 0 <= check["value"] < 1
    handler.failing = True
    assert watch(inventory, "errors", port) == 1
    assert "BREACH" in capsys.readouterr().out


def test_no_answer_is_never_ok(service: tuple[int, Path, type[_Service]], capsys: pytest.CaptureFixture[str]) -> None:
    _, inventory, _ = service
    assert watch(inventory, "latency", 1) == 1  # nothing listens on port 1: no latency, the sample has no value
    out = capsys.readouterr().out
    assert "NO VALUE" in out and out.splitlines()[-1].startswith("not evaluated:")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("nope", "runbook watch-once has no step 'nope' (its watch steps: errors, latency)"),
        ("check", "step 'check' of watch-once uses verify, not watch (its watch steps: errors, latency)"),
    ],
)
def test_a_step_that_is_no_watch_is_invalid_input(
    service: tuple[int, Path, type[_Service]], capsys: pytest.CaptureFixture[str], step: str, message: str
) -> None:
    port, inventory, _ = service
    assert watch(inventory, step, port) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_no_host_matching_is_invalid_input(
    service: tuple[int, Path, type[_Service]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, inventory, _ = service
    assert cli.main(["watch", str(FIXTURE), "errors", "-i", str(inventory), "-p", f"port={port}"]) == 2
    assert "no host in" in capsys.readouterr().err


def test_the_play_passes_the_step_options_over_the_role_defaults() -> None:
    from runner.language.loader import load_runbook

    runbook = load_runbook(FIXTURE, [ROLES_DIR])
    step = watch_once.watch_step(runbook, "errors")
    variables = watch_once.role_vars(step, [ROLES_DIR])
    assert variables["watch_window"] == "2m" and variables["watch_on_no_data"] == "inconclusive"
    assert variables["watch_delegate"] == "control" and variables["watch_checks"][0]["for"] == "1m"
    text = watch_once.playbook(step, [ROLES_DIR])
    assert "once: true" in text and "runbook.ops.watch_window" in text and "hosts: '{{ params.hosts }}'" in text
