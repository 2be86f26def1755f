"""Which Jinja filters and tests a template may name, and where they come from.

Step templates are rendered by Ansible: they may use Jinja's own filters and tests, ansible.builtin's (by short
name or as ansible.builtin.NAME), and any installed collection's by fully qualified name (community.general.
json_query, runbook.ops.NAME). Notification templates are rendered by the runner with Jinja alone.

Jinja's names are known at once. Ansible's are listed by Ansible's plugin loader in a child process
(runner.language.plugin_index, a few seconds) only when a template names something Jinja lacks, and cached in
the user's cache directory until the installed Ansible or any collection's filter/test plugins change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from runner import safe_write
from runner.language.role_specs import suggest
from runner.paths import COLLECTIONS_DIR

_JINJA = jinja2.Environment()  # what the runner renders notifications with (and what Ansible builds on)
JINJA_NAMES = {"filter": frozenset(_JINJA.filters), "test": frozenset(_JINJA.tests)}
BUILTIN = "ansible.builtin."
_SHORT_PREFIXES = (BUILTIN, "ansible.legacy.")
_INDEX_TIMEOUT_S = 180
_FORMAT = 2  # of the cache file
_PLUGIN_SUFFIXES = (".py", ".yml", ".yaml")


@dataclass(frozen=True)
class Known:
    """Names one kind of plugin (filter or test) resolves to in Ansible."""

    names: frozenset[str]  # fully qualified
    redirects: dict[str, str]

    def resolves(self, name: str) -> bool:
        full = _qualified(name)
        for _ in range(8):  # a redirect may lead to another
            if full in self.names:
                return True
            if full not in self.redirects:
                return False
            full = self.redirects[full]
        return False

    def short_names(self) -> list[str]:
        return sorted({n[len(BUILTIN) :] for n in (*self.names, *self.redirects) if n.startswith(BUILTIN)})

    def in_collection(self, collection: str) -> list[str]:
        return sorted(n for n in (*self.names, *self.redirects) if n.rsplit(".", 1)[0] == collection)


def _qualified(name: str) -> str:
    if name.count(".") < 2:
        return BUILTIN + name
    for prefix in _SHORT_PREFIXES:
        if name.startswith(prefix):
            return BUILTIN + name[len(prefix) :]
    return name


@dataclass(frozen=True)
class AnsiblePlugins:
    kinds: dict[str, Known]  # "filter", "test"
    collections: frozenset[str]  # every installed collection, ansible.builtin included


def unknown_in_ansible(kind: str, name: str) -> str | None:
    """Why Ansible cannot resolve this filter/test name, as a hint ("" or "; did you mean ..."); None when it can.

    None also when Ansible cannot be asked: then nothing is reported.
    """
    if name in JINJA_NAMES[kind]:
        return None
    plugins = ansible_plugins()
    if plugins is None or plugins.kinds[kind].resolves(name):
        return None
    known = plugins.kinds[kind]
    if name.count(".") < 2:
        close = suggest(name, sorted({*JINJA_NAMES[kind], *known.short_names()} - {name}))
        return f"; did you mean {close!r}?" if close else ""
    collection = _qualified(name).rsplit(".", 1)[0]
    if collection not in plugins.collections:
        return f" (no collection {collection} is installed)"
    in_collection = known.in_collection(collection)
    close = suggest(name.rsplit(".", 1)[1], [n.rsplit(".", 1)[1] for n in in_collection if n != name])
    return f"; did you mean '{collection}.{close}'?" if close else ""


def unknown_in_jinja(kind: str, name: str) -> str | None:
    """Why plain Jinja has no such filter/test, as a hint; None when it has."""
    if name in JINJA_NAMES[kind]:
        return None
    close = suggest(name, sorted(JINJA_NAMES[kind]))
    return f"; did you mean {close!r}?" if close else ""


@lru_cache(maxsize=1)
def ansible_plugins() -> AnsiblePlugins | None:
    """Ansible's filters and tests (None when Ansible cannot list them)."""
    configured = _configured_roots()
    fingerprint = _fingerprint([*configured, *(Path(p) for p in sys.path if p)])
    cache = _cache_file()
    raw = _read_cache(cache, fingerprint)
    if raw is None:
        raw = _run_index(configured)
        if raw is None:
            return None
        _write_cache(cache, fingerprint, raw)
    kinds = {kind: Known(frozenset(raw[kind]["names"]), dict(raw[kind]["redirects"])) for kind in JINJA_NAMES}
    return AnsiblePlugins(kinds, frozenset(raw["collections"]))


