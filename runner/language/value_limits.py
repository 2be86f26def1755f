"""The limits every value the runner reads keeps, wherever it comes from: runbook YAML, `-p`, a params file, the
params a journal recorded. Values reach Ansible and reports as JSON and PostgreSQL as bigint, so integers stay
within signed 64 bits and numbers are finite; nesting and size are bounded so that no reader recurses or swells."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

PathKey = tuple[str | int, ...]

MAX_DEPTH = 64  # nesting levels of mappings/lists; a runbook needs fewer than ten
MAX_INT_BITS = 64  # signed, as PostgreSQL bigint and the JSON readers Ansible uses
INT_MIN: int = -(2 ** (MAX_INT_BITS - 1))
INT_MAX: int = 2 ** (MAX_INT_BITS - 1) - 1
MAX_VALUE_CHARS = 1024 * 1024  # one value, about as long as its JSON text

TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels)"
INT_OUT_OF_RANGE = f"integer out of range (more than {MAX_INT_BITS} bits)"
NOT_FINITE = "not a finite number (NaN and Infinity are not allowed)"
TOO_LARGE = "too large (more than 1 MiB)"

_DIGITS = re.compile(r"\s*[-+]?[0-9][0-9_]*\s*")
_MAX_DIGITS = len(str(INT_MIN))  # a longer digit string is out of range without converting it


def int_in_range(value: int) -> bool:
    return INT_MIN <= value <= INT_MAX


def looks_like_int(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def int_from_text(text: str) -> int:
    """int(text, 10), except that a digit string too long to be in range becomes the first integer beyond the range
    (so that value_problem names it) instead of being converted: Python refuses very long ones, slowly."""
    if looks_like_int(text) and len(text.strip().lstrip("+-").replace("_", "").lstrip("0")) > _MAX_DIGITS:
        return INT_MIN - 1 if text.strip().startswith("-") else INT_MAX + 1
    return int(text, 10)


@dataclass(frozen=True)
class LimitProblem:
    path: PathKey  # where inside the value; () for the value itself
    message: str


def value_problem(value: Any) -> LimitProblem | None:
    """The first limit a plain value (what YAML or JSON reads into) breaks, in document order; None when it keeps
    them all. Iterative, so that a value nested deeper than Python's recursion limit is reported, never raised."""
    stack: list[tuple[PathKey, Any]] = [((), value)]
    size = 0
    while stack:
        path, item = stack.pop()
        if isinstance(item, (dict, list)):
            if len(path) >= MAX_DEPTH:
                return LimitProblem(path, TOO_DEEP)
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            stack.extend(((*path, key), child) for key, child in reversed(children))
            size += 2 + sum(len(str(key)) + 4 if isinstance(item, dict) else 1 for key, _ in children)
        else:
            problem = _scalar_problem(item)
            if problem is not None:
                return LimitProblem(path, problem)
            size += len(item) if isinstance(item, str) else len(repr(item))
        if size > MAX_VALUE_CHARS:
            return LimitProblem((), TOO_LARGE)
    return None


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int) and not int_in_range(item):
        return INT_OUT_OF_RANGE
    if isinstance(item, float) and not math.isfinite(item):
        return NOT_FINITE
    return None
