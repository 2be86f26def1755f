"""`runbook validate` on every fixture: invalid ones report exactly the errors they declare, valid ones pass.

Each file in tests/fixtures/invalid/ declares, in comment lines of its own,
    # category: NAME
    # expect: LINE:COL MESSAGE FRAGMENT      (one per error, in any order)
and validate must print `FILE:LINE:COL: error: ...FRAGMENT...` for every one of them, no other error, exit 2.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from runner import cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ROLES = FIXTURES / "roles"
INVALID = sorted((FIXTURES / "invalid").glob("*.yml"))
VALID = sorted((FIXTURES / "valid").glob("*.yml"))

_EXPECT = re.compile(r"^#\s*expect:\s*(\d+):(\d+)\s+(.+?)\s*$")
_CATEGORY = re.compile(r"^#\s*category:\s*(\S+)\s*$")

CATEGORIES = {
    "yaml-syntax",
    "duplicate-keys",
    "yaml-hostile",
    "empty-file",
    "root-type",
    "unknown-keys",
    "missing-keys",
    "schema-values",
    "name-pattern",
    "severity",
    "duplicate-step-ids",
    "unknown-role",
    "with-options",
    "jinja-syntax",
    "jinja-plugins",
    "references",
    "durations",
    "param-defaults",
    "no-steps",
    "mixed",
}


def _header(path: Path) -> tuple[str | None, list[tuple[int, int, str]]]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    category = None
    expected = []
    for line in text.splitlines():
        if match := _CATEGORY.match(line):
            category = match.group(1)
        elif match := _EXPECT.match(line):
            expected.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return category, expected


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = cli.main(["validate", "--roles-path", str(ROLES), str(path)])
    captured = capsys.readouterr()
    return status, [line for line in captured.err.splitlines() if line.strip()]


def test_there_are_enough_invalid_fixtures_in_every_category() -> None:
    counts = Counter(_header(path)[0] for path in INVALID)
    assert len(INVALID) >= 40
    assert None not in counts, "every invalid fixture declares its category"
    assert set(counts) <= CATEGORIES
    assert set(counts) >= CATEGORIES, f"no fixture for {sorted(CATEGORIES - set(counts))}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_reports_exactly_what_it_declares(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, expected = _header(path)
    assert expected, f"{path.name} declares no '# expect: LINE:COL fragment' line"
    status, lines = _validate(path, capsys)
    assert status == 2
    prefix = re.escape(str(path))
    errors = [line for line in lines if re.match(prefix + r":\d+:\d+: error: ", line)]
    assert errors == lines, "every line on stderr is a located error"
    missing = [
        f"{line}:{col} {fragment}"
        for line, col, fragment in expected
        if not any(e.startswith(f"{path}:{line}:{col}: error: ") and fragment in e for e in errors)
    ]
    assert not missing, "missing:\n" + "\n".join(missing) + "\ngot:\n" + "\n".join(errors)
    assert len(errors) == len(expected), "unexpected extra errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _validate(path, capsys)
    assert (status, lines) == (0, [])


def test_all_files_of_one_call_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """Several paths: every error of every file, exit 2 when any is invalid."""
    paths = [str(p) for p in (*VALID[:2], *INVALID[:3])]
    status = cli.main(["validate", "--roles-path", str(ROLES), *paths])
    err = capsys.readouterr().err
    assert status == 2
    for path in INVALID[:3]:
        assert f"{path}:" in err
    for path in VALID[:2]:
        assert f"{path}:" not in err


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["validate", str(tmp_path / "nope.yml"), str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{tmp_path / 'nope.yml'}:1:1: error: cannot read file" in err
    assert f"{tmp_path}:1:1: error: cannot read file" in err


def test_no_test_module_name_is_used_twice() -> None:
    """pytest imports test modules by their basename: a name in both tests/unit and tests/integration stops the
    whole suite at collection (the lab's copy of a name ends in _lab)."""
    root = Path(__file__).resolve().parents[1]
    names = [p.name for folder in ("unit", "integration") for p in (root / folder).glob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
