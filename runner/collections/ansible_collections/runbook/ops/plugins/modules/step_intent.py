#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Read or record what a step resolved to do on this host, before it acts (module_utils/step_intents)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: step_intent
short_description: Record on the host what a step resolved to do before it acts, and find it when the step re-runs
version_added: "0.1.0"
description:
  - A role resolves what it will do (the release C(previous) means, the backup C(latest) names, the colour to
    switch to, the snapshot to restore), records it with O(action=record) before it changes anything, and looks
    for it first with O(action=get). The same step re-run by the same run (a retry, or C(runbook resume) after the
    control node died) then finds the work done or half done and completes it instead of resolving again.
  - The intent is a JSON object in C(<dir>/<run id>.<step id>.json), written atomically. O(action=record) adds the
    keys of O(data) the intent does not hold yet (the first resolution wins); O(action=update) replaces them (what
    a later part of the step learned, such as the safety copy it took, recorded as soon as it exists).
  - Every write returns C(runbook_intent), which the runner journals at once, before the step acts.
  - Without O(run_id) and O(step_id) (a play run outside the runner) nothing is kept. In check mode nothing is
    written.
author: runbook-runner maintainers
options:
  action: {description: What to do., type: str, choices: [get, record, update], default: get}
  run_id:
    description: "The run (the first of a chain of resumes: runbook_origin_run_id); empty - keep nothing."
    type: str
    default: ""
  step_id: {description: "The step (runbook_step_id); empty - keep nothing.", type: str, default: ""}
  data: {description: What to record., type: dict, default: {}}
  dir: {description: Where the intents of this host are kept., type: path, default: /var/lib/runbook/intents}
  keep_days: {description: Intents older than this are removed when one is written., type: int, default: 30}
"""

EXAMPLES = r"""
- name: Find what this step resolved when it ran before
  runbook.ops.step_intent:
    run_id: "{{ runbook_origin_run_id | default('') }}"
    step_id: "{{ runbook_step_id | default('') }}"
  register: intent

- name: Record the backup chosen before restoring it
  runbook.ops.step_intent:
    action: record
    run_id: "{{ runbook_origin_run_id | default('') }}"
    step_id: "{{ runbook_step_id | default('') }}"
    data: {backup: {name: shop-20250101T000000Z, path: /var/backups/shop-20250101T000000Z.dump}}
"""

RETURN = r"""
key: {description: "<run id>.<step id>, the intent's name (empty when nothing is kept).", returned: always, type: str}
found: {description: Whether an intent was recorded under the key before this call., returned: always, type: bool}
intent: {description: The intent after this call (empty when none)., returned: always, type: dict}
runbook_intent: {description: The intent with its key, for the runner's journal., returned: when written, type: dict}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import UnsafePath
from ansible_collections.runbook.ops.plugins.module_utils.step_intents import (
    IntentError, IntentStore, key_for, published,
)


def run(params, check_mode=False):
    key = key_for(params.get("run_id"), params.get("step_id"))
    result = {"changed": False, "key": key, "found": False, "intent": {}}
    if not key:
        return result
    store = IntentStore(params.get("dir"), params.get("keep_days") or 30)
    if params.get("action", "get") == "get":
        intent = store.get(key)
        result.update(found=intent is not None, intent=intent or {})
        return result
    found, intent = store.write(key, params.get("data") or {}, replace=params["action"] == "update",
                                check_mode=check_mode)
    result.update(found=found, intent=intent)
    if not check_mode:
        result.update(published(key, intent))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", choices=["get", "record", "update"], default="get"),
            run_id=dict(type="str", default=""),
            step_id=dict(type="str", default=""),
            data=dict(type="dict", default={}),
            dir=dict(type="path", default="/var/lib/runbook/intents"),
            keep_days=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except (IntentError, UnsafePath, OSError) as exc:
        module.fail_json(msg="step intent of %s: %s" % (module.params["step_id"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
