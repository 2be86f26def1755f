"""Build hook: a wheel carries the product's files (roles, schemas, policies, runbooks, inventories, lab recipes)
inside the package, under runner/_data/, where runner.paths finds them.

The repository keeps those directories at its top level (DESIGN section 2), outside the package, so build_py copies
them in at build time (MANIFEST.in puts them in the sdist, from which pip builds the wheel). Symlinks or a staged
copy inside runner/ are avoided: setuptools does not follow symlinks reliably in sdists, and a staged copy would
shadow the checkout. An editable install skips the copy, so it keeps reading the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PRODUCT_DIRS = ("roles", "schemas", "policies", "runbooks", "inventories", "lab")
PACKAGED_DATA = Path("runner", "_data")
NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.py[cod]", ".*")


class BuildPyWithProductFiles(build_py):
    """build_py, then the product's top-level directories copied into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / PACKAGED_DATA
        shutil.rmtree(target, ignore_errors=True)  # a reused build/ must not keep files removed since
        for name in PRODUCT_DIRS:
            shutil.copytree(name, target / name, ignore=NOT_SHIPPED)


setup(cmdclass={"build_py": BuildPyWithProductFiles})
