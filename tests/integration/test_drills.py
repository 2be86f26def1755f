"""The SEV1 rollback drills (molecule scenarios) run as part of the suite; the others run with `make drill`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SEV1_DRILLS = sorted(p.name for p in (ROOT / "molecule").glob("sev1-*") if (p / "molecule.yml").is_file())


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
    }
    proc = subprocess.run(
        [str(bindir / "molecule"), "test", "-s", scenario],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
