# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Retention planning for backups: pure functions, standard library only, no file access.

plan(backups, policy, now) says, per backup, which actions to take - keep, compress, copy (offsite), delete - and
the rule that decided. The module backup_retention reads the backup set on a host, asks for the plan, shows it in
check mode and executes exactly it otherwise. Whatever the policy says, the plan never deletes: the newest verified
backup, the .latest target, a backup a restore is reading, or every backup; and never deletes a backup locally
unless a verified offsite copy exists (or will, the copy action coming first and being verified) or offsite is off.

A backup is a dict: name (str), time (epoch seconds, float), size (int), state ('verified' | 'unverified' |
'corrupt'), latest (bool, the .latest target), reading (bool, a restore reads it), compressed (bool), offsite
('verified' | 'missing' | 'corrupt').
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

DAY = 86400.0
POLICY_KEYS = ("keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly", "compress_after_days",
               "offsite")
KEEP_KEYS = ("keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly")
STATES = ("verified", "unverified", "corrupt")
OFFSITE_STATES = ("verified", "missing", "corrupt")
ACTIONS = ("keep", "compress", "copy", "delete")


class PolicyError(ValueError):
    """An empty or contradictory retention policy (refused before any backup is read)."""


def check_policy(policy):
    """The policy with every key present and typed; raises PolicyError for an empty or contradictory one."""
    unknown = sorted(set(policy) - set(POLICY_KEYS))
    if unknown:
        raise PolicyError("unknown policy key%s: %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown)))
    out = {}
    for key in POLICY_KEYS[:-1]:
        value = policy.get(key) or 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError("%s must be a whole number, not %r" % (key, value))
        if value < 0:
            raise PolicyError("%s must not be negative (%d)" % (key, value))
        out[key] = value
    offsite = policy.get("offsite", False)
    if not isinstance(offsite, bool):
        raise PolicyError("offsite must be true or false, not %r" % (offsite,))
    out["offsite"] = offsite
    if not any(out[key] for key in KEEP_KEYS):
        raise PolicyError("empty retention policy: set at least one of %s above 0 (an empty policy would "
                          "keep nothing)" % ", ".join(KEEP_KEYS))
    only_days = out["keep_days"] and not any(out[k] for k in KEEP_KEYS if k != "keep_days")
    if out["compress_after_days"] and only_days and out["compress_after_days"] >= out["keep_days"]:
        raise PolicyError("contradictory policy: compress_after_days %d is not below keep_days %d and nothing "
                          "else keeps older backups, so nothing would ever be compressed"
                          % (out["compress_after_days"], out["keep_days"]))
    return out


def _order(backups):
    """Newest first; equal times by name, newest name first, so the order is total and stable."""
    return sorted(backups, key=lambda b: (b["time"], b["name"]), reverse=True)


def _bucket(when, period):
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    if period == "daily":
        return moment.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = moment.isocalendar()
        return "%04d-W%02d" % (year, week)
    return moment.strftime("%Y-%m")


def _periodic(usable, count, period, reasons):
    """keep_daily/weekly/monthly: the newest backup of each of the newest `count` days/weeks/months."""
    seen = []
    for backup in usable:
        bucket = _bucket(backup["time"], period)
        if bucket in seen:
            continue
        if len(seen) >= count:
            break
        seen.append(bucket)
        reasons.setdefault(backup["name"], "keep_%s %d (newest of %s)" % (period, count, bucket))


def _keep_reasons(ordered, policy, now):
    """name -> the first rule that keeps it (protections before policy rules)."""
    reasons = {}
    verified = [b for b in ordered if b["state"] == "verified"]
    if verified:
        reasons[verified[0]["name"]] = "protected: newest verified backup"
    for backup in ordered:
        if backup["latest"]:
            reasons.setdefault(backup["name"], "protected: .latest target")
        if backup["reading"]:
            reasons.setdefault(backup["name"], "protected: a restore is reading it")
    usable = [b for b in ordered if b["state"] != "corrupt"]
    for backup in usable[: policy["keep_last"]]:
        reasons.setdefault(backup["name"], "keep_last %d" % policy["keep_last"])
    if policy["keep_days"]:
        for backup in ordered:
            if now - backup["time"] < policy["keep_days"] * DAY:
                reasons.setdefault(backup["name"], "keep_days %d" % policy["keep_days"])
    for period in ("daily", "weekly", "monthly"):
        if policy["keep_" + period]:
            _periodic(usable, policy["keep_" + period], period, reasons)
    if ordered and not reasons:
        reasons[(usable or ordered)[0]["name"]] = "protected: never delete every backup"
    return reasons


def _entry(backup, keep, rule, actions):
    return {"name": backup["name"], "keep": keep, "rule": rule, "actions": actions,
            "action": actions[-1] if actions else "keep", "state": backup["state"], "size": backup["size"],
            "time": backup["time"]}


def _plan_one(backup, reason, policy, now):
    offsite_needed = policy["offsite"] and backup["state"] != "corrupt" and backup["offsite"] != "verified"
    protected = reason is not None and reason.startswith("protected")
    if reason is not None:
        actions = []
        old = now - backup["time"] >= policy["compress_after_days"] * DAY
        if (policy["compress_after_days"] and old and not protected and not backup["compressed"]
                and backup["state"] != "corrupt"):
            actions.append("compress")
            reason += "; compress_after_days %d" % policy["compress_after_days"]
        if offsite_needed:
            actions.append("copy")
            reason += "; offsite copy %s" % backup["offsite"]
        return _entry(backup, True, reason, actions)
    if backup["state"] == "corrupt" and policy["offsite"] and backup["offsite"] != "verified":
        return _entry(backup, True, "corrupt: kept for inspection (no verified offsite copy)", [])
    if offsite_needed:
        return _entry(backup, False, "no rule keeps it; offsite copy %s first" % backup["offsite"],
                      ["copy", "delete"])
    return _entry(backup, False, "no rule keeps it", ["delete"])


def plan(backups, policy, now):
    """Per backup, newest first: {name, keep, rule, actions, action, state, size, time}."""
    policy = check_policy(policy)
    names = [b["name"] for b in backups]
    if len(set(names)) != len(names):
        raise ValueError("backup names are not unique")
    for backup in backups:
        if backup["state"] not in STATES or backup["offsite"] not in OFFSITE_STATES:
            raise ValueError("backup %s: unknown state %r / offsite %r" % (backup["name"], backup["state"],
                                                                              backup["offsite"]))
    ordered = _order(backups)
    reasons = _keep_reasons(ordered, policy, now)
    return [_plan_one(b, reasons.get(b["name"]), policy, now) for b in ordered]


def summary(entries):
    """Counts per action, e.g. {'keep': 7, 'compress': 2, 'copy': 9, 'delete': 3}."""
    counts = dict((a, 0) for a in ACTIONS)
    for entry in entries:
        if entry["keep"]:
            counts["keep"] += 1
        for action in entry["actions"]:
            counts[action] += 1
    return counts


def plan_lines(entries):
    """The plan as text, one line per backup: action(s), name, rule."""
    return ["%-15s %s  (%s)" % ("+".join(e["actions"]) or "keep", e["name"], e["rule"]) for e in entries]
