"""Redaction masks the values known to be secret, whole or as tokens of their own, never other text, and never
corrupts what resume reads back from a journal."""

from __future__ import annotations

import base64
import json
import shlex
import urllib.parse
from pathlib import Path

import pytest

from runner.engine.journal import Journal, read_journal
from runner.engine.resume import ResumeRequest, plan_resume, read_state, resume_run
from runner.errors import InvalidInput
from runner.language.loader import load_runbook
from runner.language.params import SECRET_MASK, resolve
from runner.records.redact import Redactor

LAB = Redactor(["lab"])


@pytest.mark.parametrize(
    "text",
    ["available", "/var/lib/runbook-lab", "inventories/lab", "lab.example.com", "collab", "lab_user", "x-lab-y"],
)
def test_text_that_merely_contains_the_secret_is_left_alone(text: str) -> None:
    assert LAB.text(text) == text
    assert LAB.scrub({"path": text, "items": [text]}) == {"path": text, "items": [text]}
    assert not LAB.hides(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lab", SECRET_MASK),
        ("password=lab", f"password={SECRET_MASK}"),
        ("postgres://u:lab@db/shop", f"postgres://u:{SECRET_MASK}@db/shop"),
        ("PGPASSWORD='lab' psql", f"PGPASSWORD='{SECRET_MASK}' psql"),
        ('{"password": "lab"}', f'{{"password": "{SECRET_MASK}"}}'),
        ("the password is lab.", f"the password is {SECRET_MASK}."),
        ("lab\n", f"{SECRET_MASK}\n"),
    ],
)
def test_the_secret_is_masked_where_it_stands_as_a_token(text: str, expected: str) -> None:
    assert LAB.text(text) == expected


@pytest.mark.parametrize("secret", ["x", "pw"])
def test_a_short_secret_is_masked_as_a_whole_value(secret: str) -> None:
    redactor = Redactor([secret])
    assert redactor.scrub({"k": secret, "list": [secret], secret: 1}) == {
        "k": SECRET_MASK,
        "list": [SECRET_MASK],
        SECRET_MASK: 1,
    }
    assert redactor.text(f"user:{secret}@host") == f"user:{SECRET_MASK}@host"
    assert redactor.text(f"ex{secret}ra") == f"ex{secret}ra"


SECRET = "p@ss w/rd&'x\"y"


@pytest.mark.parametrize(
    "encoded",
    [
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        shlex.quote(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
    ],
    ids=["url", "url-plus", "json", "shell", "base64"],
)
def test_encoded_forms_of_the_secret_are_masked_as_tokens(encoded: str) -> None:
    redactor = Redactor([SECRET])
    assert redactor.text(f"before {encoded} after") == f"before {SECRET_MASK} after"
    assert redactor.text(encoded) == SECRET_MASK
    assert redactor.text(f"x{encoded}x") == f"x{encoded}x"  # inside other text, not a token


def test_masked_fields_names_what_masking_changes() -> None:
    fields = {"step_id": "s", "message": "login lab failed", "outputs": {"path": "/srv/lab-data", "uri": "u:lab@h"}}
    assert LAB.masked_fields(fields) == ["message", "outputs.uri"]


def test_a_run_masks_the_values_its_roles_mark_no_log(tmp_path: Path, roles_paths: list[Path]) -> None:
    path = tmp_path / "rb.yml"
    path.write_text("""apiVersion: runbook/v1
kind: Runbook
metadata: {name: rb}
spec:
  params:
    suffix: {type: string, default: "9f"}
    token: {type: string, secret: true}
  steps:
    - {id: a, hosts: all, uses: demo_role, with: {database: shop, password: "literal-pw"}}
    - {id: b, hosts: all, uses: demo_role, with: {database: shop, password: "made-{{ params.suffix }}"}}
    - {id: c, hosts: all, uses: demo_role, with: {database: shop, password: "{{ db_password }}"}}
""")
    runbook = load_runbook(path, roles_paths)
    redactor = Redactor.for_run(runbook, resolve(runbook, {"token": "tok-1"}), roles_paths)
    text = "a=literal-pw b=made-9f c=tok-1 d={{ db_password }} e=shop"
    assert redactor.text(text) == f"a={SECRET_MASK} b={SECRET_MASK} c={SECRET_MASK} d={{{{ db_password }}}} e=shop"


# --- the journal: masked where a secret is, intact where resume reads back, and resume asks again -------------

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: rb}
spec:
  params:
    note: {type: string, default: ""}
    where: {type: string, default: ""}
    db_password: {type: string, secret: true}
  steps:
    - {id: first, hosts: all, uses: demo_role, with: {database: shop}}
    - {id: second, hosts: all, uses: demo_role, with: {database: shop}}
    - {id: third, hosts: all, uses: demo_role, with: {database: shop}}
