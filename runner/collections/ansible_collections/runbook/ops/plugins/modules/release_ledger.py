#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: release_ledger
short_description: Per-host, per-container release ledger (what was deployed, in order, and what was verified)
version_added: "0.1.0"
description:
  - Keeps an ordered list of releases of one container in C(<ledger_dir>/<container>.json) on the host. Each
    release has a monotonic integer C(id), the image reference, image id and digests, the run spec, when it was
    deployed (UTC), the action (C(deploy), C(rollback), C(adopt)), and whether and when it was verified healthy.
  - The ledger is the only source of release history; nothing is inferred from file times.
  - Writes are atomic (temporary file, fsync, rename, fsync of the directory) under an exclusive C(fcntl) lock on
    C(<ledger_dir>/.<container>.lock), so concurrent writers never lose a release.
  - O(action=query) returns the current release, C(previous) - the newest release before the current one that
    was verified healthy and runs a different image than the current one (null when there is none) - and
    C(last_verified) - the newest verified release, which may be the current one.
  - O(action=record) appends a release and makes it current. When the ledger is empty (or its current release is
    not what ran before the change) and O(adopt) describes what ran, that is first recorded as an unverified
    C(adopt) release. Recording the image the current release already has changes nothing.
  - O(action=mark_verified) marks the current release verified. With O(docker_host), when the container runs
    another image than the current release (or the ledger is empty), the running container is adopted first, so
    the release marked is the one that was actually verified.
