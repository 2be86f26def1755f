"""runner.engine.planning.describe_step: what `runbook plan` says a step will change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner import api
from runner.engine.planning import describe_step, describe_steps
from runner.language.loader import load_runbook
from runner.language.params import resolve
from runner.language.role_specs import find_role
from runner.paths import INVENTORIES_DIR, RUNBOOKS_DIR


def test_role_with_a_changes_sentence(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "nested_options.yml", roles_paths)
    text = describe_steps(runbook, roles_paths, {"base_url": "http://h", "attempts": 7, "interval": 1, "token": "T0K"})
    assert text["probe"].startswith('nothing (probes [{"max_ms": 1000, "status": 200, "url": "http://h/health')
    assert text["probe"].endswith("up to 7 times)")


def test_default_sentence_names_role_and_options_and_masks_secrets(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    params = {"database": "shop", "jobs": 2, "take_backup": True, "db_password": "CANARY"}
    text = describe_steps(runbook, roles_paths, params)
    assert text["snapshot"] == (
        "runs role demo_role: A role used by the unit tests (database=shop, jobs=2, password=********)"
    )
    assert "database=<steps.snapshot.database>" in text["restore"]  # outputs are only known at run time
    assert all("{{" not in t for t in text.values())
    assert all("CANARY" not in t for t in text.values())


def test_x_runbook_changes_key_and_defaults(tmp_path: Path, fixtures: Path) -> None:
    role_dir = tmp_path / "demo_role"
    shutil.copytree(fixtures / "roles" / "demo_role", role_dir)
    spec = role_dir / "meta" / "argument_specs.yml"
    spec.write_text(
        spec.read_text().replace(
            "    short_description:",
            '    x_runbook_changes: "restores {database} ({mode}, {jobs} jobs) {nope}"\n    short_description:',
        )
    )
    role = find_role("demo_role", [tmp_path])
    assert role is not None and role.changes
    runbook = load_runbook(fixtures / "valid" / "minimal.yml", [tmp_path])
    assert describe_step(runbook.steps[0], role) == "restores shop (swap, 2 jobs) {nope}"


def test_unknown_role() -> None:
    from runner.language.model import Step

    assert describe_step(Step(id="a", uses="gone", hosts="db"), None) == "runs role gone (not found)"


def test_plan_resolves_option_values_and_questions_with_params_and_inventory(roles_paths: list[Path]) -> None:
    runbook = load_runbook(RUNBOOKS_DIR / "postgres-restore.yml", roles_paths)
    params = resolve(runbook, {"mode": "in_place", "db_password": "S3CRET-pw"})
    plan = api.plan(runbook, INVENTORIES_DIR / "lab" / "hosts.yml", None, roles_paths, params)
    rows = {row.step_id: row for row in plan.rows}
    assert rows["restore"].confirm == "Replace the whole database of shop with backup latest (in_place)?"
    restore = rows["restore"].changes
    for shown in ("mode=in_place", "database=shop", "login_host=127.0.10.21", "login_port=5432", "login_user=lab"):
        assert shown in restore, restore
    assert "login_password=********" in restore
    assert all("{{" not in row.changes and "S3CRET" not in row.changes for row in plan.rows)


def test_plan_prints_the_question_the_run_will_ask(
    roles_paths: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from runner import cli

    argv = ["plan", str(RUNBOOKS_DIR / "data-rollback.yml"), "-i", str(INVENTORIES_DIR / "lab" / "hosts.yml")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "confirm: Replace database shop with backup latest (swap)?" in out
    assert "{{" not in out


def test_plan_resolves_a_templated_hosts_with_the_params(tmp_path: Path, roles_paths: list[Path]) -> None:
    path = tmp_path / "rb.yml"
    path.write_text(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: tp}\nspec:\n"
        "  params: {target: {type: string, default: app1}}\n"
        '  steps:\n    - {id: look, hosts: "{{ params.target }}", uses: verify, with: {http: [{url: "http://127.0.0.1:1/"}]}}\n'
    )
    runbook = load_runbook(path, roles_paths)
    params = resolve(runbook, {"target": "app2"})
    plan = api.plan(runbook, INVENTORIES_DIR / "lab" / "hosts.yml", None, roles_paths, params)
    assert [row.hosts for row in plan.rows] == [["app2"]]