"""


def journal_of_a_failed_run(tmp_path: Path, roles_paths: list[Path], second_outputs: dict[str, str]) -> Path:
    path = tmp_path / "rb.yml"
    path.write_text(RUNBOOK)
    runbook = load_runbook(path, roles_paths)
    run_dir = tmp_path / "runs" / "r1"
    journal = Journal(run_dir / "journal.jsonl", LAB)
    params = {"note": "the password lab leaked", "where": "/var/lib/runbook-lab", "db_password": SECRET_MASK}
    journal.append("run_start", run_id="r1", runbook="rb", params=params, runbook_file=str(path),
                   runbook_sha256=runbook.sha256, inventory=str(tmp_path / "inventories/lab"), limit=None)
    for step, outputs in (("first", {"data_dir": "/var/lib/runbook-lab", "state": "available"}),
                          ("second", second_outputs)):
        journal.append("step_result", step_id=step, phase="main", host="db", status="succeeded", outputs=outputs)
    journal.append("step_result", step_id="third", phase="main", host="db", status="failed", outputs={})
    journal.close()
    return run_dir


def test_the_journal_keeps_what_resume_reads_back(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir = journal_of_a_failed_run(tmp_path, roles_paths, {"dsn": "host=db dbname=lab_copy"})
    assert "lab" not in [r.get("params", {}).get("note") for r in read_journal(run_dir / "journal.jsonl")]
    state = read_state(run_dir)
    assert state.inventory == tmp_path / "inventories/lab"
    assert state.params["where"] == "/var/lib/runbook-lab"
    plan = plan_resume(state, load_runbook(state.runbook_file, roles_paths), None, False)
    assert plan.start_at == "third"
    assert plan.recorded["db"] == {
        "first": {"data_dir": "/var/lib/runbook-lab", "state": "available"},
        "second": {"dsn": "host=db dbname=lab_copy"},
    }


def test_a_secret_in_outputs_is_never_journaled_and_resume_runs_that_step_again(
    tmp_path: Path, roles_paths: list[Path]
) -> None:
    run_dir = journal_of_a_failed_run(tmp_path, roles_paths, {"dsn": "postgres://app:lab@db/shop"})
    text = (run_dir / "journal.jsonl").read_text()
    assert "app:lab@" not in text and f"app:{SECRET_MASK}@" in text
    state = read_state(run_dir)
    runbook = load_runbook(state.runbook_file, roles_paths)
    plan = plan_resume(state, runbook, None, False)
    assert plan.start_at == "second" and plan.recorded["db"] == {
        "first": {"data_dir": "/var/lib/runbook-lab", "state": "available"}
    }
    with pytest.raises(InvalidInput, match=r"step 'second'.*secret.*--from second"):
        plan_resume(state, runbook, "third", False)


def test_a_param_holding_a_secret_is_asked_again_on_resume(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir = journal_of_a_failed_run(tmp_path, roles_paths, {})
    with pytest.raises(InvalidInput, match=r"give them again: -p db_password=\.\.\. -p note=\.\.\."):
        resume_run(run_dir, roles_paths, ResumeRequest())
    resumed = resume_run(run_dir, roles_paths, ResumeRequest(assignments=("db_password=lab", "note=again")))
    assert resumed.params.values["note"] == "again"
    assert resumed.params.values["where"] == "/var/lib/runbook-lab"
