#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Backup retention on one host: plan (module_utils/retention_plan), then execute exactly that plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_retention
short_description: Keep, compress, copy offsite and delete backups by a retention policy, exactly as planned
description:
  - C(plan) reads the backup set of O(dir) (managed backups of O(kind) from their manifests, or the files matching
    O(pattern)) and returns the plan - per backup keep / compress / copy / delete and the rule that decided - after
    checking the policy (an empty or contradictory policy fails before anything is read).
  - C(apply) with O(phase) C(compress) compresses what the plan compresses and returns the files to copy with
    their sha256; with O(phase) C(delete) records the verified offsite copies (O(offsite_records)) in the
    manifests and deletes what the plan deletes. Both recompute the plan and fail when it differs from
    O(expected) (the plan shown), so the run executes exactly the plan.
  - C(survey) reads the offsite copies of a backup host's directory (verified or corrupt per backup).
    C(receive) checks the sha256 of copies sent as C(<file>.partial) and renames them into place, manifest last.
  - In check mode every action returns what it would do and changes nothing.
version_added: "0.2.0"
author: runbook-runner maintainers
options:
  action: {description: What to do (C(policy) only checks the policy; C(prepare) makes O(dir))., type: str, choices: [policy, plan, apply, survey, receive, prepare], default: plan}
  host: {description: For C(receive) - inventory name of this (the backup) host, recorded with each copy., type: str, default: ""}
  phase: {description: Which part of the plan C(apply) executes., type: str, choices: [compress, delete], default: delete}
  dir: {description: Backup directory., type: path, required: true}
  kind: {description: "Managed backups (postgres, mongodb) or plain files (files, with O(pattern)).", type: str, choices: [postgres, mongodb, files], default: postgres}
  pattern: {description: "Name pattern of plain files (C(db_backup_*.sql)).", type: str, default: ""}
  marker: {description: Marker file naming the .latest target., type: str, default: .latest}
  policy: {description: "keep_last, keep_days, keep_daily, keep_weekly, keep_monthly, compress_after_days, offsite.", type: dict, default: {}}
  offsite_states: {description: "Backup name -> verified | corrupt of its offsite copy (from C(survey)).", type: dict, default: {}}
  offsite_records: {description: "Backup name -> {host, path, sha256, verified_at} of verified offsite copies.", type: dict, default: {}}
  expected: {description: "Backup name -> planned actions, as returned by C(plan) (C(plan_actions)).", type: dict, default: {}}
  incoming: {description: "For C(receive) - [{file, sha256, manifest}] sent as C(<file>.partial).", type: list, elements: dict, default: []}
"""

EXAMPLES = r"""
- name: Plan the cleanup
  runbook.ops.backup_retention:
    action: plan
    dir: /var/backups/runbook/postgres/shop
    policy: {keep_last: 7, keep_days: 30, compress_after_days: 7, offsite: true}
