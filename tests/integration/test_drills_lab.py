"""The SEV1 runbooks' drills (molecule/<runbook>/, picked by the runbook's metadata.severity) run as part of the
suite; every drill runs with `make drill`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


def _severity(scenario: Path) -> str:
    runbook = ROOT / "runbooks" / f"{scenario.name}.yml"
    if not runbook.is_file():
        return ""
    return str((yaml.safe_load(runbook.read_text(encoding="utf-8")).get("metadata") or {}).get("severity", ""))


SEV1_DRILLS = sorted(
    p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml") if _severity(p.parent) == "SEV1"
)


@pytest.mark.parametrize("scenario", SEV1_DRILLS)
def test_sev1_drill(lab: object, scenario: str, tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "MOLECULE_GLOB": "molecule/*/molecule.yml",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "DRILL_RESULTS_DIR": str(tmp_path / "results"),
    }
    proc = subprocess.run(
        [str(bindir / "molecule"), "test", "-s", scenario],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
