#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Write one file's content on a host through the collection's one writer (module_utils/safe_files): what the
roles write directly (a maintenance page, an image override file) is never written through a planted link."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_file
short_description: Write a file's content atomically, refusing a symlink or anything but a regular file there
description:
  - Writes O(content) to O(dest) through a temporary file made under a random name with C(O_EXCL|O_NOFOLLOW) in
    the same directory, its mode set on the descriptor, fsynced, renamed over O(dest), the directory fsynced.
  - A O(dest) that is a symlink or not a regular file is refused and nothing is written. The owner of a file
    replaced is kept.
  - With O(own_dir), the directory of O(dest) is the product's own - made with O(dir_mode) when missing, and
    refused when it is a symlink or not a directory; without it, a missing directory is made with O(dir_mode).
  - Nothing is written when the file already has that content and mode. Check mode says whether it would change.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  dest: {description: Absolute path of the file., type: path, required: true}
  content: {description: What the file holds., type: str, default: ""}
  mode: {description: Octal mode of the file., type: str, default: "0644"}
  own_dir: {description: The directory of O(dest) is the product's own (a symlink there is refused)., type: bool, default: false}
  dir_mode: {description: Octal mode of the directory when it is made., type: str, default: "0755"}
"""

EXAMPLES = r"""
- name: Put the maintenance page up
  runbook.ops.host_file:
    dest: /var/www/maintenance/maintenance.html
    content: "<h1>Maintenance</h1>"
    own_dir: true
"""

RETURN = r"""
dest: {description: The file written., returned: always, type: str}
"""

import os
import stat

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import (
    check_dir, check_target, ensure_dir, write_file,
)


def octal(text, what):
    try:
        mode = int(str(text), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise ValueError("%s must be an octal mode such as 0644 (got %r)" % (what, text))
    return mode


def unchanged(dest, data, mode):
    try:
        with open(dest, "rb") as handle:
            return stat.S_IMODE(os.fstat(handle.fileno()).st_mode) == mode and handle.read() == data
    except FileNotFoundError:
        return False


def put(params, check_mode=False):
    dest = os.path.abspath(params["dest"])
    data = (params.get("content") or "").encode("utf-8")
    mode, dir_mode = octal(params.get("mode") or "0644", "mode"), octal(params.get("dir_mode") or "0755", "dir_mode")
    directory = os.path.dirname(dest)
    if params.get("own_dir"):
        check_dir(directory)
    check_target(dest)
    result = {"changed": False, "dest": dest}
    if os.path.isdir(directory) and unchanged(dest, data, mode):
        return result
    result["changed"] = True
    if not check_mode:
        if params.get("own_dir") or not os.path.isdir(directory):
            ensure_dir(directory, dir_mode)
        write_file(dest, data, mode=mode)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            content=dict(type="str", default=""),
            mode=dict(type="str", default="0644"),
            own_dir=dict(type="bool", default=False),
            dir_mode=dict(type="str", default="0755"),
        ),
        supports_check_mode=True,
    )
    try:
        result = put(module.params, check_mode=module.check_mode)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cannot write %s: %s" % (module.params["dest"], exc), dest=module.params["dest"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
