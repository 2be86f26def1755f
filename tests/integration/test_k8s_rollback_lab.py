"""k8s-image-rollback against a real cluster: a deployment moved to a second image is put back on its first.

No Kubernetes cluster can run on this machine (no kubelet, no privileged containers), so this test skips naming
what is missing; the kubectl commands the runbook issues are tested in tests/unit/test_k8s_rollback.py. Where a
cluster exists: RUNBOOK_K8S_DEPLOYMENT names a disposable deployment whose container has the same name,
RUNBOOK_K8S_NAMESPACE its namespace (default `default`), RUNBOOK_K8S_HEALTH_URL a URL of the service that answers
200, and kubectl on PATH reaches the cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner import cli
from runner.paths import RUNBOOKS_DIR

DEPLOYMENT = os.environ.get("RUNBOOK_K8S_DEPLOYMENT", "")
NAMESPACE = os.environ.get("RUNBOOK_K8S_NAMESPACE", "default")
HEALTH_URL = os.environ.get("RUNBOOK_K8S_HEALTH_URL", "")

_MISSING = (
    "no Kubernetes here: kubectl is not installed and no cluster can run on this machine"
    if shutil.which("kubectl") is None
    else "no Kubernetes cluster named: set RUNBOOK_K8S_DEPLOYMENT and RUNBOOK_K8S_HEALTH_URL"
    if not (DEPLOYMENT and HEALTH_URL)
    else ""
)
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)


def _image() -> str:
    doc = json.loads(subprocess.run(["kubectl", "--namespace", NAMESPACE, "get", "deployment", DEPLOYMENT,
                                     "--output=json"], check=True, capture_output=True, text=True).stdout)
    return str(next(c["image"] for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == DEPLOYMENT))


def test_the_previous_revision_runs_again_after_the_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _image()
    second = first.rsplit(":", 1)[0] + ":runbook-drill-absent"  # a release that never becomes ready
    subprocess.run(["kubectl", "--namespace", NAMESPACE, "set", "image", f"deployment/{DEPLOYMENT}",
                    f"{DEPLOYMENT}={second}"], check=True)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text('all:\n  children:\n    k8s:\n      hosts:\n        localhost: {ansible_connection: local, '
                         f'ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}", '
                         f"image_swap_ledger_dir: {tmp_path / 'ledger'}, runbook_lock_dir: {tmp_path / 'locks'}}}\n")
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(["run", str(RUNBOOKS_DIR / "k8s-image-rollback.yml"), "-i", str(inventory),
                     "-p", f"service={DEPLOYMENT}", "-p", f"namespace={NAMESPACE}",
                     "-p", f"health_url={HEALTH_URL}"]) == 0
    assert _image() == first
