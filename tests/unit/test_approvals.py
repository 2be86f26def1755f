"""The approval question of a confirm: gate, rendered with the params and the inventory before it is asked."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from runner.engine.approvals import ApprovalPolicy, Approvals, Questions
from runner.engine.host_variables import inventory_variables
from runner.engine.inventory import StepHosts, step_hosts
from runner.engine.journal import Journal
from runner.engine.preview import Preview
from runner.engine.start_gate import StartGate
from runner.errors import ApprovalRequired
from runner.language.loader import load_runbook
from runner.language.model import Runbook, Step
from runner.language.params import ResolvedParams, resolve
from runner.paths import INVENTORIES_DIR, RUNBOOKS_DIR
from runner.records.redact import Redactor

LAB = INVENTORIES_DIR / "lab" / "hosts.yml"
VAULTED = """$ANSIBLE_VAULT;1.1;AES256
          36663233643263313834313931353934616162636131376366343830626663633336626136386266
          6431353132306133346136333433666430323136373736360a656564616538636437386339346639
          30323238343662666366663565653238373630376365333930616636666665303937376631353635
          6630323166666161390a626334633931646434336230663166646632356339623565353065383961
          3936"""


def restore_runbook(roles_paths: list[Path]) -> Runbook:
    return load_runbook(RUNBOOKS_DIR / "postgres-restore.yml", roles_paths)


def question(runbook: Runbook, step_id: str, params: ResolvedParams, inventory: Path = LAB) -> str:
    hosts = step_hosts(inventory, runbook.all_steps)
    questions = Questions.for_steps(runbook.all_steps, params, inventory, hosts, Redactor(params.secret_values()))
    return questions.of(next(s for s in runbook.all_steps if s.id == step_id))


def test_the_restore_question_names_what_will_be_replaced(roles_paths: list[Path]) -> None:
    runbook = restore_runbook(roles_paths)
    tables = resolve(runbook, {"mode": "tables", "tables": '["orders", "wallet"]'})
    assert question(runbook, "restore", tables) == "Replace orders, wallet of shop with backup latest (tables)?"
    whole = resolve(runbook, {"database": "shop_copy", "backup": "shop-20250115T143000Z"})
    assert question(runbook, "restore", whole) == (
        "Replace the whole database of shop_copy with backup shop-20250115T143000Z (swap)?"
    )


def preview(variables: dict[str, dict[str, Any]], **params: Any) -> Preview:
    return Preview(params, frozenset({"token"}), lambda: variables)


def test_what_only_the_run_knows_is_a_placeholder_never_jinja() -> None:
    shown = preview({"h1": {"db_name": "{{ inventory_hostname }}_db", "port": 5432}}, mode="swap")
    text = shown.text(
        "{{ params.mode }} {{ db_name }} {{ steps.check.backup }} {{ port | bool }} {{ nope }} {{ port }}", ["h1"]
    )
    assert text == "swap <db_name> <steps.check.backup> <port | bool> <nope> 5432"
    assert "{{" not in shown.text("{% if params.mode %}{{ ansible_facts.os }}{% endif %}", ["h1"])


def test_outputs_recorded_before_the_gate_are_shown() -> None:
    outputs = {"db": {"check": {"backup": "shop-1.dump"}}}
    shown = Preview({}, frozenset(), dict, outputs)
    assert shown.text("Restore {{ steps.check.backup }}?", ["db"]) == "Restore shop-1.dump?"
    assert shown.text("Restore {{ steps.check.backup }}?", ["db2"]) == "Restore shop-1.dump?"  # as plays read it


def test_hosts_that_differ_are_each_shown() -> None:
    shown = preview({"a1": {"colour": "blue"}, "a2": {"colour": "green"}, "a3": {"colour": "blue"}})
    assert shown.text("Stop {{ colour }} on {{ inventory_hostname }}?", ["a1"]) == "Stop blue on a1?"
    assert shown.text("Drain {{ colour }}?", ["a1", "a2", "a3"]) == "a1, a3: Drain blue? | a2: Drain green?"


def test_secrets_are_masked_as_a_whole(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        "db_password: !vault |\n          " + VAULTED + "\nredis_auth: !vault |\n          " + VAULTED
        + "\napi_token: T0KEN-plain\ndb_name: shop\n"
    )
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1: {}\n")
    variables = partial(inventory_variables, tmp_path / "hosts.yml", ["h1"])
    shown = Preview({"token": "S3CRET-param", "name": "x"}, frozenset({"token"}), variables)
    for template in (
        "{{ params.token }}", "{{ params.token | length }}", "{{ params['tok' ~ 'en'] }}", "{{ db_password }}",
        "{{ api_token }}", "{{ redis_auth }}", "{{ 'set' if params.token else 'unset' }}",
    ):
        text = shown.text(f"[{template}] of {{{{ db_name }}}}", ["h1"])
        assert text.endswith("] of shop") and "S3CRET" not in text and "T0KEN" not in text, (template, text)
        assert text.startswith("[********]") or text.startswith("[<"), (template, text)
    assert shown.text("{{ params.name ~ params.token }}", ["h1"]) == "********"


def test_values_are_data_and_the_sandbox_holds(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    shown = preview({"h1": {"note": hostile}}, value=hostile)
    assert shown.text("Use {{ params.value }}?", ["h1"]) == f"Use {hostile}?"  # shown as given, never rendered
    assert shown.text("{{ note }}", ["h1"]) == "<note>"  # an inventory template: Ansible's, at run time
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    assert shown.text(escape, ["h1"]).startswith("<")
    assert not marker.exists()


def approvals(answers: list[str], tmp_path: Path, *, approver: bool = True) -> tuple[Approvals, Step]:
    step = Step(id="restore", uses="postgres_restore", hosts="db", confirm="Replace {{ db_name }}?")
    asked = Questions(preview({"db": {"db_name": "shop"}}), StepHosts({"db": ["db"]}), Redactor([]))

    def approve(step: Step, question: str) -> bool:
        answers.append(question)
        return True

    policy = ApprovalPolicy(False, False, approve if approver else None)
    journal = Journal(tmp_path / "journal.jsonl", Redactor([]))
    return Approvals(policy, journal, lambda *a, **k: None, StartGate(lambda: None), asked.of), step


def test_the_operator_is_asked_the_rendered_question(tmp_path: Path) -> None:
    answers: list[str] = []
    gates, step = approvals(answers, tmp_path)
    assert gates.approve_group([step])
    assert answers == ["Replace shop?"]
    without_tty, step = approvals([], tmp_path, approver=False)
    with pytest.raises(ApprovalRequired, match=r"\(Replace shop\?\)"):
        without_tty.approve_group([step])
