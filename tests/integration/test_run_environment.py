"""Nothing of the operator's environment reaches Ansible or stays in the run directory (local connection, no lab).

ansible-runner seeds the environment of ansible-playbook with the caller's and writes it to
artifacts/<ident>/command; the runner passes only what Ansible needs and removes what ansible-runner leaves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.engine.runflow import RunOptions

CANARIES = {
    "RUNBOOK_SMTP_PASSWORD": "CANARY-smtp-5e1d",
    "PGPASSWORD": "CANARY-pg-77aa",
    "AWS_SECRET_ACCESS_KEY": "CANARY-aws-03b9",
}

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: environment}
spec:
  params:
    out: {type: string}
  steps:
    - id: look
      hosts: local1
      uses: fixture_step
      with:
        write: >-
          {{ lookup('env', 'PGPASSWORD') }}|{{ lookup('env', 'RUNBOOK_SMTP_PASSWORD') }}|{{ lookup('env', 'HOME') }}
        file: "{{ params.out }}"
    - {id: again, hosts: app, uses: fixture_step, with: {fail: true}}
  on_failure:
    - {id: check, hosts: app, uses: fixture_step, with: {healthy: true}}
"""


def leaked(state: Path) -> list[str]:
    found = []
    for path in state.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(state)}: {name}" for name, v in CANARIES.items() if v.encode() in data]
    return found


def test_the_operators_environment_never_reaches_ansible_nor_the_run_directory(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    state = tmp_path / "state"
    during: list[str] = []

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "step_result":  # ansible-playbook is running: what it was given is on disk now, if anywhere
            during.extend(leaked(state))

    path = tmp_path / "environment.yml"
    path.write_text(RUNBOOK)
    runbook = api.load(path, roles_paths)
    params = api.resolve_params(runbook, [f"out={tmp_path}/seen"])
    options = RunOptions(
        inventory=fixtures / "local-inventory.yml", roles_paths=roles_paths, state_dir=state, progress=progress
    )
    result = api.run(runbook, params, options)
    assert result.status in ("rolled_back", "failed"), result.message
    assert during == []
    assert leaked(state) == []
    assert (tmp_path / "seen").read_text() == f"||{os.environ['HOME']}"  # Ansible had HOME, not the passwords
    private = result.run_dir / "ansible"
    assert list(private.glob("artifacts/*/command")) == []
    assert not (private / "env" / "envvars").exists() and not (private / "env" / "settings").exists()
