"""The lab itself: real hosts, real engines, real database (no mocks)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import psycopg
import pytest

from runner import lab as lab_driver

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
ANSIBLE = Path(sys.executable).parent / "ansible"


@pytest.fixture(scope="module", autouse=True)
def initial_state(lab: lab_driver.LabStatus) -> lab_driver.LabStatus:
    """Tests that ran before (drills) may have left the lab elsewhere: start these from the initial state."""
    return lab_driver.reset(progress=lambda _line: None)


def ssh_output(host: str, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [*lab_driver.ssh_argv(host), "-o", "ConnectTimeout=10", "--", shlex.join(command)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def counts() -> tuple[int, int]:
    with psycopg.connect(host="127.0.10.21", port=5432, user="lab", password="lab", dbname="shop") as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        wallet = conn.execute("SELECT count(*) FROM wallet").fetchone()
    assert orders is not None and wallet is not None
    return int(orders[0]), int(wallet[0])


def test_status_reports_every_host(lab: lab_driver.LabStatus) -> None:
    assert lab.daemon_running and lab.image_built
    assert [h.name for h in lab.hosts] == list(lab_driver.LAB_HOSTS)
    for host in lab.hosts:
        assert host.address == lab_driver.LAB_HOSTS[host.name]
        assert host.container == "running", host
        assert host.ssh_ok, host
    assert lab.ssh_key == Path("/var/lib/runbook-lab/ssh/id_ed25519") or "RUNBOOK_LAB_DIR" in os.environ
    assert lab.ssh_key.exists()


@pytest.mark.parametrize("host", list(lab_driver.LAB_HOSTS))
def test_ssh_reaches_every_host(lab: lab_driver.LabStatus, host: str) -> None:
    result = ssh_output(host, "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == host
    assert lab_driver.ssh(host, ["true"]) == 0
    assert lab_driver.ssh(host, ["false"]) == 1


def test_each_host_listens_only_on_its_own_address(lab: lab_driver.LabStatus) -> None:
    result = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True)
    listening = {line.split()[3] for line in result.stdout.splitlines() if line.strip()}
    for addr in lab_driver.LAB_HOSTS.values():
        assert f"{addr}:2222" in listening
    assert "127.0.10.21:5432" in listening
    assert "127.0.10.41:8080" in listening
    for port in (2222, 5432, 8080):
        assert f"0.0.0.0:{port}" not in listening
        assert f"*:{port}" not in listening


@pytest.mark.parametrize("host", lab_driver.APP_HOSTS)
def test_app_host_has_its_own_engine(lab: lab_driver.LabStatus, host: str) -> None:
    client = docker.DockerClient(base_url=lab_driver.docker_host(host))
    try:
        containers = client.containers.list(all=True)
        assert [c.name for c in containers] == ["backend"]
        backend = containers[0]
        assert backend.image.tags == ["lab/backend:v1"]
        assert backend.attrs["HostConfig"]["NetworkMode"] == "host"
        assert backend.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        env = backend.attrs["Config"]["Env"]
        assert f"APP_LISTEN={lab_driver.LAB_HOSTS[host]}:8080" in env
        assert "APP_ENV=lab" in env
        assert backend.labels.get("runbook.lab") == "1"
        tags = {t for image in client.images.list() for t in image.tags}
        assert {"lab/backend:v1", "lab/backend:v2"} <= tags
    finally:
        client.close()
    # the same engine from inside the host, through the mounted socket
    result = ssh_output(host, "docker", "ps", "--format", "{{.Names}} {{.Image}}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0].strip() == "backend lab/backend:v1"
    assert len(result.stdout.strip().splitlines()) == 1
    ledger = ssh_output(host, "test", "-d", "/var/lib/runbook/releases")
    assert ledger.returncode == 0


@pytest.mark.parametrize("host", lab_driver.APP_HOSTS)
def test_app_answers_v1(lab: lab_driver.LabStatus, host: str) -> None:
    addr = lab_driver.LAB_HOSTS[host]
    status, body = http_get(f"http://{addr}:8080/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "version": "v1"}
    status, body = http_get(f"http://{addr}:8080/version")
    assert (status, body.strip()) == (200, "v1")


def test_v2_is_unhealthy_and_version_is_baked_into_the_image(lab: lab_driver.LabStatus) -> None:
    client = docker.DockerClient(base_url=lab_driver.docker_host("app2"))
    name = "lab-test-v2"
    try:
        image = client.images.get("lab/backend:v2")
        assert not any(e.startswith("APP_VERSION") for e in image.attrs["Config"].get("Env") or [])
        container = client.containers.run(
            "lab/backend:v2",
            name=name,
            detach=True,
            network_mode="host",
            environment={"APP_LISTEN": "127.0.10.12:18089"},
        )
        deadline = time.monotonic() + 20
        status, body = 0, ""
        while time.monotonic() < deadline:
            try:
                status, body = http_get("http://127.0.10.12:18089/health")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 500
        assert json.loads(body) == {"status": "error", "version": "v2"}
        container.remove(force=True)
    finally:
        for c in client.containers.list(all=True, filters={"name": name}):
            c.remove(force=True)
        client.close()


def test_lb_proxies_to_the_app_hosts(lab: lab_driver.LabStatus) -> None:
    status, body = http_get("http://127.0.10.41:8080/health")
    assert status == 200
    assert json.loads(body)["version"] == "v1"


def test_psql_from_the_machine_counts_rows(lab: lab_driver.LabStatus) -> None:
    env = {**os.environ, "PGHOST": "127.0.10.21", "PGUSER": "lab", "PGPASSWORD": "lab"}
    result = subprocess.run(
        ["psql", "-tA", "shop", "-c", "SELECT (SELECT count(*) FROM orders) || ' ' || (SELECT count(*) FROM wallet)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1000 100"


def test_ansible_pings_every_host(lab: lab_driver.LabStatus) -> None:
    result = subprocess.run(
        [str(ANSIBLE), "-i", str(INVENTORY), "all", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in lab_driver.LAB_HOSTS:
        assert f"{host} | SUCCESS" in result.stdout


def test_up_again_is_fast_and_changes_nothing(lab: lab_driver.LabStatus) -> None:
    def snapshot() -> dict[str, str]:
        ids: dict[str, str] = {}
        main = docker.DockerClient(base_url=lab_driver.main_docker_host())
        for c in main.containers.list(all=True, filters={"label": "runbook.lab"}):
            ids[c.name] = c.id
        main.close()
        for host in lab_driver.APP_HOSTS:
            client = docker.DockerClient(base_url=lab_driver.docker_host(host))
            for c in client.containers.list(all=True):
                ids[f"{host}/{c.name}"] = c.id
            client.close()
        return ids

    before = snapshot()
    lines: list[str] = []
    start = time.monotonic()
    status = lab_driver.up(progress=lines.append)
    elapsed = time.monotonic() - start
    assert elapsed < 60, f"second up took {elapsed:.1f} s: {lines}"
    assert snapshot() == before
    assert all(h.container == "running" and h.ssh_ok for h in status.hosts)
    assert counts() == (1000, 100)


def test_reset_restores_the_initial_state(lab: lab_driver.LabStatus) -> None:
    with psycopg.connect(host="127.0.10.21", user="lab", password="lab", dbname="shop", autocommit=True) as conn:
        conn.execute("DELETE FROM orders")
    assert counts() == (0, 100)
    assert ssh_output("app1", "touch", "/var/lib/runbook/releases/drill-marker").returncode == 0
    client = docker.DockerClient(base_url=lab_driver.docker_host("app1"))
    try:
        client.containers.get("backend").remove(force=True)
        client.containers.run(
            "lab/backend:v2",
            name="backend",
            detach=True,
            network_mode="host",
            environment={"APP_LISTEN": "127.0.10.11:8080", "APP_ENV": "lab"},
        )
    finally:
        client.close()

    start = time.monotonic()
    status = lab_driver.reset(progress=lambda _line: None)
    elapsed = time.monotonic() - start

    assert all(h.container == "running" and h.ssh_ok for h in status.hosts)
    assert counts() == (1000, 100)
    assert ssh_output("app1", "ls", "-A", "/var/lib/runbook/releases").stdout.strip() == ""
    for host in lab_driver.APP_HOSTS:
        code, body = http_get(f"http://{lab_driver.LAB_HOSTS[host]}:8080/health")
        assert (code, json.loads(body)["version"]) == (200, "v1")
    assert elapsed < 45, f"reset took {elapsed:.1f} s"


@pytest.mark.skipif(
    os.environ.get("RUNBOOK_LAB_TEST_DOWN") != "1",
    reason="takes the shared lab down and up again; set RUNBOOK_LAB_TEST_DOWN=1",
)
def test_down_leaves_nothing_and_up_comes_back(lab: lab_driver.LabStatus) -> None:
    lab_driver.down(progress=lambda _line: None)

    assert not Path("/run/runbook-lab").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "/run/runbook-lab" not in mounts
    assert "/var/lib/runbook-lab/engines" not in mounts
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "runbook-lab" not in ps
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    assert "127.0.10." not in listening
    status = lab_driver.status()
    assert not status.daemon_running
    assert all(h.container == "absent" and not h.ssh_ok for h in status.hosts)

    start = time.monotonic()
    status = lab_driver.up(progress=lambda _line: None)
    elapsed = time.monotonic() - start
    assert all(h.container == "running" and h.ssh_ok for h in status.hosts)
    assert elapsed < 120, f"up after down took {elapsed:.1f} s (the image must come from the cache)"
    assert counts() == (1000, 100)
