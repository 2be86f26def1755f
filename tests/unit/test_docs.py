"""Generated docs: docs/runbook-reference.md and roles/*/README.md match their sources
(run `python -m runner.devtools.docs`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from runner.devtools import docs
from runner.devtools.markdown import cell
from runner.devtools.role_readmes import role_dirs, role_readme
from runner.language.loader import load_runbook_text
from runner.language.role_specs import load_role
from runner.paths import PRODUCT_ROOT, ROLES_DIR

FIXTURE_ROLES = Path(__file__).resolve().parent.parent / "fixtures" / "roles"


def test_generated_docs_are_current() -> None:
    stale = [str(p.relative_to(PRODUCT_ROOT)) for p in docs.stale_files()]
    assert not stale, f"stale generated docs, run `python -m runner.devtools.docs`: {', '.join(stale)}"


def test_every_role_has_a_readme_and_the_reference_names_it() -> None:
    files = docs.expected_files()
    reference = files[PRODUCT_ROOT / "docs" / "runbook-reference.md"]
    for role_dir in role_dirs(ROLES_DIR):
        assert role_dir / "README.md" in files
        assert f"(../roles/{role_dir.name}/README.md)" in reference


def test_generation_is_deterministic() -> None:
    assert docs.expected_files() == docs.expected_files()


def test_reference_covers_the_schema() -> None:
    text = docs.expected_files()[PRODUCT_ROOT / "docs" / "runbook-reference.md"]
    for key in ("`apiVersion`", "`severity`", "`budget`", "`on_failure`", "`secret`", "`serial`", "`confirm`", "`url`"):
        assert key in text
    assert '`"^[a-z0-9][a-z0-9-]{0,62}$"`' in text  # the name pattern, straight from the schema


def test_role_readme_has_every_part() -> None:
    text = role_readme(load_role(FIXTURE_ROLES / "fixture_http"))
    assert text.startswith("# fixture_http\n")
    assert "Test double with nested options" in text
    assert "| Option | Variable | Type | Required | Default | Choices | Description |" in text
    assert "| `checks` | `fixture_http_checks` | list of dict | yes |" in text
    assert "| `attempts` | `fixture_http_attempts` | int |  | `3` |" in text
    assert "### Keys of `checks[]`" in text
    assert '| `method` | str |  | `"GET"` | `"GET"`, `"HEAD"`, `"POST"` | HTTP method. |' in text
    assert "Secret: never logged" in text
    assert "**What a step changes:** nothing (probes {checks} up to {attempts} times)" in text
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(example) == {
        "steps": [
            {
                "id": "fixture-http",
                "hosts": "all",
                "uses": "fixture_http",
                "with": {"checks": [{"url": "<url>"}]},
            }
        ]
    }


@pytest.mark.parametrize(
    "role_dir",
    [*role_dirs(ROLES_DIR), FIXTURE_ROLES / "fixture_http", FIXTURE_ROLES / "demo_role"],
    ids=lambda p: p.name,
)
def test_example_step_validates(role_dir: Path) -> None:
    role = load_role(role_dir)
    text = role_readme(role)
    example = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    runbook = yaml.safe_dump(
        {"apiVersion": "runbook/v1", "kind": "Runbook", "metadata": {"name": "example"}, "spec": example}
    )
    load_runbook_text(runbook, "example.yml", [role_dir.parent])


def test_markup_becomes_markdown() -> None:
    assert cell("C(previous) and I(this) B(bold) U(https://x) L(text,https://y) a|b") == (
        "`previous` and *this* **bold** <https://x> [text](https://y) a\\|b"
    )


def test_check_exits_1_when_stale_and_0_once_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "schemas").mkdir()
    shutil.copy(PRODUCT_ROOT / "schemas" / "runbook.schema.json", tmp_path / "schemas")
    shutil.copytree(FIXTURE_ROLES / "demo_role", tmp_path / "roles" / "demo_role")
    assert docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale: docs/runbook-reference.md" in capsys.readouterr().err
    assert docs.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "roles" / "demo_role" / "README.md").is_file()
    assert docs.main(["--root", str(tmp_path), "--check"]) == 0
    spec = tmp_path / "roles" / "demo_role" / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("Parallel jobs.", "Parallel pg_dump jobs."))
    assert docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale: roles/demo_role/README.md" in capsys.readouterr().err
