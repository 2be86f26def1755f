"""runner.devtools.sizes: the size limits (module 500 lines, class 200, function 60) on small synthetic files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.devtools import sizes


def function(name: str, lines: int, indent: str = "", prefix: str = "def") -> str:
    """A function of exactly `lines` lines (its def line included)."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return f"{indent}{prefix} {name}():\n{body}"


def klass(name: str, lines: int) -> str:
    """A class of exactly `lines` lines, made of methods within the function limit."""
    text, left = f"class {name}:\n", lines - 1
    n = 0
    while left:
        size = min(left, 50)
        text += function(f"m{n}", size, indent="    ")
        left, n = left - size, n + 1
    return text


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    status = sizes.main(list(argv))
    return status, capsys.readouterr().out.splitlines()


def test_code_within_the_limits_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "pkg" / "ok.py", function("exactly_sixty", 60) + "\n\n" + klass("Exactly200", 200))
    assert run(capsys, str(tmp_path / "pkg"), "--warn-only", str(tmp_path / "none")) == (0, [])


def test_each_offender_is_named_with_its_line_and_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = "import os\n\n\n" + function("too_long", 61) + "\n\n" + klass("TooBig", 201)
    write(tmp_path / "pkg" / "mod.py", source)
    status, out = run(capsys, "pkg", "--warn-only", "none")
    assert status == 1
    assert out == [
        "pkg/mod.py:4: function too_long has 61 lines (limit 60)",
        "pkg/mod.py:67: class TooBig has 201 lines (limit 200)",
    ]


def test_a_long_module_methods_and_nested_functions_are_measured(tmp_path: Path) -> None:
    nested = "def outer():\n" + function("inner", 61, indent="    ", prefix="async def")
    method = "class Small:\n" + function("method", 62, indent="    ")
    filler = "".join(f"y{i} = {i}\n" for i in range(501 - 62 - 63))
    source = nested + method + filler
    assert len(source.splitlines()) == 501
    found = sizes.file_offenders(Path("m.py"), source, sizes.Limits())
    assert [(o.kind, o.name, o.line, o.size) for o in found] == [
        (sizes.Kind.MODULE, "m", 1, 501),
        (sizes.Kind.FUNCTION, "outer", 1, 62),
        (sizes.Kind.FUNCTION, "inner", 2, 61),
        (sizes.Kind.FUNCTION, "method", 64, 62),
    ]
    assert found[0].message() == "m.py:1: module has 501 lines (limit 500)"


def test_warn_only_folders_list_their_offenders_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pkg" / "vendor" / "big.py", function("long_one", 70))
    write(tmp_path / "pkg" / "fine.py", function("short", 5))
    status, out = run(capsys, "pkg", "--warn-only", "pkg/vendor")
    assert status == 0
    assert out == ["pkg/vendor/big.py:1: warning: function long_one has 70 lines (limit 60)"]


def test_errors_come_before_warnings_and_an_unparsable_file_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pkg" / "a_vendor" / "big.py", function("long_one", 61))
    write(tmp_path / "pkg" / "broken.py", "x = 1\ndef f(:\n")
    write(tmp_path / "pkg" / "__pycache__" / "skipped.py", function("ignored", 90))
    status, out = run(capsys, "pkg", "--warn-only", "pkg/a_vendor")
    assert status == 1
    assert len(out) == 2
    assert out[0].startswith("pkg/broken.py:2: cannot be parsed: ")
    assert out[1] == "pkg/a_vendor/big.py:1: warning: function long_one has 61 lines (limit 60)"


def test_single_files_can_be_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "one.py", function("f", 61))
    status, out = run(capsys, str(path), "--warn-only", str(tmp_path / "elsewhere"))
    assert status == 1 and out == [f"{path}:1: function f has 61 lines (limit 60)"]


def test_the_collection_fails_like_the_rest_of_the_runner_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "runner" / "collections" / "ansible_collections" / "big.py", function("long_one", 61))
    monkeypatch.setattr(sizes, "RUNNER_DIR", tmp_path / "runner")
    status, out = run(capsys)
    assert status == 1
    assert out == ["runner/collections/ansible_collections/big.py:1: function long_one has 61 lines (limit 60)"]


def test_the_runner_and_its_collection_are_within_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys) == (0, [])