def _configured_roots() -> list[Path]:
    """The collection paths the runner gives Ansible: the product's, then $ANSIBLE_COLLECTIONS_PATH."""
    extra = [Path(p) for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([COLLECTIONS_DIR, *extra]))


def _fingerprint(paths: list[Path]) -> str:
    """Changes whenever Ansible or a collection's filter/test plugins (or their routing) change.

    paths are collection roots (holding ansible_collections/) or ansible_collections folders themselves; Ansible
    also finds collections on sys.path.
    """
    digest = hashlib.sha256(f"{_FORMAT}:{sys.executable}".encode())
    spec = importlib.util.find_spec("ansible")
    core = Path(spec.origin).parent if spec is not None and spec.origin else Path("-")
    watched = [core / "release.py", core / "config" / "ansible_builtin_runtime.yml"]
    watched += [core / "plugins" / "filter", core / "plugins" / "test"]
    roots = dict.fromkeys(p if p.name == "ansible_collections" else p / "ansible_collections" for p in paths)
    for root in roots:
        for collection in sorted(root.glob("*/*")) if root.is_dir() else ():
            watched += [collection / "meta" / "runtime.yml", collection / "plugins" / "filter"]
            watched.append(collection / "plugins" / "test")
    for path in watched:
        digest.update(_stamp(path).encode())
    return digest.hexdigest()


def _stamp(path: Path) -> str:
    """A file's mtime, or a folder's plugin files with theirs (not the folder's: __pycache__ changes it)."""
    try:
        if not path.is_dir():
            return f"{path}:{path.stat().st_mtime_ns}"
        entries = [e for e in os.scandir(path) if e.name.endswith(_PLUGIN_SUFFIXES)]
        return f"{path}:" + ",".join(sorted(f"{e.name}:{e.stat().st_mtime_ns}" for e in entries))
    except OSError:
        return f"{path}:-"


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runbook" / "ansible-plugins.json"


def _read_cache(path: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return None
    index = data.get("index")
    return index if _well_formed(index) else None


def _write_cache(path: Path, fingerprint: str, index: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        safe_write.write_text(path, json.dumps({"fingerprint": fingerprint, "index": index}), mode=0o644)
    except OSError:
        pass  # no cache: the next validate asks Ansible again


def _run_index(roots: list[Path]) -> dict[str, Any] | None:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(str(r) for r in roots)
    try:
        with tempfile.TemporaryDirectory(prefix="runbook-plugins-") as scratch:
            # an empty configuration: a project's ansible.cfg in the working directory must not change the answer
            config = Path(scratch) / "ansible.cfg"
            config.write_text("[defaults]\n", encoding="utf-8")
            env["ANSIBLE_CONFIG"] = str(config)
            done = subprocess.run(
                [sys.executable, "-P", "-m", "runner.language.plugin_index"],
                capture_output=True,
                text=True,
                env=env,
                cwd=scratch,
                timeout=_INDEX_TIMEOUT_S,
                check=False,
            )
        index = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return index if _well_formed(index) else None


def _well_formed(index: Any) -> bool:
    return (
        isinstance(index, dict)
        and isinstance(index.get("collections"), list)
        and all(
            isinstance(index.get(kind), dict)
            and isinstance(index[kind].get("names"), list)
            and isinstance(index[kind].get("redirects"), dict)
            for kind in JINJA_NAMES
        )
    )
