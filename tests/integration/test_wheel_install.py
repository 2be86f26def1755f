"""The product installed from its wheel, as operators install it, used outside the checkout.

The wheel is built from an sdist of the working tree (as pip builds one from PyPI), offline with the venv's
setuptools, and installed with `--no-deps` into a fresh venv under a temporary directory; that venv reaches its
dependencies through a .pth file naming the development venv's site-packages (no network), and gets the
dependencies' console scripts (ansible-playbook, ...) rewritten to its own interpreter. Every command runs from a
temporary directory with the checkout off PATH, so roles, schemas, policies, runbooks, the lab inventory and
recipes, and the collection can only come from the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from labtools import lb_status

from runner import lab as lab_driver
from runner.lab import LabStatus

CHECKOUT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("roles", "schemas", "policies", "runbooks", "inventories", "lab")

OWN_RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata:
  name: lb-answers
  title: The service answers through the lb
  severity: SEV3
spec:
  steps:
    - id: verify
      hosts: lb
      uses: verify
      with:
        http:
          - url: "http://{{ lb_address }}:{{ lb_port }}/health"
            status: 200
"""


@dataclass(frozen=True)
class Installed:
    source: Path  # the working tree's files the wheel was built from
    wheel: Path
    venv: Path
    data: Path  # runner/_data inside the venv's site-packages
    workdir: Path  # outside the checkout: the operator's own repository
    env: dict[str, str]

    def runbook(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.command(str(self.venv / "bin" / "runbook"), *args, timeout=timeout)

    def python(self, code: str) -> str:
        proc = self.command(str(self.venv / "bin" / "python"), "-c", code)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def command(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _checked(*argv: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"


def _source_tree(dest: Path) -> Path:
    """The files a commit of the working tree would hold (tracked and new, not ignored), copied to dest."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = CHECKOUT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(source.read_bytes())
            (dest / name).chmod(source.stat().st_mode & 0o777)
    return dest


def _build_wheel(base: Path, source: Path) -> Path:
    code = f"from setuptools import build_meta; build_meta.build_sdist({str(base / 'sdist')!r})"
    _checked(sys.executable, "-c", code, cwd=source)
    (sdist,) = (base / "sdist").glob("*.tar.gz")
    _checked(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", str(base / "wheel"), str(sdist),
    )  # fmt: skip
    (wheel,) = (base / "wheel").glob("*.whl")
    return wheel


def _fresh_venv(venv: Path, wheel: Path) -> Path:
    """A venv holding only the wheel (its dependencies reached through a .pth); returns its site-packages."""
    _checked(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", query], capture_output=True, text=True, check=True).stdout.strip())
    dev_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(dev_site)))
    _checked(str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel))
    shebang = f"#!{sys.executable}\n".encode()
    for script in Path(sys.executable).parent.iterdir():
        target = venv / "bin" / script.name
        if script.is_file() and not target.exists() and script.read_bytes().startswith(shebang):
            target.write_bytes(f"#!{python}\n".encode() + script.read_bytes()[len(shebang) :])
            target.chmod(0o755)
    return site


def _under(path: Path, *roots: Path) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _operator_env(venv: Path, state: Path) -> dict[str, str]:
    """The caller's environment without the checkout's venv on PATH and without Ansible or runner overrides."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "RUNBOOK_ROLES_PATH")
        and not name.startswith("ANSIBLE_")
    }
    dev_bin = Path(sys.executable).parent
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not _under(Path(p), CHECKOUT, dev_bin)]
    return {**kept, "PATH": os.pathsep.join([str(venv / "bin"), *path]), "RUNBOOK_STATE_DIR": str(state)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(CHECKOUT)
    source = _source_tree(base / "src")
    wheel = _build_wheel(base, source)
    site = _fresh_venv(base / "venv", wheel)
    workdir = base / "operator-repo"
    workdir.mkdir()
    (workdir / "lb-answers.yml").write_text(OWN_RUNBOOK)
    (workdir / "broken.yml").write_text(OWN_RUNBOOK.replace("uses: verify", "uses: no_such_role"))
    env = _operator_env(base / "venv", base / "state")
    return Installed(source, wheel, base / "venv", site / "runner" / "_data", workdir, env)


def test_the_wheel_carries_the_product_files(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    tree = installed.source
    shipped = [p for d in PRODUCT_DIRS for p in (tree / d).rglob("*") if p.is_file()]
    missing = [str(p) for p in shipped if f"runner/_data/{p.relative_to(tree)}" not in names]
    package = [p for p in (tree / "runner").rglob("*") if p.is_file()]
    missing += [str(p) for p in package if str(p.relative_to(tree)) not in names]
    assert not missing, f"not in the wheel: {missing}"
    collection = "runner/collections/ansible_collections/runbook/ops"
    assert {f"{collection}/galaxy.yml", f"{collection}/meta/runtime.yml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_runner_comes_from_the_installed_wheel(installed: Installed) -> None:
    where = installed.python(
        "import runner, runner.paths as p, runner.lab as lab; "
        "print(runner.__file__, p.PRODUCT_ROOT, p.ROLES_DIR, p.COLLECTIONS_DIR, lab.RECIPES_DIR, sep='\\n')"
    ).splitlines()
    package = installed.data.parent
    assert Path(where[0]) == package / "__init__.py"
    assert [Path(p) for p in where[1:]] == [installed.data, installed.data / "roles", package / "collections",
                                            installed.data / "lab"]  # fmt: skip
    assert all(Path(p).is_dir() for p in where[1:]) and not package.is_relative_to(CHECKOUT)
    recipe = installed.data / "lab" / "build-host-image.sh"
    assert os.access(recipe, os.X_OK), f"{recipe} lost its executable bit"


def test_validate_plan_render_outside_the_checkout(installed: Installed) -> None:
    shipped = sorted(str(p) for p in (installed.data / "runbooks").glob("*.yml"))
    assert len(shipped) >= 10
    proc = installed.runbook("validate", *shipped)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    proc = installed.runbook("validate", "lb-answers.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = installed.runbook("validate", "broken.yml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "broken.yml:" in proc.stdout + proc.stderr and "internal error" not in proc.stdout + proc.stderr

    inventory = str(installed.data / "inventories" / "lab" / "hosts.yml")
    deploy = str(installed.data / "runbooks" / "deploy.yml")
    proc = installed.runbook("plan", deploy, "-i", inventory, "-p", "version=v2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app1" in proc.stdout and "app2" in proc.stdout

    proc = installed.runbook("render", "lb-answers.yml", "-o", "rendered")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = (installed.workdir / "rendered" / "ansible.cfg").read_text()
    assert f"roles_path = {installed.data / 'roles'}" in cfg and str(CHECKOUT) not in cfg, cfg
    assert f"collections_path = {installed.data.parent / 'collections'}" in cfg, cfg


@pytest.fixture
def serving_lab(lab: LabStatus) -> LabStatus:
    """The lab with the service answering through the lb (reset only when an earlier test left it otherwise)."""
    return lab if lb_status() == 200 else lab_driver.reset(progress=lambda _line: None)


@pytest.mark.lab
def test_lab_status_and_run_outside_the_checkout(installed: Installed, serving_lab: LabStatus) -> None:
    proc = installed.runbook("lab", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app1" in proc.stdout

    inventory = str(installed.data / "inventories" / "lab" / "hosts.yml")
    runbook = str(installed.data / "runbooks" / "cache-flush.yml")
    proc = installed.runbook("run", runbook, "-i", inventory, "-p", "pattern=wheel-install-test:*", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (report,) = (installed.workdir.parent / "state" / "runs").glob("*/report.json")
    assert json.loads(report.read_text())["status"] == "succeeded"
