#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Versioned snapshots of a set of configuration files, and their restore with a validate command run before
anything is activated (the files written back at once when it fails)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: config_files
short_description: Snapshot a set of config files (versioned, checksummed) or restore one, validated before activation
description:
  - C(action=snapshot) copies the files of a set into C(<dir>/<set>/<version>/) - each fsynced, its sha256, size,
    mode and owner in C(manifest.json), written last, through a C(.partial) directory and a rename - so a snapshot
    with a manifest is whole. When the files are the same as an existing snapshot's, that snapshot is returned
    and nothing is written. The O(keep) newest snapshots are kept.
  - C(action=restore) checks the chosen snapshot against its manifest (a changed or missing copy is refused before
    anything is written), snapshots the current files when no snapshot holds them yet (so the restore can be
    undone), writes the files back atomically with their modes and owners, runs O(validate_command) and only then
    O(activate_command). When either fails, the files as they were are written back (and activated again).
  - O(version) is C(last_good) - the newest snapshot marked known good (O(good) on a snapshot taken while the
    service is verified healthy); restoring it twice changes nothing the second time - C(latest), C(previous) - the
    newest snapshot whose files differ from the current ones, the undo of the last change - or a version id.
  - The newest known-good snapshot is never pruned.
  - Check mode says what would be snapshotted or restored and writes nothing.
  - One snapshot or restore of a set runs at a time on a host (an exclusive lock in O(dir)).
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  action: {description: What to do., type: str, choices: [snapshot, restore], required: true}
  set: {description: Name of the set of files (nginx-site)., type: str, required: true}
  files: {description: Absolute paths of the files of the set (snapshot)., type: list, elements: path, default: []}
  dir: {description: Where snapshots are kept., type: path, default: /var/lib/runbook/config}
  version: {description: "Snapshot to restore - last_good, latest, previous or a version id.", type: str, default: last_good}
  good: {description: Mark the snapshot known good (snapshot; take it once the service is verified)., type: bool, default: false}
  keep: {description: Snapshots kept per set (the newest)., type: int, default: 20}
  label: {description: Free text recorded in the manifest (why the snapshot was taken)., type: str, default: ""}
  validate_command: {description: Command (argv) that must succeed with the restored files in place, before activation; empty for none., type: list, elements: str, default: []}
  activate_command: {description: Command (argv) that makes the service load the files; empty for none., type: list, elements: str, default: []}
  run_id: {description: Run id recorded in the manifest., type: str, default: ""}
  prepare:
    description:
      - Restore - choose the snapshot and take the safety snapshot of the current files, and write nothing live;
        returns what the restore does (C(version), C(version_before), C(changed)). The config_restore role records
        that as the step's intent, then restores with O(version) and O(version_before) from it, so the step re-run
        after the control node died restores the same snapshot instead of resolving C(previous) again.
    type: bool
    default: false
  version_before:
    description: Restore - the snapshot that holds the files as they were before this step (its intent); no
      safety snapshot is taken, and it is what is written back when validation fails.
    type: str
    default: ""
  reactivate:
    description: Restore - validate and activate even when the files already hold the snapshot (the re-run of a
      restore that may have been interrupted after writing them).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Snapshot the site configuration
  runbook.ops.config_files:
    action: snapshot
    set: nginx-site
    files: [/etc/nginx/conf.d/site.conf]
- name: Go back to the configuration before the last change
  runbook.ops.config_files:
    action: restore
    set: nginx-site
    version: previous
    validate_command: [nginx, -t, -q]
    activate_command: [nginx, -s, reload]
