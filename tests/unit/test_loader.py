from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InvalidInput
from runner.language.loader import load_runbook, load_runbook_text


def errors_of(text: str, roles_paths: list[Path]) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        load_runbook_text(text, "rb.yml", roles_paths)
    return [str(d) for d in info.value.diagnostics]


def test_full_fixture_loads(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "full.yml", roles_paths)
    assert runbook.name == "full-example"
    assert runbook.severity == "SEV1"
    assert runbook.budget_s == 300
    assert [s.id for s in runbook.steps] == ["snapshot", "restore"]
    assert runbook.steps[0].timeout_s == 600 and runbook.steps[0].retries == 1
    assert runbook.secret_params == {"db_password"}
    assert runbook.on_failure[0].phase == "on_failure"


def test_budget_defaults_to_severity_response_target(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = load_runbook(fixtures / "valid" / "minimal.yml", roles_paths)
    assert runbook.severity == "SEV3"
    assert runbook.budget_s == 86400
    assert runbook.budget_from == "severity policy"


def test_every_error_is_reported_with_its_location(roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata:
  name: Bad_Name
spec:
  bogus: 1
  steps:
    - id: a
      hosts: db
      uses: demo_role
      with: {databse: shop}
    - id: a
      hosts: db
      uses: no_such_role
"""
    errors = errors_of(text, roles_paths)
    joined = "\n".join(errors)
    assert "rb.yml:4:9: error: 'Bad_Name' does not match" in joined
    assert "rb.yml:6:3: error: unknown key 'bogus' (at spec.bogus)" in joined
    assert "rb.yml:11:14: error: role demo_role has no option 'databse'; did you mean 'database'?" in joined
    assert "needs option 'database'" in joined
    assert "rb.yml:12:11: error: duplicate step id 'a' (first defined at line 8)" in joined
    assert "unknown role 'no_such_role'" in joined


def test_yaml_syntax_error_has_location(roles_paths: list[Path]) -> None:
    errors = errors_of("apiVersion: runbook/v1\nkind: [Runbook\n", roles_paths)
    assert errors[0].startswith("rb.yml:3:1: error: YAML:")


def test_duplicate_key(roles_paths: list[Path]) -> None:
    errors = errors_of("apiVersion: runbook/v1\napiVersion: runbook/v1\n", roles_paths)
    assert errors == ['rb.yml:2:1: error: YAML: found duplicate key "apiVersion"']


def test_empty_and_wrong_root(roles_paths: list[Path]) -> None:
    assert "empty file" in errors_of("", roles_paths)[0]
    assert "must be a mapping" in errors_of("- 1\n- 2\n", roles_paths)[0]


def test_references_to_undefined_params_and_later_steps(roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: refs}
spec:
  params: {db: {type: string, default: shop}}
  steps:
    - id: first
      hosts: db
      uses: demo_role
      with: {database: "{{ steps.second.path }}"}
    - id: second
      hosts: db
      uses: demo_role
      with: {database: "{{ params.nope }}"}
      when: "params.db == 'x' and"
"""
    joined = "\n".join(errors_of(text, roles_paths))
    assert "outputs of step 'second', which does not run earlier (at spec.steps[0].with.database)" in joined
    assert "undefined param 'nope' (at spec.steps[1].with.database)" in joined
    assert "Jinja syntax error" in joined and "spec.steps[1].when" in joined


def test_templated_option_is_not_type_checked_by_validate(roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: tpl}
spec:
  params: {jobs: {type: integer, default: 2}}
  steps:
    - {id: a, hosts: db, uses: demo_role, with: {database: shop, jobs: "{{ params.jobs }}"}}
    - {id: b, hosts: db, uses: demo_role, with: {database: shop, jobs: many}}
"""
    errors = errors_of(text, roles_paths)
    assert (
        len(errors) == 1 and "option 'jobs' of role demo_role expects an integer, got a string" in errors[0]
    )


def test_bad_duration_and_default_breaking_its_rule(roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: dur}
spec:
  params: {n: {type: integer, minimum: 5, default: 1}}
  budget: 5 minutes
  steps:
    - {id: a, hosts: db, uses: demo_role, with: {database: shop}, timeout: 10x}
"""
    joined = "\n".join(errors_of(text, roles_paths))
    assert "rb.yml:5:52: error: default 1 breaks the param's own rule" in joined
    assert "'5 minutes' does not match" in joined
    assert "'10x' does not match" in joined


def test_needs_at_least_one_step(roles_paths: list[Path]) -> None:
    text = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: x}\nspec: {steps: []}\n"
    assert "needs at least one item (at spec.steps)" in errors_of(text, roles_paths)[0]


def test_every_mapping_of_the_format_rejects_keys_it_does_not_know() -> None:
    """additionalProperties: false everywhere, except where the keys are free by design."""
    from runner.language.schema import load_schema

    free_by_design = {
        "/properties/spec/properties/params": "param names are the runbook's own; each value is a closed $defs/param",
        "/$defs/param/properties/items": "a JSON Schema: the loader checks its keywords",
        "/$defs/step/properties/with": "checked against the role's meta/argument_specs.yml",
    }
    open_mappings: list[str] = []

    def closed(node: dict[str, object]) -> bool:
        branches = [node.get("then"), node.get("else")]
        if all(isinstance(b, dict) and b.get("additionalProperties") is False for b in branches):
            return True  # notification: each kind lists its own keys
        return node.get("additionalProperties") is False or isinstance(node.get("additionalProperties"), dict)

    def walk(node: object, pointer: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and pointer not in free_by_design and not closed(node):
                open_mappings.append(pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{pointer}/{index}")

    walk(load_schema("runbook.schema.json"), "")
    assert open_mappings == []
