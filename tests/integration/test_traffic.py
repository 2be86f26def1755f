"""Blue/green in the lab (seed 002 §1): the lb's nginx upstream moved between app1 (blue) and app2 (green) by the
shipped runbooks, checked from outside - the upstream file on lb, nginx's worker processes, and what the service
answers through the lb on 127.0.10.41:8080."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from labtools import LB_HEALTH, get_json, host_sh, latest_report, run, step_statuses

from runner import lab as lab_module

pytestmark = pytest.mark.lab

UPSTREAM_FILE = "/etc/nginx/conf.d/upstream-backend.conf"
BLUE, GREEN = "127.0.10.11:8080", "127.0.10.12:8080"


def through_lb(times: int = 20) -> set[tuple[int, str]]:
    """What the service answers through the lb, over `times` requests (the upstream balances between servers)."""
    answers = set()
    for _ in range(times):
        status, body = get_json(LB_HEALTH)
        answers.add((status, str(body.get("version"))))
    return answers


def lb_sh(command: str) -> str:
    return host_sh("lb", command)


def upstream_servers() -> list[str]:
    text = lb_sh(f"cat {UPSTREAM_FILE}")
    return [line.split()[1].rstrip(";") for line in text.splitlines() if line.strip().startswith("server ")]


def nginx_workers() -> str:
    return lb_sh("pgrep -f '^nginx: worker' | sort")


@pytest.fixture
def clean_lab(lab: object) -> object:
    lab_module.reset(progress=lambda line: None)
    return lab


def test_blue_green_switches_deploys_and_switches_back(clean_lab: object, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert sorted(upstream_servers()) == [BLUE, GREEN]  # the lab starts balancing over both

    # a dry run moves nothing
    dry = run(state, "blue-green-rollback", "-p", "to=blue", "--check")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert sorted(upstream_servers()) == [BLUE, GREEN]

    # traffic to blue only
    first = run(state, "blue-green-rollback", "-p", "to=blue")
    assert first.returncode == 0, first.stdout + first.stderr
    assert upstream_servers() == [BLUE]
    assert latest_report(state)["hosts"]["lb"] == {"version_before": None, "version_after": "blue"}

    # a good release on green, checked there, then the traffic
    deploy = run(state, "blue-green-deploy", "-p", "colour=green", "-p", "version=v1")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert upstream_servers() == [GREEN]
    report = latest_report(state)
    assert report["hosts"]["lb"] == {"version_before": "blue", "version_after": "green"}
    assert "main:deploy@app1" not in step_statuses(report) or step_statuses(report)["main:deploy@app1"] == "skipped"
    assert through_lb() == {(200, "v1")}

    # green breaks under traffic (the broken v2 put in place without a health wait): the SEV1 switch back to blue
    breaker = tmp_path / "break-green.yml"
    breaker.write_text(
        textwrap.dedent(
            """\
            apiVersion: runbook/v1
            kind: Runbook
            metadata: {name: break-green}
            spec:
              steps:
                - {id: swap, hosts: app2, uses: image_swap, with: {container: backend, to: v2, wait_healthy: 0}}
            """
        )
    )
    assert run(state, str(breaker)).returncode == 0
    assert through_lb() == {(500, "v2")}
    rollback = run(state, "blue-green-rollback", "-p", "to=blue")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert upstream_servers() == [BLUE]
    assert through_lb() == {(200, "v1")}
    blue_file = lb_sh(f"cat {UPSTREAM_FILE}")

    # sending the traffic to the broken colour fails its check through the lb: switched back to the very same file
    wrong = run(state, "blue-green-rollback", "-p", "to=green")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    report = latest_report(state)
    assert report["status"] == "rolled_back"
    steps = step_statuses(report)
    assert steps["main:switch@lb"] == "succeeded" and steps["main:verify@lb"] == "failed"
    assert steps["on_failure:switch-back@lb"] == "succeeded" and steps["on_failure:verify-after@lb"] == "succeeded"
    assert lb_sh(f"cat {UPSTREAM_FILE}") == blue_file
    assert through_lb() == {(200, "v1")}

    # a blue/green deploy whose release fails on the idle colour never moves the traffic
    failed = run(state, "blue-green-deploy", "-p", "colour=green", "-p", "version=v2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    steps = step_statuses(latest_report(state))
    assert steps["main:verify-idle@app2"] == "failed"
    assert steps.get("on_failure:switch-back@lb") in (None, "skipped")
    assert lb_sh(f"cat {UPSTREAM_FILE}") == blue_file
    assert through_lb() == {(200, "v1")}


def test_a_configuration_nginx_rejects_moves_no_traffic(clean_lab: object, tmp_path: Path) -> None:
    state = tmp_path / "state"
    before, workers = lb_sh(f"cat {UPSTREAM_FILE}"), nginx_workers()
    lb_sh("echo 'this is not nginx configuration' > /etc/nginx/conf.d/zz-broken.conf")
    try:
        result = run(state, "blue-green-rollback", "-p", "to=green")
    finally:
        lb_sh("rm -f /etc/nginx/conf.d/zz-broken.conf")
    assert result.returncode == 1, result.stdout + result.stderr  # failed, and the service verified as it was
    report = latest_report(state)
    switch = next(s for s in report["steps"] if s["id"] == "switch")
    assert switch["status"] == "failed"
    assert "rejects the new configuration" in switch["message"], switch["message"]
    assert lb_sh(f"cat {UPSTREAM_FILE}") == before
    assert nginx_workers() == workers  # never reloaded
    assert through_lb() == {(200, "v1")}


def test_a_planted_link_at_the_switch_state_file_moves_no_traffic(clean_lab: object, tmp_path: Path) -> None:
    state, secret_file = tmp_path / "state", "/root/runbook-lab-secret"
    lb_sh(f"printf 'root:only-root-reads-this\\n' > {secret_file} && chmod 0600 {secret_file}")
    secret = lb_sh(f"stat -c %a {secret_file} && sha256sum {secret_file}")
    before, workers = lb_sh(f"cat {UPSTREAM_FILE}"), nginx_workers()
    lb_sh(f"mkdir -p /var/lib/runbook/traffic && ln -s {secret_file} /var/lib/runbook/traffic/backend.json")
    try:
        result = run(state, "blue-green-rollback", "-p", "to=blue")
    finally:
        lb_sh("rm -f /var/lib/runbook/traffic/backend.json")
    assert result.returncode == 1, result.stdout + result.stderr  # failed, and the service verified as it was
    switch = next(s for s in latest_report(state)["steps"] if s["id"] == "switch")
    assert switch["status"] == "failed"
    assert "refusing to write /var/lib/runbook/traffic/backend.json: it is a symlink" in switch["message"], switch
    assert lb_sh(f"stat -c %a {secret_file} && sha256sum {secret_file}") == secret
    assert lb_sh(f"cat {UPSTREAM_FILE}") == before
    assert nginx_workers() == workers  # never reloaded