"""

RETURN = r"""
version: {description: The snapshot taken, found or restored., returned: always, type: str}
version_before: {description: The snapshot that holds the files as they were before (restore)., returned: always, type: str}
files: {description: Path, sha256 and whether it changed, per file., returned: always, type: list}
"""

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.live_files import put_file, run_command
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import (
    check_target, ensure_dir, fsync_dir, write_file,
)
from ansible_collections.runbook.ops.plugins.module_utils.step_intents import IntentError, held_lock

SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VERSION = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
MANIFEST = "manifest.json"
GOOD = "known-good"  # a file in a snapshot's directory: the service was verified healthy with these files


class ConfigError(Exception):
    pass


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def stored_path(version_dir, path):
    return os.path.join(version_dir, "files", path.lstrip("/"))


def read_current(paths):
    """path -> (bytes, stat) of the live files; a missing file is an error (a set names files that exist)."""
    current = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                current[path] = (handle.read(), os.stat(path))
        except OSError as exc:
            raise ConfigError("cannot read %s: %s" % (path, exc))
    return current


def fingerprint(entries):
    return sorted((e["path"], e["sha256"]) for e in entries)


class Store(object):
    def __init__(self, base, name):
        if not SET_NAME.match(name or ""):
            raise ConfigError("set %r is not a name of lower-case letters, digits, - and _" % name)
        self.name = name
        self.root = os.path.join(base, name)

    def versions(self):
        """Complete snapshots (with a manifest), oldest first; ids sort in time order."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(n for n in names if VERSION.match(n) and os.path.isfile(os.path.join(self.root, n, MANIFEST)))

    def is_good(self, version):
        return os.path.isfile(os.path.join(self.root, version, GOOD))

    def mark_good(self, version, run_id):
        if self.is_good(version):
            return False
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_file(os.path.join(self.root, version, GOOD), ("%s %s\n" % (stamp, run_id)).encode())
        return True

    def manifest(self, version):
        try:
            with open(os.path.join(self.root, version, MANIFEST)) as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConfigError("snapshot %s of %s has no readable manifest: %s" % (version, self.name, exc))

    def holding(self, entries):
        """The newest snapshot whose files are exactly `entries` (paths and checksums), or None."""
        want = fingerprint(entries)
        for version in reversed(self.versions()):
            if fingerprint(self.manifest(version)["files"]) == want:
                return version
        return None

    def verified_copies(self, version):
        """path -> (bytes, entry) of a snapshot, each checked against the manifest."""
        manifest = self.manifest(version)
        copies = {}
        for entry in manifest["files"]:
            stored = stored_path(os.path.join(self.root, version), entry["path"])
            try:
                with open(stored, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                raise ConfigError("snapshot %s: the copy of %s is missing (%s)" % (version, entry["path"], exc))
            if len(data) != entry["size"] or sha256_bytes(data) != entry["sha256"]:
                raise ConfigError("snapshot %s: the copy of %s does not match its checksum; refusing it"
                                  % (version, entry["path"]))
            copies[entry["path"]] = (data, entry)
        return copies

    def take(self, current, label, run_id, keep):
        now = datetime.datetime.now(datetime.timezone.utc)
        version = now.strftime("%Y%m%dT%H%M%S.%fZ")
        final = os.path.join(self.root, version)
        partial = final + ".partial"
        ensure_dir(self.root, 0o700)  # a link planted for the store would send the copies elsewhere
        entries = []
        for path in sorted(current):
            data, st = current[path]
            target = stored_path(partial, path)
            ensure_dir(os.path.dirname(target), 0o700)
            write_file(target, data)
            entries.append({"path": path, "sha256": sha256_bytes(data), "size": len(data),
                            "mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid})
        manifest = {"set": self.name, "version": version, "created": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "label": label, "run_id": run_id, "files": entries}
        write_file(os.path.join(partial, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        os.rename(partial, final)
        fsync_dir(self.root)
        self.prune(keep)
        return version, entries

    def prune(self, keep):
        """Keep the `keep` newest snapshots, and always the newest known-good one."""
        versions = self.versions()
        good = [v for v in versions if self.is_good(v)]
        for old in versions[:max(0, len(versions) - max(1, int(keep)))]:
            if good and old == good[-1]:
                continue
            shutil.rmtree(os.path.join(self.root, old), ignore_errors=True)
        for name in os.listdir(self.root):
            if name.endswith(".partial"):  # left by an interrupted snapshot: never complete
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)


def entries_of(current):
    return [{"path": p, "sha256": sha256_bytes(d)} for p, (d, _) in sorted(current.items())]


def snapshot(params, check_mode=False):
    paths = [os.path.abspath(p) for p in params.get("files") or []]
    if not paths:
        raise ConfigError("files is empty: a snapshot needs the paths of the set's files")
    store = Store(params.get("dir") or "/var/lib/runbook/config", params["set"])
    current = read_current(paths)
    found = store.holding(entries_of(current))
    files = [{"path": e["path"], "sha256": e["sha256"]} for e in entries_of(current)]
    good = bool(params.get("good"))
    as_good = " (known good)" if good else ""
    if found:
        marked = good and not store.is_good(found)
        if marked and not check_mode:
            store.mark_good(found, params.get("run_id") or "")
        return {"changed": marked, "version": found, "good": store.is_good(found) or marked, "files": files,
                "msg": "the files of %s are already snapshot %s%s" % (store.name, found,
                                                                    "; marked known good" if marked else "")}
    if check_mode:
        return {"changed": True, "version": "", "good": good, "files": files,
                "msg": "would snapshot %d files of %s%s" % (len(paths), store.name, as_good)}
    version, _ = store.take(current, params.get("label") or "", params.get("run_id") or "", params.get("keep") or 20)
    if good:
        store.mark_good(version, params.get("run_id") or "")
    return {"changed": True, "version": version, "good": good, "files": files,
            "msg": "snapshot %s of %s: %d files%s" % (version, store.name, len(paths), as_good)}


def current_of(paths):
    """The live files among `paths` (one that does not exist is left out: a restore creates it)."""
    return read_current([p for p in sorted(paths) if os.path.exists(p)])


def choose(store, version, versions):
    if version == "latest":
        return versions[-1]
    if version == "last_good":
        good = [v for v in versions if store.is_good(v)]
        if not good:
            raise ConfigError("no snapshot of %s is marked known good (snapshot with good: true once the service "
                              "is verified)" % store.name)
        return good[-1]
    if version == "previous":
        # the files as they are now, compared over the paths of the newest snapshot
        now = fingerprint(entries_of(current_of(e["path"] for e in store.manifest(versions[-1])["files"])))
        for candidate in reversed(versions):
            if fingerprint(store.manifest(candidate)["files"]) != now:
                return candidate
        raise ConfigError("every snapshot of %s holds the current files: nothing earlier to go back to" % store.name)
    if version not in versions:
        raise ConfigError("no snapshot %s of %s (the newest: %s)" % (version, store.name, ", ".join(versions[-5:])))
    return version


def restore(params, check_mode=False):
    store = Store(params.get("dir") or "/var/lib/runbook/config", params["set"])
    versions = store.versions()
    if not versions:
        raise ConfigError("no snapshot of %s in %s" % (store.name, store.root))
    target = choose(store, params.get("version") or "last_good", versions)
    copies = store.verified_copies(target)
    current = current_of(copies)
    before = params.get("version_before") or (
        store.holding(entries_of(current)) if set(current) == set(copies) else None)
    files = [{"path": p, "sha256": e["sha256"], "changed": p not in current or sha256_bytes(current[p][0]) != e["sha256"]}
             for p, (_, e) in sorted(copies.items())]
    result = {"changed": False, "version": target, "version_before": before or "", "files": files,
              "set": store.name, "safety_snapshot": "", "validated": ""}
    changes = sum(1 for f in files if f["changed"])
    if not changes and not params.get("reactivate"):
        result["msg"] = "the files of %s are already snapshot %s: nothing to restore" % (store.name, target)
        return result
    result["changed"] = bool(changes)
    for path in copies:  # every live file is checked before anything is written, the safety snapshot included
        check_target(path)
    if check_mode:
        result["msg"] = "would restore %s of %s (%d files change)%s" % (
            target, store.name, changes,
            ", then run %s" % " ".join(params["validate_command"]) if params.get("validate_command") else "")
        return result
    if before is None and current and changes:
        before, _ = store.take(current, "before restoring %s" % target, params.get("run_id") or "",
                               max(int(params.get("keep") or 20), len(versions) + 1))
        result.update(version_before=before, safety_snapshot=before)
    if params.get("prepare"):
        result["msg"] = "restoring %s of %s changes %d files (before: %s)" % (target, store.name, changes, before)
        return result
    if params.get("version_before"):  # the step's intent: what the files were before it first wrote any
        originals = dict((p, (d, int(e["mode"], 8), e["uid"], e["gid"]))
                         for p, (d, e) in store.verified_copies(before).items())
    else:
        originals = dict((p, (d, st.st_mode & 0o7777, st.st_uid, st.st_gid)) for p, (d, st) in current.items())
    for path, (data, entry) in sorted(copies.items()):
        put_file(path, data, int(entry["mode"], 8), entry["uid"], entry["gid"])
    activate(params, target, copies, originals, result)
    result["msg"] = "restored snapshot %s of %s (%d files changed; before: %s)%s" % (
        target, store.name, changes, before or "no snapshot",
        "; validated with %s" % result["validated"] if result["validated"] else "")
    return result


def activate(params, target, copies, originals, result):
    """Validate, then activate; when either fails, the files as they were are written back (and activated)."""

    def write_back():
        for path in copies:
            if path in originals:
                data, mode, uid, gid = originals[path]
                put_file(path, data, mode, uid, gid)
            elif os.path.exists(path):
                os.unlink(path)

    if params.get("validate_command"):
        rc, out = run_command(params["validate_command"])
        if rc != 0:
            write_back()
            raise ConfigError("%s rejects snapshot %s (exit %d): %s; the files as they were are back, nothing "
                              "activated" % (" ".join(params["validate_command"]), target, rc, out[-500:]))
        result["validated"] = " ".join(params["validate_command"])
    if params.get("activate_command"):
        rc, out = run_command(params["activate_command"])
        if rc != 0:
            write_back()
            run_command(params["activate_command"])
            raise ConfigError("%s failed (exit %d): %s; the files as they were are back" % (
                " ".join(params["activate_command"]), rc, out[-500:]))


@contextlib.contextmanager
def set_lock(params, check_mode):
    """One snapshot or restore of a set at a time on this host (none in check mode: nothing is written)."""
    if check_mode:
        yield
        return
    try:
        with held_lock(params.get("dir") or "/var/lib/runbook/config", ".%s.lock" % params["set"],
                       what="config set %s" % params["set"]):
            yield
    except IntentError as exc:
        raise ConfigError(str(exc))


def run(params, check_mode=False):
    if not SET_NAME.match(params.get("set") or ""):
        raise ConfigError("set %r is not a name of lower-case letters, digits, - and _" % params.get("set"))
    with set_lock(params, check_mode):
        if params["action"] == "snapshot":
            return snapshot(params, check_mode)
        return restore(params, check_mode)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=["snapshot", "restore"]),
            set=dict(type="str", required=True),
            files=dict(type="list", elements="path", default=[]),
            dir=dict(type="path", default="/var/lib/runbook/config"),
            version=dict(type="str", default="last_good"),
            good=dict(type="bool", default=False),
            keep=dict(type="int", default=20),
            label=dict(type="str", default=""),
            validate_command=dict(type="list", elements="str", default=[]),
            activate_command=dict(type="list", elements="str", default=[]),
            run_id=dict(type="str", default=""),
            prepare=dict(type="bool", default=False),
            version_before=dict(type="str", default=""),
            reactivate=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except (ConfigError, OSError) as exc:
        module.fail_json(msg="config %s of %s failed: %s" % (module.params["action"], module.params["set"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
