"""Interrupting, killing and resuming runs, and the secret canary.

Each test runs twice: on localhost (connection: local, no lab needed) and on the lab's app hosts over SSH.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RUNBOOK = [sys.executable, "-m", "runner.cli"]
CANARY = "CANARY-7d1e-secret-value"
ROLE_CANARY = "ROLECANARY-55aa"

SLOW = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: slow}
spec:
  params:
    sleep: {type: integer, default: 30}
    out: {type: string}
  steps:
    - {id: first, hosts: app, uses: fixture_step, with: {version_after: one}}
    - {id: slow, hosts: app, uses: fixture_step, with: {sleep: "{{ params.sleep }}"}}
    - id: last
      hosts: app
      uses: fixture_step
      with: {write: "{{ steps.first.version_after }}", file: "{{ params.out }}-{{ inventory_hostname }}"}
"""


class Target:
    """Where the runbook acts: files it writes are read back on that host."""

    def __init__(self, name: str, inventory: Path, hosts: tuple[str, str], workdir: str) -> None:
        self.name, self.inventory, self.hosts, self.workdir = name, inventory, hosts, workdir

    def read(self, path: str) -> bytes | None:
        if self.name == "local":
            return Path(path).read_bytes() if Path(path).exists() else None
        from runner import lab

        proc = subprocess.run([*lab.ssh_argv(self.hosts[0]), f"cat {path}"], capture_output=True, timeout=60,
                              check=False)
        return proc.stdout if proc.returncode == 0 else None


@pytest.fixture(params=["local", "lab"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return Target("local", FIXTURES / "local-inventory.yml", ("local1", "local2"), str(tmp_path))
    request.getfixturevalue("lab")
    return Target("lab", ROOT / "inventories" / "lab" / "hosts.yml", ("app1", "app2"),
                  f"/tmp/runbook-test-{tmp_path.name}")


def start(args: list[str], state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state), "RUNBOOK_ROLES_PATH": str(FIXTURES / "roles")}
    return subprocess.Popen([*RUNBOOK, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_event(proc: subprocess.Popen[str], predicate: Any, timeout: float = 120) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if predicate(event):
            return
    raise AssertionError("event not seen")


def slow_run(tmp_path: Path, target: Target) -> tuple[Path, list[str]]:
    path = tmp_path / "slow.yml"
    path.write_text(SLOW)
    args = ["run", str(path), "-i", str(target.inventory), "-p", f"out={target.workdir}-out", "--json"]
    return path, args


def test_sigterm_stops_and_still_writes_an_interrupted_report(tmp_path: Path, target: Target) -> None:
    _, args = slow_run(tmp_path, target)
    proc = start(args, tmp_path / "state")
    wait_for_event(proc, lambda e: e.get("event") == "task_start" and e.get("step") == "slow"
                   and "Take some time" in e.get("task", ""))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    report = json.loads(next((tmp_path / "state" / "runs").glob("*/report.json")).read_text())
    assert report["status"] == "interrupted"
    assert target.read(f"{target.workdir}-out-{target.hosts[0]}") is None  # the last step never ran
    lease = target.read("/var/lib/runbook/locks/host.json")
    assert lease is None or json.loads(lease).get("run_id") != report["run_id"]  # released


def test_control_node_killed_then_resumed(tmp_path: Path, target: Target) -> None:
    _, args = slow_run(tmp_path, target)
    proc = start(args, tmp_path / "state")
    wait_for_event(proc, lambda e: e.get("event") == "step_result" and e.get("step_id") == "first")
    time.sleep(1)
    proc.kill()
    proc.wait(timeout=30)
    run_dir = next((tmp_path / "state" / "runs").iterdir())
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert {r["host"] for r in journal if r["kind"] == "step_result" and r["step_id"] == "first"} == set(
        target.hosts)
    resumed = start(["resume", run_dir.name, "-p", "sleep=0"], tmp_path / "state")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out + err
    # the output recorded before the kill was reused
    assert target.read(f"{target.workdir}-out-{target.hosts[0]}") == b"one"


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    paths: ClassVar[list[str]] = []  # the URL may carry a secret by the author's choice; bodies may not

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        _Receiver.paths.append(self.path)
        _Receiver.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def test_secret_canary_appears_nowhere(tmp_path: Path, target: Target) -> None:
    _Receiver.bodies.clear()
    _Receiver.paths.clear()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    runbook = tmp_path / "secret.yml"
    runbook.write_text(f"""apiVersion: runbook/v1
kind: Runbook
metadata: {{name: secret}}
spec:
  params:
    token: {{type: string, secret: true}}
    role_secret: {{type: string, secret: true}}
    out: {{type: string}}
  steps:
    - id: use
      hosts: app
      uses: fixture_step
      with: {{write: "token={{{{ params.token }}}}", file: "{{{{ params.out }}}}-{{{{ inventory_hostname }}}}",
             secret: "{{{{ params.role_secret }}}}"}}
    - {{id: boom, hosts: app, uses: fixture_step, with: {{fail: true}}}}
  notify:
    - {{kind: webhook, url: "http://127.0.0.1:{port}/hook?token={{{{ params.token }}}}", on: [failure]}}
""")
    state = tmp_path / "state"
    proc = start(["run", str(runbook), "-i", str(target.inventory), "-p", f"token={CANARY}",
                  "-p", f"role_secret={ROLE_CANARY}", "-p", f"out={target.workdir}-out"], state)
    out, err = proc.communicate(timeout=300)
    server.shutdown()
    assert proc.returncode == 3, out + err
    written = f"{target.workdir}-out-{target.hosts[0]}"
    assert target.read(written) == f"token={CANARY}".encode()  # the secret did reach the host
    assert target.read(f"{written}.secret") == ROLE_CANARY.encode()
    assert _Receiver.bodies, "the webhook was called"
    assert _Receiver.paths[0] == f"/hook?token={CANARY}"  # the secret was usable where the runbook put it
    rendered = tmp_path / "rendered"
    render = start(["render", str(runbook), "-o", str(rendered), "-p", f"token={CANARY}",
                    "-p", f"role_secret={ROLE_CANARY}", "-p", "out=x"], state)
    render.communicate(timeout=120)
    places: dict[str, bytes] = {"stdout": out.encode(), "stderr": err.encode()}
    places.update({f"webhook{i}": body for i, body in enumerate(_Receiver.bodies)})
    for base in (state, rendered):
        for path in base.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_bytes()
    with sqlite3.connect(state / "history.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    places["history.sqlite3 (dump)"] = dump.encode()
    searched = [p for p in places if "artifacts" in p]
    assert searched, "ansible-runner artifacts were searched"
    assert any(p.endswith("journal.jsonl") for p in places) and any(p.endswith("report.html") for p in places)
    leaks = [name for name, data in places.items() if CANARY.encode() in data or ROLE_CANARY.encode() in data]
    assert leaks == []
