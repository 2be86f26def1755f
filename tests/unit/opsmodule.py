"""Import a runbook.ops module file as a plain library (its module_utils resolve from runner/collections)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

COLLECTIONS = Path(__file__).resolve().parents[2] / "runner" / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "runbook" / "ops" / "plugins" / "modules"

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"runbook_ops_{name}", MODULES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
