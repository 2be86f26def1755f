"""The hand-written prose of docs/runbook-reference.md: introduction, example, templates, what validate checks."""

from __future__ import annotations

INTRO = """\
A runbook is one YAML file: `apiVersion`, `kind`, `metadata` (who and what) and `spec` (typed params, steps,
on_failure steps, notifications). `runbook validate FILE...` checks everything below before anything touches a
host and reports every problem as `FILE:LINE:COL: error: MESSAGE (at spec.steps[1].with.database)` (exit 2).
The format is defined by `schemas/runbook.schema.json` (JSON Schema 2020-12; point your editor at it)."""

EXAMPLE = """\
apiVersion: runbook/v1
kind: Runbook
metadata:
  name: backend-image-rollback
  title: Roll the backend back to the last good image
  severity: SEV1
spec:
  params:
    service: {type: string, default: backend, pattern: "^[a-z0-9-]+$"}
  budget: 5m
  steps:
    - id: rollback
      hosts: app
      uses: image_swap
      with: {container: "{{ params.service }}", to: previous}
    - id: verify
      hosts: app
      uses: verify
      with:
        http: [{url: "http://{{ ansible_host }}:8080/health", status: 200}]
        release: "{{ params.service }}"
  on_failure:
    - {id: undo, hosts: app, uses: image_swap, with: {container: "{{ params.service }}", to: last_verified}}"""

TEMPLATES = """\
- Any string may be a Jinja template. Templates read `params.<name>` (the operator's values, always data: a
  value such as `{{ lookup('pipe', 'id') }}` arrives literally) and `steps.<id>.<key>` (outputs a role published
  in an earlier step; `steps['my-step'].key` for ids with dashes), plus Ansible's own variables such as
  `ansible_host`.
- `when:` is a bare Jinja expression (no `{{ }}`), like Ansible's `when`.
- Validate checks the syntax of every template, that every `params.X` is declared, and that every `steps.X`
  runs earlier (main steps may read earlier main steps; on_failure steps may read any main step and earlier
  on_failure steps; notifications read params only).
- An option whose value is a template (`attempts: "{{ params.attempts }}"`) is type-checked once the params are
  known (`plan` and `run`), not by validate."""

CHECKS = """\
- YAML syntax (one document; no duplicate keys; no tabs for indentation; only standard tags; YAML 1.2 scalars,
  so `on`, `yes` and `no` are strings and only `true`/`false` are booleans; anchors, aliases and `<<` merges are
  fine, recursive aliases are not).
- The schema above: unknown keys, missing keys, types, names, severity, durations, at least one step.
- Step ids are unique across `steps` and `on_failure`.
- `uses:` names a role found in `--roles-path` / `$RUNBOOK_ROLES_PATH` or the product's `roles/` (never relative
  to the runbook file), and `with:` matches that role's `meta/argument_specs.yml`: required options, unknown
  options (with a did-you-mean), types, choices, list elements and nested options, at every level (inside list
  entries too).
- Templates, as described above, and every filter and test a template names (`x | f`, `x is t`, and the names
  given to `map`, `select`, `reject`, `selectattr` and `rejectattr`) exists: Jinja's own, Ansible's builtins (by
  short name or as `ansible.builtin.NAME`), an installed collection's by fully qualified name
  (`community.general.json_query`) or the product's collection's (`runbook.ops.NAME`). Notification templates may
  name Jinja's own filters and tests only: the runner renders them itself, without Ansible.
- A param's `items` is a valid JSON Schema (draft 2020-12) whose keys, at every level, are JSON Schema keywords
  (a misspelt keyword is an error, not silently ignored).
- A param's `default` satisfies the param's own type, enum, pattern, minimum/maximum, length and `items` rules;
  its `pattern` is a valid regular expression.
- Durations (`budget`, `timeout`) are a whole number with `ms`, `s`, `m`, `h` or `d`, longer than zero."""
