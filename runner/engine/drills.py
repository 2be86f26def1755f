"""`runbook drill NAME`: one drill, the Molecule scenario molecule/NAME/ of a checkout, run as `make drill` runs it.

The scenario brings the lab up, puts it in the incident's state, runs the runbook through the CLI, verifies from
outside and writes its result (<results>/NAME.json, see molecule/shared/tasks/result.yml). The lab is shared with
the lab tests: the drill waits for the lab's in-use lock (<lab dir>/in-use.lock) first, unless the caller already
holds it (hold_lab=False). The drill is then recorded in history (runner.records.drills).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InvalidInput

Progress = Callable[[str], None]
DRILL_TIMEOUT_S = 3600


@dataclass(frozen=True)
class DrillOutcome:
    scenario: str
    passed: bool
    exit_status: int
    result: dict[str, Any] | None
    elapsed_s: float
    run_id: str = ""


def project_dir(given: str | None = None) -> Path:
    """The checkout that holds molecule/: --project, else the runner's own checkout, else the working directory."""
    for candidate in ([Path(given)] if given else [Path(__file__).resolve().parents[2], Path.cwd()]):
        if (candidate / "molecule").is_dir():
            return candidate.resolve()
    raise InvalidInput("no molecule/ directory of drills here: run from a checkout of the project, or give --project")


def scenarios(project: Path) -> list[str]:
    return sorted(p.parent.name for p in (project / "molecule").glob("*/molecule.yml"))


def check_scenario(project: Path, name: str) -> None:
    known = scenarios(project)
    if name not in known:
        raise InvalidInput(f"no drill named {name!r} (molecule/{name}/molecule.yml); drills: {', '.join(known)}")


def lab_lock_path() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_DIR") or "/var/lib/runbook-lab") / "in-use.lock"


@contextmanager
def lab_in_use(progress: Progress) -> Iterator[None]:
    path = lab_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for the lab (in use by another test or drill: {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def molecule_env(project: Path, results: Path) -> dict[str, str]:
    """Molecule runs ansible-config and ansible-playbook from PATH: the runner's own bin directory first."""
    bindir = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "MOLECULE_GLOB": "molecule/*/molecule.yml",
        "DRILL_RESULTS_DIR": str(results),
        "DRILL_RUNBOOK": str(bindir / "runbook"),
    }


def read_result(results: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run(
    name: str, project: Path, results: Path | None = None, *, hold_lab: bool = True, progress: Progress = print
) -> DrillOutcome:
    """Run the scenario (`molecule test -s NAME`); passed when molecule succeeds and the result says so."""
    check_scenario(project, name)
    results = results or Path(tempfile.mkdtemp(prefix=f"runbook-drill-{name}-"))
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").unlink(missing_ok=True)
    argv = [str(Path(sys.executable).with_name("molecule")), "test", "-s", name]
    started = time.monotonic()
    with lab_in_use(progress) if hold_lab else _nothing():
        progress(f"drill {name}: molecule test -s {name}")
        proc = subprocess.run(argv, cwd=project, env=molecule_env(project, results), check=False,
                              timeout=DRILL_TIMEOUT_S)  # fmt: skip
    result = read_result(results, name)
    passed = proc.returncode == 0 and bool(result and result.get("passed"))
    return DrillOutcome(name, passed, proc.returncode, result, time.monotonic() - started)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
