"""Configuration snapshot and rollback, and the emergency rollback (seed 002 §4 and §6), on the lab's lb: checked
from outside - the nginx files on lb, nginx's worker processes, the Redis keys on db, and what the service answers
through the lb."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from labtools import host_sh, latest_report, lb_status, run, step_outputs

from runner import lab as lab_module

pytestmark = pytest.mark.lab

SITE = "/etc/nginx/conf.d/runbook-lab.conf"
UPSTREAM = "/etc/nginx/conf.d/upstream-backend.conf"
DEAD_PROXY = "127.0.10.99:9"  # nothing listens there: a bad change that nginx accepts
sh = host_sh


def bad_change() -> None:
    """What a broken deploy of the lb's configuration does: proxy to a dead address, reloaded."""
    sh("lb", f"sed -i 's#proxy_pass http://backend;#proxy_pass http://{DEAD_PROXY};#' {SITE} && nginx -s reload")
    for _ in range(50):
        if lb_status() == 502:
            return
        time.sleep(0.1)
    raise AssertionError("the bad change did not take effect")


def workers() -> str:
    return sh("lb", "pgrep -f '^nginx: worker' | sort")


@pytest.fixture
def clean_lab(lab: object) -> object:
    lab_module.reset(progress=lambda line: None)
    return lab


def test_config_snapshot_then_rollback_validated_before_activation(clean_lab: object, tmp_path: Path) -> None:
    good_site = sh("lb", f"cat {SITE}")
    taken = run(tmp_path, "config-snapshot")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    snap = step_outputs(tmp_path, "snapshot")
    assert snap["good"] is True and snap["version"]
    manifest = json.loads(sh("lb", f"cat /var/lib/runbook/config/nginx-site/{snap['version']}/manifest.json"))
    assert [f["path"] for f in manifest["files"]] == [SITE]

    bad_change()
    rolled = run(tmp_path, "config-rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert sh("lb", f"cat {SITE}") == good_site
    assert lb_status() == 200
    restored = step_outputs(tmp_path, "restore")
    assert restored["config_after"] == snap["version"] and restored["safety_snapshot"] == restored["config_before"]
    assert DEAD_PROXY in sh("lb", f"cat /var/lib/runbook/config/nginx-site/{restored['config_before']}/files{SITE}")

    again = run(tmp_path, "config-rollback")
    assert again.returncode == 0 and step_outputs(tmp_path, "restore")["changed"] is False

    # nginx -t rejects the configuration as a whole: nothing is activated, the files stay as they were
    bad_change()
    broken_site, running = sh("lb", f"cat {SITE}"), workers()
    sh("lb", "echo 'not nginx configuration' > /etc/nginx/conf.d/zz-broken.conf")
    try:
        refused = run(tmp_path, "config-rollback")
    finally:
        sh("lb", "rm -f /etc/nginx/conf.d/zz-broken.conf")
    assert refused.returncode == 3, refused.stdout + refused.stderr  # not restored: the lb still proxies nowhere
    step = next(s for s in latest_report(tmp_path)["steps"] if s["id"] == "restore")
    assert step["status"] == "failed" and "rejects snapshot" in step["message"], step
    assert sh("lb", f"cat {SITE}") == broken_site and workers() == running

    fixed = run(tmp_path, "config-rollback")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert lb_status() == 200


def test_emergency_rollback_within_two_minutes(clean_lab: object, tmp_path: Path) -> None:
    assert run(tmp_path, "config-snapshot").returncode == 0
    assert run(tmp_path, "blue-green-rollback", "-p", "to=green").returncode == 0
    bad_change()
    script = "".join(f"SET page:{i} stale\n" for i in range(300))
    sh("db", "redis-cli -h 127.0.10.21 -n 0 >/dev/null", stdin=script)
    assert sh("db", "redis-cli -h 127.0.10.21 -n 0 DBSIZE").strip() == "300"

    result = run(tmp_path, "emergency-rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    data = latest_report(tmp_path)
    assert data["status"] == "succeeded" and data["budget_s"] == 120 and data["budget_met"] is True
    assert data["duration_s"] < 120
    assert data["hosts"]["lb"] == {"version_before": "green", "version_after": "blue"}
    upstream = sh("lb", f"cat {UPSTREAM}")
    assert "127.0.10.11:8080" in upstream and "127.0.10.12:8080" not in upstream
    assert DEAD_PROXY not in sh("lb", f"cat {SITE}")
    assert sh("db", "redis-cli -h 127.0.10.21 -n 0 DBSIZE").strip() == "0"
    assert lb_status() == 200


ROOT_ONLY = "/root/runbook-lab-secret"  # a file only root may read or write: what a planted link points at


def root_only_file() -> str:
    """Make the root-only file on lb; its mode and checksum, to compare after the run."""
    sh("lb", f"printf 'root:only-root-reads-this\\n' > {ROOT_ONLY} && chmod 0600 {ROOT_ONLY}")
    return sh("lb", f"stat -c %a {ROOT_ONLY} && sha256sum {ROOT_ONLY}")


def test_config_rollback_refuses_a_planted_symlink(clean_lab: object, tmp_path: Path) -> None:
    assert run(tmp_path, "config-snapshot").returncode == 0
    good_site, secret = sh("lb", f"cat {SITE}"), root_only_file()
    bad_change()
    # the fixed temporary name the writer used to open with O_TRUNC, planted as a link: the writer now makes its
    # temporary file under a random name with O_EXCL|O_NOFOLLOW, so the link is never opened and the real file is
    # written
    sh("lb", f"ln -s {ROOT_ONLY} {SITE}.tmp")
    try:
        rolled = run(tmp_path, "config-rollback")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert sh("lb", f"cat {SITE}") == good_site and lb_status() == 200
        assert sh("lb", f"stat -c %a {ROOT_ONLY} && sha256sum {ROOT_ONLY}") == secret
        assert sh("lb", f"stat -c %F {SITE} {SITE}.tmp").splitlines() == ["regular file", "symbolic link"]
    finally:
        sh("lb", f"rm -f {SITE}.tmp")

    # the live file itself a link to the root-only file: refused before anything is written, the run says why
    bad_change()
    broken_site, running = sh("lb", f"cat {SITE}"), workers()
    sh("lb", f"cp {SITE} {ROOT_ONLY} && chmod 0600 {ROOT_ONLY} && ln -sf {ROOT_ONLY} {SITE}")
    secret = sh("lb", f"stat -c %a {ROOT_ONLY} && sha256sum {ROOT_ONLY}")
    try:
        refused = run(tmp_path, "config-rollback")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        step = next(s for s in latest_report(tmp_path)["steps"] if s["id"] == "restore")
        assert step["status"] == "failed", step
        assert f"refusing to write {SITE}: it is a symlink" in step["message"], step["message"]
        assert sh("lb", f"stat -c %a {ROOT_ONLY} && sha256sum {ROOT_ONLY}") == secret
        assert sh("lb", f"cat {SITE}") == broken_site and workers() == running
    finally:
        sh("lb", f"rm -f {SITE} && cp {ROOT_ONLY} {SITE} && chmod 0644 {SITE}")
