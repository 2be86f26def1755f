"""Run control against the lab: locks, hostile params over SSH, check mode, notifications, history."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import docker
import pytest

from runner import lab as lab_module

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
FIXTURE_ROLES = ROOT / "tests" / "fixtures" / "roles"
HOSTILE = "{{ lookup('pipe','touch /tmp/pwned') }} $(touch /tmp/pwned2) `id` ; rm -rf /tmp/x 'quote\" \\ ünï"


def cli(*args: str, state: Path, background: bool = False) -> Any:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state), "RUNBOOK_ROLES_PATH": str(FIXTURE_ROLES)}
    command = [sys.executable, "-m", "runner.cli", *args]
    if background:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def write_runbook(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{body}")
    return path


def container_id(host: str) -> str:
    client = docker.DockerClient(base_url=lab_module.docker_host(host))
    try:
        return str(client.api.inspect_container("backend")["Id"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def lab_v1(lab: object) -> object:
    lab_module.reset(progress=lambda line: None)
    return lab


def test_hostile_param_arrives_byte_for_byte_over_ssh(lab_v1: object, tmp_path: Path) -> None:
    runbook = write_runbook(tmp_path, "hostile", """  params:
    value: {type: string}
  steps:
    - {id: write, hosts: app1, uses: fixture_step, with: {write: "{{ params.value }}", file: /tmp/runbook-value}}
""")
    result = cli("run", str(runbook), "-i", str(INVENTORY), "-p", f"value={HOSTILE}", state=tmp_path / "state")
    assert result.returncode == 0, result.stdout + result.stderr
    out = subprocess.run(
        [*lab_module.ssh_argv("app1"), "cat /tmp/runbook-value; ls /tmp/pwned /tmp/pwned2 2>&1 || true"],
        capture_output=True, timeout=60, check=False,
    ).stdout
    assert out.startswith(HOSTILE.encode())
    assert b"No such file" in out and out.count(b"No such file") == 2  # neither payload ran


def test_second_run_on_a_held_host_exits_4_naming_the_holder(lab_v1: object, tmp_path: Path) -> None:
    slow = write_runbook(tmp_path, "slow-hold", """  steps:
    - {id: hold, hosts: app, uses: fixture_step, with: {sleep: 25}}
""")
    other = write_runbook(tmp_path, "other", """  steps:
    - {id: touch, hosts: app2, uses: fixture_step, with: {}}
""")
    first = cli("run", str(slow), "-i", str(INVENTORY), "--json", state=tmp_path / "a", background=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = first.stdout.readline()
            if '"event": "segment_start"' in line:
                break
        second = cli("run", str(other), "-i", str(INVENTORY), state=tmp_path / "b")
        assert second.returncode == 4, second.stdout + second.stderr
        assert "held" in second.stderr and "slow-hold-" in second.stderr
        report = json.loads(next((tmp_path / "b" / "runs").glob("*/report.json")).read_text())
        assert report["lock"]["held_by"]["app2"]["run_id"].startswith("slow-hold-")
        assert report["steps"] == []
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0
    third = cli("run", str(other), "-i", str(INVENTORY), state=tmp_path / "c")
    assert third.returncode == 0, third.stderr  # released at the end of the first run


def test_check_mode_changes_nothing(lab_v1: object, tmp_path: Path) -> None:
    before = {h: container_id(h) for h in ("app1", "app2")}
    result = cli("run", "runbooks/deploy.yml", "-i", str(INVENTORY), "-p", "version=v2", "--check",
                 state=tmp_path / "state")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h: container_id(h) for h in ("app1", "app2")} == before
    report = json.loads(next((tmp_path / "state" / "runs").glob("*/report.json")).read_text())
    assert report["check_mode"] is True


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_rolled_back_deploy_notifies_and_is_in_history_and_metrics(lab_v1: object, tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runbook = ROOT / "runbooks" / "deploy.yml"  # its own notify: the webhook from a param, the email left off
    hook = f"notify_webhook=http://127.0.0.1:{server.server_address[1]}/hook"
    state = tmp_path / "state"
    assert cli("run", str(runbook), "-i", str(INVENTORY), "-p", "version=v1", "-p", hook, state=state).returncode == 0
    result = cli("run", str(runbook), "-i", str(INVENTORY), "-p", "version=v2", "-p", hook, state=state)
    server.shutdown()
    assert result.returncode == 1, result.stdout + result.stderr
    texts = [json.dumps(body) for body in _Hook.received]
    assert len(texts) == 2 and "rolled_back" in texts[1].lower().replace(" ", "_")
    history = cli("history", "--json", state=state)
    rows = json.loads(history.stdout)
    assert [r["status"] for r in rows][:2] in (["rolled_back", "succeeded"], ["succeeded", "rolled_back"])
    metrics = cli("metrics", "--format", "prometheus", state=state).stdout
    assert 'runbook_runs_total{runbook="deploy",status="rolled_back"} 1' in metrics
    assert "runbook_mttr_seconds" in metrics
