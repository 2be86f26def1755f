"""Where the product's own files and the user's state live."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# An installed wheel carries roles/, schemas/, ... in runner/_data (copied there by setup.py's build_py); a checkout
# (and its editable install) keeps them at the top level of the repository (DESIGN section 2).
PACKAGED_DATA_DIR = PACKAGE_DIR / "_data"
CHECKOUT_ROOT = PACKAGE_DIR.parent
PRODUCT_ROOT = PACKAGED_DATA_DIR if PACKAGED_DATA_DIR.is_dir() else CHECKOUT_ROOT
ROLES_DIR = PRODUCT_ROOT / "roles"
SCHEMAS_DIR = PRODUCT_ROOT / "schemas"
POLICIES_DIR = PRODUCT_ROOT / "policies"
RUNBOOKS_DIR = PRODUCT_ROOT / "runbooks"
INVENTORIES_DIR = PRODUCT_ROOT / "inventories"
LAB_RECIPES_DIR = PRODUCT_ROOT / "lab"
COLLECTIONS_DIR = PACKAGE_DIR / "collections"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--state-dir, else $RUNBOOK_STATE_DIR, else the user's state directory (XDG)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("RUNBOOK_STATE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "runbook"


def extra_roles_paths(cli_paths: list[str] | None = None) -> list[Path]:
    """--roles-path entries first, then $RUNBOOK_ROLES_PATH (colon separated); the product's roles/ last."""
    paths = [Path(p).expanduser().resolve() for p in (cli_paths or [])]
    env = os.environ.get("RUNBOOK_ROLES_PATH", "")
    paths += [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p]
    return [*paths, ROLES_DIR]
