# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The connection options of the PostgreSQL modules (module_utils/pg_common.LOGIN_ARGUMENT_SPEC)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  login_host: {description: Server host or socket directory (empty - libpq default)., type: str, default: ""}
  login_port: {description: Server port., type: int, default: 5432}
  login_user: {description: Role to connect as (empty - libpq default)., type: str, default: ""}
  login_password: {description: Password of that role., type: str, default: "", no_log: true}
  bin_dir: {description: Directory of the PostgreSQL client tools (empty - PATH)., type: str, default: ""}
"""
