"""The foundation scenario, end to end in the lab, checked from outside the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import lab as lab_module

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
RUNBOOK = Path(sys.executable).parent / "runbook"
APP_HOSTS = {"app1": "127.0.10.11", "app2": "127.0.10.12"}


def health(address: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://{address}:8080/health", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def backend(host: str) -> dict[str, Any]:
    client = docker.DockerClient(base_url=lab_module.docker_host(host))
    try:
        attrs: dict[str, Any] = client.api.inspect_container("backend")
        return attrs
    finally:
        client.close()


def run_spec(attrs: dict[str, Any]) -> dict[str, Any]:
    host_config = attrs["HostConfig"]
    return {
        "env": sorted(e for e in attrs["Config"]["Env"] if e.startswith(("APP_", "TZ"))),
        "labels": {k: v for k, v in (attrs["Config"].get("Labels") or {}).items() if k.startswith("runbook.")},
        "restart": host_config["RestartPolicy"]["Name"],
        "network": host_config["NetworkMode"],
        "ports": host_config.get("PortBindings"),
        "healthcheck": attrs["Config"].get("Healthcheck"),
    }


def runbook(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOK_STATE_DIR": str(state)}
    return subprocess.run([str(RUNBOOK), *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def latest_report(state: Path) -> dict[str, Any]:
    reports = sorted((state / "runs").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    data: dict[str, Any] = json.loads(reports[-1].read_text())
    return data


@pytest.fixture
def clean_lab(lab: object) -> object:
    lab_module.reset(progress=lambda line: None)
    return lab


def test_failed_deploy_rolls_back_both_hosts_to_v1(clean_lab: object, tmp_path: Path) -> None:
    specs_before = {host: run_spec(backend(host)) for host in APP_HOSTS}

    first = runbook("run", "runbooks/deploy.yml", "-i", str(INVENTORY), "-p", "version=v1", state=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    for address in APP_HOSTS.values():
        assert health(address) == (200, {"status": "ok", "version": "v1"})

    second = runbook("run", "runbooks/deploy.yml", "-i", str(INVENTORY), "-p", "version=v2", state=tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "report: " in second.stdout

    for host, address in APP_HOSTS.items():
        assert health(address) == (200, {"status": "ok", "version": "v1"}), host
        attrs = backend(host)
        assert attrs["Config"]["Image"].endswith(":v1")
        assert attrs["State"]["Running"]
        assert run_spec(attrs) == specs_before[host], host

    report = latest_report(tmp_path)
    assert report["status"] == "rolled_back"
    assert report["on_failure"]["ran"] and report["on_failure"]["verified"]
    # serial: 1 and wait_healthy — the broken release reached the first host only, which was then rolled back
    for host, versions in report["hosts"].items():
        assert str(versions["version_after"]).endswith(":v1"), (host, versions)
    rollback_steps = {(s["id"], s["host"]): s["status"] for s in report["steps"] if s["phase"] == "on_failure"}
    assert rollback_steps[("verify-rollback", "app1")] == "succeeded"
    assert rollback_steps[("verify-rollback", "app2")] == "succeeded"
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    assert [(s["id"], s["host"]) for s in failed] == [("deploy", "app1")]
    assert not any(s["id"] == "deploy" and s["host"] == "app2" for s in report["steps"])
    assert (Path(report["inventory"]) == INVENTORY) or report["inventory"].endswith("hosts.yml")
    md = next((tmp_path / "runs").glob(f"{report['run_id']}/report.md")).read_text()
    assert "rolled_back" in md.lower() or "ROLLED_BACK" in md


def test_previous_without_an_earlier_release_changes_nothing(clean_lab: object, tmp_path: Path) -> None:
    ids_before = {host: backend(host)["Id"] for host in APP_HOSTS}
    result = runbook("run", "runbooks/backend-image-rollback.yml", "-i", str(INVENTORY), state=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    report = latest_report(tmp_path)
    assert report["status"] == "failed"
    messages = " ".join(s["message"] for s in report["steps"] if s["status"] == "failed")
    assert "no earlier verified release" in messages
    for host, address in APP_HOSTS.items():
        assert backend(host)["Id"] == ids_before[host]
        assert health(address) == (200, {"status": "ok", "version": "v1"})


def test_a_sev1_rollback_counts_its_time_to_restore_from_the_detection(clean_lab: object, tmp_path: Path) -> None:
    good = runbook("run", "runbooks/deploy.yml", "-i", str(INVENTORY), "-p", "version=v1", state=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    restored = runbook("run", "runbooks/backend-image-rollback.yml", "-i", str(INVENTORY), "-p", "to=lab/backend:v1",
                       "--detected-at", "20m", state=tmp_path)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert health(APP_HOSTS["app1"]) == (200, {"status": "ok", "version": "v1"})
    report = latest_report(tmp_path)
    assert report["status"] == "succeeded"
    assert 1200 <= report["time_to_restore_s"] < 1200 + report["duration_s"] + 5
    assert report["severity_target_met"] is False  # SEV1: 15 minutes from the detection, not from the run's start
    assert "time to restore 20m" in (tmp_path / "runs" / report["run_id"] / "report.md").read_text()

    again = runbook("run", "runbooks/backend-image-rollback.yml", "-i", str(INVENTORY), "-p", "to=lab/backend:v1",
                    state=tmp_path)  # no detection given: a rollback runbook's clock starts with it
    assert again.returncode == 0, again.stdout + again.stderr
    report = latest_report(tmp_path)
    assert report["failure_detected"] == report["started"] and report["severity_target_met"] is True
    assert abs(report["time_to_restore_s"] - report["duration_s"]) < 2

    shown = runbook("metrics", "--format", "json", state=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rollback = json.loads(shown.stdout)["runbooks"]["backend-image-rollback"]
    assert (rollback["restores"], rollback["restores_within_target"]) == (2, 1)
    assert rollback["mttr_s"] >= 600  # the mean of about 20m and the second run's own duration
    bad = runbook("run", "runbooks/backend-image-rollback.yml", "-i", str(INVENTORY), "--detected-at", "tomorrow",
                  state=tmp_path)
    assert bad.returncode == 2 and "error: --detected-at 'tomorrow' is neither" in bad.stderr
