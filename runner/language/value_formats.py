"""Formats a role declares for option values that argument_specs types cannot say: a duration, a comparison.

A role names them in its spec's `runbook_formats` attribute (ansible-lint accepts attributes, not unknown keys on
an option), one `option path: format` a line in `details`; a path names list elements with `[]`:

    attributes:
      runbook_formats:
        description: Values runbook validate checks beyond their type.
        details: ["window: duration", "checks[].fail_if: comparison"]
        support: full

`runbook validate` then refuses a value that does not fit, where it is written, as the role's module would when
the step runs (runbook.ops.watch_window reads durations and comparisons the same way).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from runner.language.durations import parse_duration

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\[\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\])?)*)\s*:\s*([a-z_]+)\s*$")
_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*$")


def duration_problem(value: Any) -> str | None:
    """A duration as runbooks write them (90s, 2m, 1h), or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if math.isfinite(value) and value >= 0 else f"{value!r} is not a duration (negative or not finite)"
    if isinstance(value, str) and _SECONDS.match(value.strip()):
        return None
    try:
        parse_duration(value)
    except ValueError as exc:
        return f"{exc}, or a number of seconds"
    return None


def comparison_problem(value: Any) -> str | None:
    """An operator (>, <, >=, <=, ==, !=) and a finite number: "> 0.05", "< 1"."""
    match = _COMPARISON.match(value) if isinstance(value, str) else None
    if match is None or not math.isfinite(float(match.group(2))):
        return (
            f'{value!r} is not a comparison: write one of >, <, >=, <=, ==, != and a number, such as "> 0.05" or "< 1"'
        )
    return None


FORMATS: dict[str, Callable[[Any], str | None]] = {"duration": duration_problem, "comparison": comparison_problem}


def parse_formats(lines: Any) -> dict[str, str]:
    """`option path: format` lines -> {path: format}; ValueError for a line that is not one or an unknown format."""
    if lines is None:
        return {}
    if isinstance(lines, str):
        lines = [lines]
    if not isinstance(lines, list):
        raise ValueError("runbook_formats details must be a list of 'option: format' lines")
    formats: dict[str, str] = {}
    for line in lines:
        match = _LINE.match(line) if isinstance(line, str) else None
        if match is None:
            raise ValueError(f"runbook_formats: {line!r} is not 'option path: format'")
        if match.group(2) not in FORMATS:
            raise ValueError(f"runbook_formats: unknown format {match.group(2)!r} (known: {', '.join(FORMATS)})")
        formats[match.group(1)] = match.group(2)
    return formats


def pattern(path: tuple[str | int, ...]) -> str:
    """("checks", 0, "fail_if") -> "checks[].fail_if": the form runbook_formats names a value by."""
    out = ""
    for part in path:
        out += "[]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def format_problem(formats: dict[str, str], path: tuple[str | int, ...], value: Any) -> str | None:
    name = formats.get(pattern(path)) if formats else None
    return FORMATS[name](value) if name is not None else None
