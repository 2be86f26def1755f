from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from runner.engine.render import extra_vars_text, module_timeout_s, render_project
from runner.language.loader import load_runbook
from runner.language.params import parse_assignments, resolve
from runner.paths import COLLECTIONS_DIR

HOSTILE = "{{ lookup('pipe','id') }}; x; rm -rf /"


def test_rendering_is_deterministic(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    first = render_project(runbook, roles_paths, {"database": "shop"}, frozenset())
    second = render_project(
        load_runbook(fixtures / "valid" / "full.yml", roles_paths),
        roles_paths,
        {"database": "shop"},
        frozenset(),
    )
    assert first.files == second.files
    assert set(first.files) == {"ansible.cfg", "main.yml", "on_failure.yml", "params.yml", "README.md"}


def test_plays_are_data_with_prefixed_role_vars(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    project = render_project(runbook, roles_paths)
    plays = yaml.safe_load(project.files["main.yml"])
    assert [p["name"] for p in plays] == ["Step snapshot: Emergency backup", "Step restore: demo_role on db"]
    snapshot = plays[0]
    assert snapshot["hosts"] == "db" and snapshot["gather_facts"] is False and snapshot["any_errors_fatal"]
    attempt = snapshot["tasks"][1]
    assert attempt["block"][0]["vars"]["demo_role_database"] == "{{ params.database }}"
    # the secret goes only to an option the role marks no_log: the role protects it, failures stay readable
    assert attempt["block"][0]["ansible.builtin.include_role"]["apply"] == {"timeout": 600}
    assert attempt["block"][0]["when"] == "params.take_backup"
    assert attempt["rescue"][0]["name"] == "Run role demo_role (attempt 2 of 2)"
    assert plays[1]["serial"] == 1
    assert plays[1]["tasks"][1]["vars"]["demo_role_tables"] == ["orders", "wallet"]


def test_operator_values_are_unsafe_and_secrets_stay_out(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    params = resolve(runbook, parse_assignments(["database=shop", "db_password=CANARY-s3cr3t"]))
    project = render_project(runbook, roles_paths, params.values, params.secret_names)
    assert all("CANARY-s3cr3t" not in text for text in project.files.values())
    extravars = extra_vars_text({"database": HOSTILE}, {"runbook_run_id": "r1"})
    assert "!unsafe" in extravars
    loaded = yaml.load(extravars, Loader=_UnsafeLoader)
    assert loaded["params"]["database"] == HOSTILE


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_rendered_project_passes_ansible_syntax_check(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    render_project(runbook, roles_paths, {"database": "shop"}, frozenset()).write(tmp_path)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    db:\n      hosts:\n        db1: {}\n")
    bindir = Path(sys.executable).parent
    for playbook in ("main.yml", "on_failure.yml"):
        proc = subprocess.run(
            [
                str(bindir / "ansible-playbook"),
                "--syntax-check",
                "-i",
                str(inventory),
                playbook,
                "-e",
                "@params.yml",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_step_timeout_reaches_the_host_work_modules_before_ansibles_own(
    fixtures: Path, roles_paths: list[Path]
) -> None:
    """Ansible's task timeout only stops the waiting: the collection's long modules get a deadline of their own, a
    little earlier, so they end their work on the host and say what they left while Ansible still listens."""
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    snapshot, restore = yaml.safe_load(render_project(runbook, roles_paths).files["main.yml"])
    assert snapshot["module_defaults"] == {"group/runbook.ops.host_work": {"runbook_timeout": 570.0}}
    assert "module_defaults" not in restore  # no timeout: no deadline
    for play in (snapshot, restore):  # every process a step starts on a host is marked with the run and the host
        assert play["environment"] == {
            "RUNBOOK_WORK": "{{ runbook_run_id | default('') }}",
            "RUNBOOK_WORK_HOST": "{{ inventory_hostname }}",
        }
    assert [(t, module_timeout_s(t)) for t in (1, 2, 10, 60, 3600)] == [
        (1, 0.5), (2, 1.0), (10, 8.0), (60, 48.0), (3600, 3570.0),
    ]  # fmt: skip
    runtime = yaml.safe_load((COLLECTIONS_DIR / "ansible_collections/runbook/ops/meta/runtime.yml").read_text())
    assert set(runtime["action_groups"]["host_work"]) == {
        "container_swap", "http_call", "http_check", "http_latency", "pg_assert", "pg_dump_partial",
        "pg_restore_backup", "watch_window",
    }  # fmt: skip
