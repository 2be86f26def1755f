"""The k8s-image-rollback runbook through ansible-playbook (local connection) against a stand-in kubectl
(tests/fixtures/kubernetes/kubectl: one deployment's revisions in a JSON file): the kubectl commands image_swap's
kubernetes engine issues, in order, and what the deployment runs afterwards. No cluster can run here; the same
runbook against a real one is tests/integration/test_k8s_rollback_lab.py."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.paths import RUNBOOKS_DIR

RUNBOOK = RUNBOOKS_DIR / "k8s-image-rollback.yml"
KUBECTL = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes" / "kubectl"


class _Healthy(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, str]]:
    """(bin dir holding kubectl and its state, inventory, health URL); the deployment `shop` ran v1, now v2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(KUBECTL, bin_dir / "kubectl")
    (bin_dir / "state.json").write_text(json.dumps({"name": "shop", "revisions": ["shop:v1", "shop:v2"]}))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(tmp_path / "state"))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    k8s:\n      hosts:\n        kctl: {ansible_connection: local, ansible_host: 127.0.0.1, "
        f'ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}", '
        f"image_swap_ledger_dir: {tmp_path / 'ledger'}, "
        f"runbook_lock_dir: {tmp_path / 'locks'}}}\n"
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield bin_dir, inventory, f"http://127.0.0.1:{httpd.server_address[1]}/health"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run(inventory: Path, url: str, *params: str) -> int:
    argv = ["run", str(RUNBOOK), "-i", str(inventory), "-p", "service=shop", "-p", f"health_url={url}"]
    for param in params:
        argv += ["-p", param]
    return cli.main(argv)


def _calls(bin_dir: Path) -> list[list[str]]:
    return [json.loads(line) for line in (bin_dir / "calls.jsonl").read_text().splitlines()]


def _revisions(bin_dir: Path) -> list[str]:
    return list(json.loads((bin_dir / "state.json").read_text())["revisions"])


def test_previous_without_a_ledger_is_rollout_undo_then_rollout_status(cluster: tuple[Path, Path, str]) -> None:
    bin_dir, inventory, url = cluster
    assert _run(inventory, url) == 0
    ns = ["--namespace", "production"]
    assert _calls(bin_dir) == [
        [*ns, "get", "deployment", "shop", "--output=json"],
        [*ns, "rollout", "undo", "deployment/shop"],
        [*ns, "rollout", "status", "deployment/shop", "--timeout=120s"],
        [*ns, "get", "deployment", "shop", "--output=json"],
    ]
    assert _revisions(bin_dir)[-1] == "shop:v1"


def test_a_named_tag_is_set_image_in_the_namespace_with_the_kubeconfig(cluster: tuple[Path, Path, str]) -> None:
    bin_dir, inventory, url = cluster
    assert _run(inventory, url, "to=v0", "namespace=shop-prod", "kubeconfig=/etc/kube/ops.conf",
                "rollout_timeout=30") == 0
    opts = ["--kubeconfig", "/etc/kube/ops.conf", "--namespace", "shop-prod"]
    assert _calls(bin_dir)[1:3] == [
        [*opts, "set", "image", "deployment/shop", "shop=shop:v0"],
        [*opts, "rollout", "status", "deployment/shop", "--timeout=30s"],
    ]
    assert _revisions(bin_dir)[-1] == "shop:v0"


def test_a_rollout_that_does_not_complete_is_undone_and_the_step_fails(
    cluster: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir, inventory, url = cluster
    state = json.loads((bin_dir / "state.json").read_text())
    (bin_dir / "state.json").write_text(json.dumps({**state, "broken": "shop:v0"}))
    assert _run(inventory, url, "to=v0") == 3  # failed; the role undid its own rollout
    assert [call[2:4] for call in _calls(bin_dir)[1:]] == [
        ["set", "image"], ["rollout", "status"], ["rollout", "undo"]
    ]
    assert _revisions(bin_dir)[-1] == "shop:v2"  # what ran before the step, not the release that did not roll out
    out = capsys.readouterr().out
    assert "exceeded its progress deadline; rolled back with kubectl rollout undo" in out
