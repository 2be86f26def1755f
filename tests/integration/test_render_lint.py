"""Rendered projects - of every valid fixture and every shipped runbook - pass ansible-lint's production profile
(DESIGN §3: rendering output passes ansible-lint).

Slow-ish (one ansible-lint run over every rendered valid fixture, ~15 s); RUNBOOK_SKIP_LINT=1 skips it for quick
edit-test loops. The fixture roles the rendered plays include are linted too (ansible-lint follows include_role).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.engine.render import render_project
from runner.language.loader import load_runbook
from runner.language.params import resolve
from runner.paths import COLLECTIONS_DIR, ROLES_DIR

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.yml"))
SHIPPED = sorted((Path(__file__).resolve().parents[2] / "runbooks").glob("*.yml"))
# values for required params whose pattern "x" does not match
SAMPLES = {"target": "0002", "migrations_dir": "/srv/migrations/shop", "health_url": "http://127.0.0.1:8080/health"}
ANSIBLE_LINT = Path(sys.executable).parent / "ansible-lint"


def _render_all(target: Path) -> list[Path]:
    roles_paths = [FIXTURES / "roles", ROLES_DIR]
    projects = []
    for path in [*VALID, *SHIPPED]:
        runbook = load_runbook(path, roles_paths)
        given = {name: SAMPLES.get(name, "x") for name, param in runbook.params.items() if param.required}
        params = resolve(runbook, given)
        project = render_project(runbook, roles_paths, params.values, params.secret_names)
        directory = target / (path.stem if path in VALID else f"shipped-{path.stem}")
        project.write(directory)
        projects.append(directory)
    return projects


@pytest.mark.skipif(os.environ.get("RUNBOOK_SKIP_LINT") == "1", reason="RUNBOOK_SKIP_LINT=1")
def test_rendered_fixtures_pass_ansible_lint_production(tmp_path: Path) -> None:
    linter = str(ANSIBLE_LINT) if ANSIBLE_LINT.is_file() else shutil.which("ansible-lint")
    if linter is None:
        pytest.skip("ansible-lint is not installed (pip install -e .[dev])")
    projects = _render_all(tmp_path)
    assert {p.name for p in projects} == {p.stem for p in VALID} | {f"shipped-{p.stem}" for p in SHIPPED}
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": os.pathsep.join([str(FIXTURES / "roles"), str(ROLES_DIR)]),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_DIR),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [linter, "--profile", "production", "--offline", "-f", "pep8", "--nocolor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output