author:
  - runbook-runner maintainers
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [query, record, mark_verified]
  container:
    description: Container (release stream) name; also the ledger file name.
    type: str
    required: true
  ledger_dir:
    description: Directory of the ledger files.
    type: path
    default: /var/lib/runbook/releases
  image:
    description: Image reference of the release to record (O(action=record)).
    type: str
  image_id:
    description: Image id (C(sha256:...)) of the release to record.
    type: str
  digests:
    description: Repository digests of the image.
    type: list
    elements: str
    default: []
  spec:
    description: Run spec of the container (as returned by M(runbook.ops.container_swap)).
    type: dict
    default: {}
  release_action:
    description: The C(action) field of the recorded release.
    type: str
    default: deploy
    choices: [deploy, rollback, adopt]
  source_release:
    description: For a rollback, the id of the release that was returned to.
    type: int
  adopt:
    description:
      - What ran before the change (keys C(image), C(image_id), C(digests), C(spec)); recorded first as an C(adopt)
        release when the ledger is empty or its current release has another image.
    type: dict
  note:
    description: Free text stored with the release (for example the run id).
    type: str
  intent:
    description:
      - Key of the step intent the release is recorded for (C(<run id>.<step id>), module step_intent), stored
        with the release. When a release of that intent is already in the ledger (the step re-run after the
        control node died), O(action=record) returns it and changes nothing.
    type: str
  docker_host:
    description:
      - Docker Engine endpoint. With O(action=query) the running container is inspected and reported (C(running),
        C(drift)), and C(previous) is resolved against what really runs. With O(action=mark_verified) a container
        that runs another image than the current release is adopted before marking. Omit to not touch Docker.
    type: str
  docker_container:
    description: Name or id of the container to inspect with O(docker_host); default O(container) (a compose
      service's container has another name than its release stream).
    type: str
  running:
    description:
      - What runs now (keys C(image) and optionally C(image_id)), for engines the module cannot inspect (for example
        a Kubernetes deployment's image). Used like the inspected container of O(docker_host).
    type: dict
  keep:
    description: Keep at most this many releases (oldest dropped first; the current release and the previous
      verified one are never dropped). Ids are never reused.
    type: int
    default: 100
notes:
  - Supports check mode - C(query) reads; C(record) and C(mark_verified) report what they would write.
"""

EXAMPLES = r"""
- name: Find the last verified release before the current one
  runbook.ops.release_ledger:
    action: query
    container: backend
    docker_host: unix:///var/run/docker.sock
  register: ledger

- name: Record a deploy
  runbook.ops.release_ledger:
    action: record
    container: backend
    image: "{{ swap.version_after }}"
    image_id: "{{ swap.image_id_after }}"
    digests: "{{ swap.digests_after }}"
    spec: "{{ swap.spec }}"
    adopt:
      image: "{{ swap.version_before }}"
      image_id: "{{ swap.image_id_before }}"
      digests: "{{ swap.digests_before }}"
      spec: "{{ swap.spec_before }}"

- name: The current release passed its checks
  runbook.ops.release_ledger:
    action: mark_verified
    container: backend
"""

RETURN = r"""
path:
  description: The ledger file.
  returned: always
  type: str
  sample: /var/lib/runbook/releases/backend.json
current:
  description: The current release after the action (null for an empty ledger).
  returned: always
  type: dict
previous:
  description: Newest verified release before the current one with a different image, or null.
  returned: always
  type: dict
last_verified:
  description: The newest release that was verified healthy (possibly the current one), or null.
  returned: when action is query
  type: dict
release:
  description: The release recorded or marked by this call (the current one when nothing was written).
  returned: when action is record or mark_verified
  type: dict
adopted:
  description: The release adopted from what ran, when one was.
  returned: when action is record or mark_verified
  type: dict
releases:
  description: Number of releases in the ledger.
  returned: always
  type: int
running:
  description: What the container runs (C(image), C(image_id), C(running)), null when there is no container.
  returned: when docker_host or running is given
  type: dict
drift:
  description: True when the container runs another image than the ledger's current release.
  returned: when docker_host or running is given
  type: bool
"""

import contextlib
import copy
import datetime
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.docker_api import DockerClient, DockerError
from ansible_collections.runbook.ops.plugins.module_utils.docker_spec import describe_container
from ansible_collections.runbook.ops.plugins.module_utils.state_files import exclusive_lock, write_json

FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class LedgerError(Exception):
    pass


def utc_now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def empty_ledger(container):
    return {"format": FORMAT, "container": container, "next_id": 1, "current": None, "releases": []}


def ledger_path(ledger_dir, container):
    if not _NAME.match(container or ""):
        raise LedgerError("invalid container name %r for a ledger file" % (container,))
    return os.path.join(ledger_dir, container + ".json")


def load(path, container):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return empty_ledger(container)
    except ValueError as exc:
        raise LedgerError("ledger %s is not valid JSON (%s); refusing to guess release history" % (path, exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("releases"), list):
        raise LedgerError("ledger %s has an unknown layout; refusing to guess release history" % path)
    data.setdefault("format", FORMAT)
    data.setdefault("container", container)
    ids = [r.get("id", 0) for r in data["releases"]]
    data["next_id"] = max([data.get("next_id") or 1] + [i + 1 for i in ids])
    return data


def save_atomic(path, data):
    """Through the one writer: a temporary file in the same directory, fsync, rename over, fsync the directory."""
    write_json(path, data)


def locked(ledger_dir, container):
    """Exclusive lock for one container's ledger (held across read-modify-write)."""
    return exclusive_lock(ledger_dir, "." + container + ".lock")


def same_image(a, b):
    """Two releases (or running descriptions) run the same image: by id when both have one, else by ref."""
    if not a or not b:
        return False
    if a.get("image_id") and b.get("image_id"):
        return a["image_id"] == b["image_id"]
    return bool(a.get("image")) and a.get("image") == b.get("image")


def release_by_id(ledger, release_id):
    if release_id is None:
        return None
    for release in ledger["releases"]:
        if release.get("id") == release_id:
            return release
    return None


def current_release(ledger):
    return release_by_id(ledger, ledger.get("current"))


def previous_release(ledger, running=None):
    """The newest release before the current one that was verified and whose image differs from the current image.

    ``running`` (what the container really runs, when known) replaces the ledger's current image when they
    differ: then the ledger's current release itself is a candidate, as if what runs had been adopted.
    """
    current = current_release(ledger)
    if current is None:
        if running is None:
            return None
        base, limit = running, float("inf")
    elif running is not None and not same_image(current, running):
        base, limit = running, current["id"] + 0.5
    else:
        base, limit = current, current["id"]
    candidates = [
        r for r in ledger["releases"]
        if r.get("verified") and r.get("id", 0) < limit and not same_image(r, base)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r["id"])


def last_verified_release(ledger):
    """The newest release that was verified healthy (it may be the current one), or None."""
    verified = [r for r in ledger["releases"] if r.get("verified")]
    return max(verified, key=lambda r: r["id"]) if verified else None


def append_release(ledger, data, action, now, verified=False, note=None, source_release=None):
    release = {
        "id": ledger["next_id"],
        "image": data.get("image"),
        "image_id": data.get("image_id"),
        "digests": list(data.get("digests") or []),
        "digest": (list(data.get("digests") or []) or [None])[0],
        "spec": copy.deepcopy(data.get("spec") or {}),
        "deployed_at": now,
        "action": action,
        "verified": bool(verified),
        "verified_at": now if verified else None,
    }
    if source_release is not None:
        release["source_release"] = source_release
    if note:
        release["note"] = note
    ledger["releases"].append(release)
    ledger["next_id"] = release["id"] + 1
    ledger["current"] = release["id"]
    return release


def apply_record(ledger, new, action, now, adopt=None, note=None, source_release=None, intent=None):
    """Append ``new`` as the current release. Returns (changed, release, adopted). A release already recorded
    for ``intent`` (the same step of the same run, re-run) is returned as it is."""
    if not new.get("image") and not new.get("image_id"):
        raise LedgerError("record needs image or image_id")
    done = [r for r in ledger["releases"] if intent and r.get("intent") == intent]
    if done:
        return False, done[-1], None
    adopted = None
    current = current_release(ledger)
    if adopt and (adopt.get("image_id") or adopt.get("image")) and (current is None or not same_image(current, adopt)):
        adopted = append_release(ledger, adopt, "adopt", now, note="adopted: running before this change")
        current = adopted
    if current is not None and same_image(current, new):
        return adopted is not None, current, adopted
    release = append_release(ledger, new, action, now, note=note, source_release=source_release)
    if intent:
        release["intent"] = intent
    return True, release, adopted


def apply_mark_verified(ledger, now, running=None):
    """Mark the current release verified (adopting what runs first when it differs). Returns (changed, release,
    adopted)."""
    adopted = None
    current = current_release(ledger)
    if running is not None and (current is None or not same_image(current, running)):
        adopted = append_release(ledger, running, "adopt", now, note="adopted: running when verified")
        current = adopted
    if current is None:
        raise LedgerError("the ledger of %s is empty and no running container was found; nothing to mark verified"
                          % ledger.get("container"))
    if current.get("verified"):
        return adopted is not None, current, adopted
    current["verified"] = True
    current["verified_at"] = now
    return True, current, adopted


def prune(ledger, keep):
    """Drop the oldest releases beyond ``keep``; never the current one nor the previous verified one."""
    if keep is None or keep < 1 or len(ledger["releases"]) <= keep:
        return []
    protected = {ledger.get("current")}
    prev = previous_release(ledger)
    if prev:
        protected.add(prev["id"])
    dropped = []
    for release in sorted(ledger["releases"], key=lambda r: r["id"]):
        if len(ledger["releases"]) - len(dropped) <= keep:
            break
        if release["id"] not in protected:
            dropped.append(release["id"])
    ledger["releases"] = [r for r in ledger["releases"] if r["id"] not in dropped]
    return dropped


def _running(params):
    if params.get("running"):
        given = params["running"]
        return {"image": given.get("image"), "image_id": given.get("image_id"), "digests": given.get("digests") or [],
                "spec": given.get("spec") or {}, "running": True}
    if not params.get("docker_host"):
        return None
    client = DockerClient(params["docker_host"])
    return describe_container(client, params.get("docker_container") or params["container"])


def query_ledger(p, result, running, inspected):
    """Adds the current, previous and last verified releases (and drift from the running container) to result."""
    ledger = load(result["path"], p["container"])
    current = current_release(ledger)
    if inspected:
        result["drift"] = bool(running and current and not same_image(current, running))
    result.update(
        current=current,
        previous=previous_release(ledger, running),
        last_verified=last_verified_release(ledger),
        releases=len(ledger["releases"]),
    )


def update_ledger(p, result, running, inspected, check_mode):
    """record or mark_verified, under the ledger's lock (saved unless in check mode); adds what changed to result."""
    now = utc_now()
    context = contextlib.nullcontext() if check_mode else locked(p["ledger_dir"], p["container"])
    with context:
        ledger = load(result["path"], p["container"])
        if p["action"] == "record":
            new = {"image": p["image"], "image_id": p["image_id"], "digests": p["digests"], "spec": p["spec"]}
            changed, release, adopted = apply_record(
                ledger, new, p["release_action"], now, adopt=p["adopt"], note=p["note"], intent=p["intent"],
                source_release=p["source_release"],
            )
        else:
            changed, release, adopted = apply_mark_verified(ledger, now, running)
        dropped = prune(ledger, p["keep"]) if changed else []
        if changed and not check_mode:
            save_atomic(result["path"], ledger)
    result.update(
        changed=changed,
        release=release,
        adopted=adopted,
        dropped=dropped,
        current=current_release(ledger),
        previous=previous_release(ledger),
        releases=len(ledger["releases"]),
    )
    if p["action"] == "mark_verified" and inspected:
        result["drift"] = adopted is not None and len(ledger["releases"]) > 1


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=["query", "record", "mark_verified"]),
            container=dict(type="str", required=True),
            ledger_dir=dict(type="path", default="/var/lib/runbook/releases"),
            image=dict(type="str"),
            image_id=dict(type="str"),
            digests=dict(type="list", elements="str", default=[]),
            spec=dict(type="dict", default={}),
            release_action=dict(type="str", default="deploy", choices=["deploy", "rollback", "adopt"]),
            source_release=dict(type="int"),
            adopt=dict(type="dict"),
            note=dict(type="str"),
            intent=dict(type="str"),
            docker_host=dict(type="str"),
            docker_container=dict(type="str"),
            running=dict(type="dict"),
            keep=dict(type="int", default=100),
        ),
        required_if=[("action", "record", ("image", "image_id"), True)],
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    try:
        result["path"] = ledger_path(p["ledger_dir"], p["container"])
        running = _running(p) if p["action"] in ("query", "mark_verified") else None
        inspected = bool(p["docker_host"] or p["running"])
        if inspected and p["action"] in ("query", "mark_verified"):
            result["running"] = (
                {"image": running["image"], "image_id": running["image_id"], "running": running["running"]}
                if running else None
            )
        if p["action"] == "query":
            query_ledger(p, result, running, inspected)
        else:
            update_ledger(p, result, running, inspected, module.check_mode)
    except (LedgerError, DockerError, OSError) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
