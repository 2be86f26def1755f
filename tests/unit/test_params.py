from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.runflow import EXIT_FOR_STATUS, segments
from runner.errors import ExitStatus, InvalidInput
from runner.language.loader import load_runbook
from runner.language.params import SECRET_MASK, parse_assignments, resolve


def full(fixtures: Path, roles_paths: list[Path]):  # type: ignore[no-untyped-def]
    return load_runbook(fixtures / "valid" / "full.yml", roles_paths)


def test_values_are_coerced_by_declared_type(fixtures: Path, roles_paths: list[Path]) -> None:
    params = resolve(full(fixtures, roles_paths),
                     parse_assignments(["jobs=4", "take_backup=no", "db_password=pw=with=equals"]))
    assert params.values == {"database": "shop", "jobs": 4, "take_backup": False, "db_password": "pw=with=equals"}
    assert params.masked()["db_password"] == SECRET_MASK


def test_every_param_problem_is_reported_together(fixtures: Path, roles_paths: list[Path]) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(full(fixtures, roles_paths), parse_assignments(["jobs=99", "database=Bad-Name", "nope=1"]))
    text = str(info.value)
    assert "unknown param 'nope'" in text
    assert "param 'jobs' = 99: 99 is greater than the maximum of 8" in text
    assert "param 'database' = 'Bad-Name'" in text
    assert "missing required params: db_password" in text


def test_secret_values_never_in_error_messages(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = full(fixtures, roles_paths)
    with pytest.raises(InvalidInput) as info:
        resolve(runbook, parse_assignments(["db_password=CANARY", "jobs=x"]))
    assert "CANARY" not in str(info.value)


def test_bad_assignment_syntax() -> None:
    with pytest.raises(InvalidInput, match="expected key=value"):
        parse_assignments(["novalue"])


def test_exit_status_for_each_outcome() -> None:
    assert EXIT_FOR_STATUS == {
        "succeeded": ExitStatus.SUCCEEDED,
        "rolled_back": ExitStatus.ROLLED_BACK,
        "failed": ExitStatus.NOT_RESTORED,
        "interrupted": ExitStatus.INTERRUPTED,
    }
    assert (ExitStatus.SUCCEEDED, ExitStatus.ROLLED_BACK, ExitStatus.INVALID, ExitStatus.NOT_RESTORED,
            ExitStatus.LOCKED, ExitStatus.INTERRUPTED) == (0, 1, 2, 3, 4, 130)


def test_confirm_gates_start_new_segments(fixtures: Path, roles_paths: list[Path]) -> None:
    runbook = full(fixtures, roles_paths)
    assert [[s.id for s in group] for group in segments(runbook.steps)] == [["snapshot", "restore"]]


def test_cli_maps_invalid_runbook_to_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.cli import main

    bad = tmp_path / "bad.yml"
    bad.write_text("apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: x}\nspec: {steps: [{id: a}]}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4:16: error: missing required key 'hosts'" in err
    assert "Traceback" not in err
