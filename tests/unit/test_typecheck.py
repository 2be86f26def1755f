"""Templated role options are type-checked once params are known (runner.language.typecheck.check_resolved_options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InvalidInput
from runner.language.loader import load_runbook
from runner.language.params import parse_assignments, resolve
from runner.language.typecheck import check_resolved_options, ensure_resolved_options, render

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: typed}
spec:
  params:
    jobs: {type: string, default: "4"}
    mode: {type: string, default: swap}
    tables: {type: array, default: [orders]}
    secret_jobs: {type: string, secret: true, default: "2"}
    base: {type: string, default: "http://127.0.0.1:8080"}
  steps:
    - id: a
      hosts: db
      uses: demo_role
      with:
        database: "{{ params.mode }}-db"
        jobs: "{{ params.jobs }}"
        mode: "{{ params.mode }}"
        tables: "{{ params.tables }}"
    - id: b
      hosts: app
      uses: fixture_http
      with:
        checks: [{url: "{{ params.base }}/health", max_ms: "{{ params.jobs }}"}]
        attempts: "{{ params.secret_jobs }}"
        interval: "{{ ansible_host }}"
        insecure: "{{ params.mode | bool }}"
"""


@pytest.fixture
def runbook_path(tmp_path: Path) -> Path:
    path = tmp_path / "typed.yml"
    path.write_text(RUNBOOK)
    return path


def _problems(path: Path, roles_paths: list[Path], *assignments: str) -> list[str]:
    runbook = load_runbook(path, roles_paths)
    params = resolve(runbook, parse_assignments(list(assignments)))
    return check_resolved_options(runbook, params.values, roles_paths)


def test_values_that_fit_pass(runbook_path: Path, roles_paths: list[Path]) -> None:
    assert _problems(runbook_path, roles_paths) == []


def test_a_string_that_is_not_a_number_is_reported_where_the_template_is(
    runbook_path: Path, roles_paths: list[Path]
) -> None:
    problems = _problems(runbook_path, roles_paths, "jobs=many")
    assert problems == [
        f"{runbook_path}:17:15: error: option 'jobs' of role demo_role expects an integer, got a string 'many'"
        " (from '{{ params.jobs }}' with params.jobs) (at spec.steps[0].with.jobs)",
        f"{runbook_path}:24:60: error: option 'checks[0].max_ms' of role fixture_http expects an integer, got a"
        " string 'many' (from '{{ params.jobs }}' with params.jobs) (at spec.steps[1].with.checks[0].max_ms)",
    ]


def test_choices_and_list_elements(runbook_path: Path, roles_paths: list[Path]) -> None:
    problems = _problems(runbook_path, roles_paths, "mode=sideways", 'tables=["orders", {"x": 1}]')
    joined = "\n".join(problems)
    assert "option 'mode' of role demo_role must be one of: swap, in_place (got a string 'sideways')" in joined
    assert "option 'tables[1]' of role demo_role expects a string, got a mapping" in joined
    assert len(problems) == 2


def test_secret_values_never_appear(runbook_path: Path, roles_paths: list[Path]) -> None:
    problems = _problems(runbook_path, roles_paths, "secret_jobs=CANARY-s3cr3t")
    assert len(problems) == 1
    assert "option 'attempts' of role fixture_http expects an integer, got a string (from" in problems[0]
    assert "CANARY" not in problems[0]


def test_param_values_are_data_never_templates(runbook_path: Path, roles_paths: list[Path]) -> None:
    hostile = "{{ lookup('pipe', 'id') }}"
    problems = _problems(runbook_path, roles_paths, f"jobs={hostile}")
    assert len(problems) == 2 and all("expects an integer, got a string" in p for p in problems)
    assert render("{{ params.x }}", {"x": hostile}) == hostile
    assert render("a {{ params.x }} b", {"x": "{{ 7 * 7 }}"}) == "a {{ 7 * 7 }} b"


def test_sandbox_blocks_attribute_escapes() -> None:
    from runner.language.typecheck import _CannotTell

    with pytest.raises((_CannotTell, Exception)):
        render("{{ params.x.__class__.__mro__[1].__subclasses__() }}", {"x": "a"})


def test_whole_expression_keeps_its_type_and_mixed_text_is_a_string() -> None:
    assert render("{{ params.n }}", {"n": 3}) == 3
    assert render("{{ params.n + 1 }}", {"n": 3}) == 4
    assert render("n={{ params.n }}", {"n": 3}) == "n=3"


def test_ensure_raises_invalid_input(runbook_path: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(runbook_path, roles_paths)
    params = resolve(runbook, parse_assignments(["jobs=many"]))
    with pytest.raises(InvalidInput) as info:
        ensure_resolved_options(runbook, params.values, roles_paths)
    assert info.value.exit_status == 2 and len(info.value.diagnostics) == 2
