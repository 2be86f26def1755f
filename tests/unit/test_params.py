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


# --- every operator value keeps the loader's limits: -p, --params-file, the params a journal records ------------

EVERY_TYPE = Path(__file__).resolve().parent.parent / "fixtures" / "valid" / "params_every_type.yml"
FIXTURE_ROLES = Path(__file__).resolve().parent.parent / "fixtures" / "roles"
OUT_OF_RANGE = "integer out of range (more than 64 bits)"
NOT_FINITE = "not a finite number (NaN and Infinity are not allowed)"
DEEP_DICT_JSON = '{"a":' * 900 + "1" + "}" * 900


def nested_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def render_with(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    from runner.cli import main

    argv = ["render", str(EVERY_TYPE), "--roles-path", str(FIXTURE_ROLES), "-o", str(tmp_path / "out")]
    status = main([*argv, "-p", "password=x", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    return status, err


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        (f"labels={DEEP_DICT_JSON}", "error: param 'labels': nested too deeply (more than 64 levels) at labels.a.a"),
        (f"labels={nested_json(5000)}", "error: param 'labels': nested too deeply (more than 64 levels)"),
        ("hosts=" + "[" * 900 + "]" * 900, "error: param 'hosts': nested too deeply (more than 64 levels) at hosts[0]"),
        (f"labels={nested_json(65)}", "error: param 'labels': nested too deeply (more than 64 levels) at labels.a"),
        ("count=9223372036854775808", "error: param 'count': integer out of range (more than 64 bits)"),
        ("count=-9223372036854775809", "error: param 'count': integer out of range (more than 64 bits)"),
        ("count=" + "9" * 5000, "error: param 'count': integer out of range (more than 64 bits)"),
        ('hosts=["a", 18446744073709551615]', f"error: param 'hosts': {OUT_OF_RANGE} at hosts[1]"),
        ('labels={"n": ' + "7" * 5000 + "}", f"error: param 'labels': {OUT_OF_RANGE} at labels.n"),
        ("ratio=12345678901234567891", "error: param 'ratio': integer out of range (more than 64 bits)"),
        ("ratio=nan", "error: param 'ratio': not a finite number (NaN and Infinity are not allowed)"),
        ("ratio=-inf", "error: param 'ratio': not a finite number (NaN and Infinity are not allowed)"),
        ("ratio=1e400", "error: param 'ratio': not a finite number (NaN and Infinity are not allowed)"),
        ('labels={"a": NaN}', "error: param 'labels' must be object: NaN is not a number JSON allows"),
        ('labels={"a": [-Infinity]}', "error: param 'labels' must be object: -Infinity is not a number JSON allows"),
        ('labels={"a": 1e400}', f"error: param 'labels': {NOT_FINITE} at labels.a"),
        ("name=" + "x" * (1024 * 1024 + 1), "error: param 'name': too large (more than 1 MiB)"),
        ('labels={"a": "' + "x" * (1024 * 1024) + '"}', "error: param 'labels': too large (more than 1 MiB)"),
    ],
    ids=lambda v: v[:40],
)
def test_cli_param_values_keep_the_loader_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], assignment: str, expected: str
) -> None:
    status, err = render_with(tmp_path, capsys, "-p", assignment)
    assert status == ExitStatus.INVALID
    assert expected in err.splitlines()[0]
    assert len(err) < 2000  # the value is never echoed whole


def test_cli_params_at_the_limits_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = render_with(tmp_path, capsys, "-p", f"labels={nested_json(64)}", "-p", "count=9223372036854775807",
                              "-p", "ratio=9223372036854775807")
    assert status == ExitStatus.INVALID  # count and ratio break their declared maximum, nothing else
    assert err.count("is greater than the maximum") == 2 and "9223372036854775807 is greater" in err
    assert "out of range" not in err and "nested" not in err
    status, err = render_with(tmp_path, capsys, "-p", f"labels={nested_json(64)}", "-p", "count=-0")
    assert (status, err) == (ExitStatus.SUCCEEDED, "")


def test_cli_params_file_values_keep_the_loader_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yml"
    params.write_text(f"labels: {{a: .nan, b: [1, -.inf]}}\nname: {'x' * (1024 * 1024 + 1)}\n")
    status, err = render_with(tmp_path, capsys, "--params-file", str(params))
    assert status == ExitStatus.INVALID
    assert "error: param 'labels': not a finite number (NaN and Infinity are not allowed) at labels.a" in err
    assert "error: param 'name': too large (more than 1 MiB)" in err
    assert len(err) < 2000
    params.write_text("count: 9223372036854775808\n")
    status, err = render_with(tmp_path, capsys, "--params-file", str(params))
    assert status == ExitStatus.INVALID
    assert f"{params}:1:8: error: integer out of range (more than 64 bits) (at count)" in err


def test_cli_params_file_nested_too_deeply_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.json"
    params.write_text('{"labels": ' + nested_json(900) + "}")
    status, err = render_with(tmp_path, capsys, "--params-file", str(params))
    assert status == ExitStatus.INVALID
    assert f"{params}:1:" in err and "nested too deeply (more than 64 levels)" in err


def test_cli_resume_checks_the_params_the_journal_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from runner.cli import main

    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    recorded = {"labels": json.loads(nested_json(200)), "count": 2**63, "ratio": float("nan"), "name": "y" * 2**21}
    start = {"kind": "run_start", "run_id": "r1", "runbook_file": str(EVERY_TYPE), "inventory": "inv.yml",
             "params": recorded}
    (run_dir / "journal.jsonl").write_text(json.dumps(start) + "\n")
    status = main(["resume", str(run_dir), "--state-dir", str(tmp_path), "--roles-path", str(FIXTURE_ROLES),
                   "-p", "password=x"])
    err = capsys.readouterr().err
    assert status == ExitStatus.INVALID
    assert "error: param 'labels': nested too deeply (more than 64 levels) at labels.a" in err
    assert "error: param 'count': integer out of range (more than 64 bits)" in err
    assert "error: param 'ratio': not a finite number (NaN and Infinity are not allowed)" in err
    assert "error: param 'name': too large (more than 1 MiB)" in err
    assert "Traceback" not in err and len(err) < 2000