"""

RETURN = r"""
plan: {description: "Per backup, newest first - name, keep, rule, actions, action, state, size, time.", returned: always, type: list}
plan_actions: {description: Backup name -> planned actions., returned: always, type: dict}
lines: {description: The plan as text lines., returned: always, type: list}
summary: {description: Counts per action., returned: always, type: dict}
done: {description: "Actions taken, [[name, action], ...].", returned: always, type: list}
copies: {description: "Files to copy offsite - {name, file, path, sha256, manifest}.", returned: always, type: list}
"""

import datetime
import os
import stat

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils import retention_files as rf
from ansible_collections.runbook.ops.plugins.module_utils import retention_plan as rp
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import ensure_dir
from ansible_collections.runbook.ops.plugins.module_utils.backup_files import (
    MANIFEST_SUFFIX, PARTIAL_SUFFIX, fsync_path, sha256_file, write_atomic,
)


def read_set(params):
    directory = params["dir"]
    if not os.path.isdir(directory):
        return []
    offsite = params.get("offsite_states") or {}
    if params["kind"] == "files":
        if not params.get("pattern"):
            raise ValueError("kind files needs a pattern (e.g. db_backup_*.sql)")
        return rf.read_pattern(directory, params["pattern"], params.get("marker") or "", offsite)
    return rf.read_managed(directory, params["kind"], params.get("marker"), offsite)


def _typed(policy):
    """Policy values templated into strings ("7", "True") back to numbers and booleans."""
    out = {}
    for key, value in (policy or {}).items():
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            value = value.strip().lower() in ("true", "yes", "on")
        out[key] = value
    return out


def planned(params):
    params["policy"] = _typed(params.get("policy"))
    policy = rp.check_policy(params["policy"])  # before anything is read
    backups = read_set(params)
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    entries = rp.plan(backups, policy, now)
    return backups, entries


def _result(entries, **more):
    result = {"changed": False, "plan": entries, "plan_actions": dict((e["name"], e["actions"]) for e in entries),
              "lines": rp.plan_lines(entries), "summary": rp.summary(entries), "done": [], "copies": []}
    result.update(more)
    return result


def _matches(entries, expected, phase):
    """The recomputed plan does what the shown one said in this phase (keep/delete decisions never move)."""
    if not expected:
        return None
    got = dict((e["name"], [a for a in e["actions"] if a == phase]) for e in entries)
    want = dict((n, [a for a in acts if a == phase]) for n, acts in expected.items())
    for name in set(got) | set(want):
        if got.get(name, []) != want.get(name, []):
            return "plan changed since it was shown: %s planned %s, now %s" % (name, want.get(name), got.get(name))
    return None


def _copy_list(params, backups, entries):
    by_name = dict((b["name"], b) for b in backups)
    copies = []
    for entry in entries:
        if "copy" not in entry["actions"]:
            continue
        backup = by_name[entry["name"]]
        if backup.get("format") == "directory":
            raise ValueError("backup %s is a directory-format backup: offsite copies take single files" % entry["name"])
        path = os.path.join(params["dir"], backup["data"])
        manifest = "" if params["kind"] == "files" else os.path.join(params["dir"], entry["name"] + MANIFEST_SUFFIX)
        copies.append({"name": entry["name"], "file": backup["data"], "path": path, "sha256": sha256_file(path),
                       "manifest": manifest, "mtime": os.stat(path).st_mtime})
    return copies


def apply(params, check_mode):
    backups, entries = planned(params)
    phase = params.get("phase") or "delete"
    mismatch = _matches(entries, params.get("expected") or {}, phase)
    if mismatch:
        raise ValueError(mismatch)
    result = _result(entries)
    managed = params["kind"] != "files"
    by_name = dict((b["name"], b) for b in backups)
    for entry in entries:
        if phase not in entry["actions"]:
            continue
        result["done"].append([entry["name"], phase])
        result["changed"] = True  # in check mode: would change
        if check_mode:
            continue
        if phase == "compress":
            rf.compress(params["dir"], by_name[entry["name"]], managed)
        else:
            _delete_one(params, by_name[entry["name"]], managed)
    if phase == "compress":
        backups, entries = planned(params)
        result["copies"] = [] if check_mode else _copy_list(params, backups, entries)
    elif managed and not check_mode:
        for name, record in (params.get("offsite_records") or {}).items():
            if name in by_name and os.path.exists(os.path.join(params["dir"], name + MANIFEST_SUFFIX)):
                result["changed"] = rf.record_offsite(params["dir"], name, record) or result["changed"]
    return result


def _delete_one(params, backup, managed):
    if params["policy"].get("offsite") and backup["offsite"] != "verified":
        raise ValueError("refusing to delete %s: no verified offsite copy" % backup["name"])
    rf.delete(params["dir"], backup, managed)


def survey(params):
    """Offsite copies on the backup host: name -> verified | corrupt (files: sha256 against the sent one)."""
    states = {}
    for backup in read_set(params):
        if params["kind"] == "files":
            sidecar = os.path.join(params["dir"], "." + backup["name"] + ".sha256")
            try:
                with open(sidecar) as handle:
                    sent = handle.read().strip()
            except OSError:
                continue  # no record of what was sent: missing, sent again
            full = os.path.join(params["dir"], backup["data"])
            states[backup["name"]] = "verified" if sha256_file(full) == sent else "corrupt"
        else:
            states[backup["name"]] = "corrupt" if backup["state"] == "corrupt" else "verified"
    return {"changed": False, "states": states}


def receive(params, check_mode):
    """Copies sent as <file>.partial: sha256 checked, renamed into place (manifest last); a bad one is removed."""
    directory = params["dir"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    received = {}
    for item in params.get("incoming") or []:
        final = os.path.join(directory, os.path.basename(item["file"]))
        partial = final + PARTIAL_SUFFIX
        if check_mode:
            continue
        if not stat.S_ISREG(os.lstat(partial).st_mode):
            raise ValueError("offsite copy %s is not a regular file: refused" % partial)
        got = sha256_file(partial)
        fsync_path(partial)
        if got != item["sha256"]:
            os.unlink(partial)
            raise ValueError("offsite copy of %s arrived with sha256 %s, sent %s" % (item["file"], got, item["sha256"]))
        if item.get("mtime"):
            os.utime(partial, (float(item["mtime"]), float(item["mtime"])))  # the backup's age travels with it
        os.rename(partial, final)
        if item.get("manifest"):
            manifest = os.path.join(directory, os.path.basename(item["manifest"]))
            if not stat.S_ISREG(os.lstat(manifest + PARTIAL_SUFFIX).st_mode):
                raise ValueError("offsite manifest %s is not a regular file: refused" % manifest)
            fsync_path(manifest + PARTIAL_SUFFIX)
            os.rename(manifest + PARTIAL_SUFFIX, manifest)
        else:
            write_atomic(os.path.join(directory, "." + os.path.basename(final) + ".sha256"), (got + "\n").encode())
        fsync_path(directory)
        received[item["name"]] = {"host": params.get("host") or "", "path": final, "sha256": got, "verified_at": now}
    return {"changed": bool(received), "received": received}


def run(params, check_mode=False):
    action = params.get("action") or "plan"
    if action == "policy":
        return {"changed": False, "policy": rp.check_policy(_typed(params.get("policy")))}
    if action == "prepare":
        if check_mode or os.path.isdir(params["dir"]):
            return {"changed": False}
        ensure_dir(params["dir"], 0o700)
        return {"changed": True}
    if action == "plan":
        return _result(planned(params)[1])
    if action == "apply":
        return apply(params, check_mode)
    if action == "survey":
        return survey(params)
    return receive(params, check_mode)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", default="plan", choices=["policy", "plan", "apply", "survey", "receive", "prepare"]),
            host=dict(type="str", default=""),
            phase=dict(type="str", default="delete", choices=["compress", "delete"]),
            dir=dict(type="path", required=True),
            kind=dict(type="str", default="postgres", choices=["postgres", "mongodb", "files"]),
            pattern=dict(type="str", default=""),
            marker=dict(type="str", default=".latest"),
            policy=dict(type="dict", default={}),
            offsite_states=dict(type="dict", default={}),
            offsite_records=dict(type="dict", default={}),
            expected=dict(type="dict", default={}),
            incoming=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except rp.PolicyError as exc:
        module.fail_json(msg="invalid retention policy: %s" % exc)
    except (OSError, ValueError, KeyError) as exc:
        module.fail_json(msg="backup retention in %s failed: %s" % (module.params["dir"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
