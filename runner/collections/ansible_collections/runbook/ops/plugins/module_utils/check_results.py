# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The results of the modules that check something (http_check, http_latency, log_count, pg_assert) in the shape
runbook reports use: a list of {name, ok, detail}, and one sentence naming what failed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def summary(results):
    """The results reduced to name, ok and detail."""
    return [{"name": r["name"], "ok": r["ok"], "detail": r["detail"]} for r in results]


def failures_text(failed, total, kind):
    """``2 of 3 HTTP check(s) failed: a: why; b: why``."""
    return "%d of %d %s check(s) failed: %s" % (
        len(failed), total, kind, "; ".join("%s: %s" % (r["name"], r["detail"]) for r in failed))
