"""The hosts of each step, resolved once per run as Ansible will resolve them: a templated `hosts:` with the params."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.inventory import group_all_vars, step_hosts
from runner.errors import InvalidInput
from runner.language.model import Step


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    app: {hosts: {app1: {}, app2: {}}}\n    db: {hosts: {db: {}}}\n")
    return path


def step(step_id: str, hosts: str) -> Step:
    return Step(id=step_id, uses="fixture_step", hosts=hosts)


def test_a_templated_pattern_is_resolved_with_the_params_and_the_groups(hosts_file: Path) -> None:
    steps = [
        step("one", "{{ params.target }}"),
        step("first", "{{ groups['app'] | first }}"),
        step("all", "app:db"),
        step("listed", "{{ params.many }}"),
    ]
    params = {"target": "app2", "many": ["db", "app1"]}
    resolved = step_hosts(hosts_file, steps, None, params)
    assert resolved.of([steps[0]]) == ["app2"]
    assert resolved.of([steps[1]]) == ["app1"]
    assert resolved.of([steps[2]]) == ["app1", "app2", "db"]
    assert resolved.of([steps[3]]) == ["app1", "db"]
    assert resolved.of(steps[:2]) == ["app1", "app2"]
    assert step_hosts(hosts_file, steps, "app1", params).of(steps) == ["app1"]  # --limit still applies


def test_a_param_value_is_data_not_a_template(hosts_file: Path) -> None:
    evil = "{{ lookup('pipe', 'touch /tmp/runbook-pwned') }}"
    resolved = step_hosts(hosts_file, [step("one", "{{ params.target }}")], None, {"target": evil})
    assert resolved.of([step("one", "{{ params.target }}")]) == []
    assert not Path("/tmp/runbook-pwned").exists()


def test_a_pattern_that_cannot_be_resolved_is_refused_before_any_host_is_touched(hosts_file: Path) -> None:
    with pytest.raises(InvalidInput, match=r"step one: cannot resolve hosts"):
        step_hosts(hosts_file, [step("one", "{{ params.nope }}")], None, {"target": "app1"})


def test_the_inventorys_all_variables_come_from_its_file_and_group_vars(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        "runbook_notify_webhook: https://hooks.example.org/x\nnested: {a: 1}\nteams: [ops, dba]\n")
    (tmp_path / "hosts.yml").write_text("all:\n  vars:\n    runbook_notify_email: oncall@example.org\n"
                                        "  hosts:\n    app1: {ansible_host: 127.0.0.1}\n")
    found = group_all_vars(tmp_path / "hosts.yml")
    assert found["runbook_notify_webhook"] == "https://hooks.example.org/x"
    assert found["runbook_notify_email"] == "oncall@example.org"
    assert found["teams"] == ["ops", "dba"] and "nested" not in found  # plain values only
    assert group_all_vars(tmp_path / "missing.yml") == {}
