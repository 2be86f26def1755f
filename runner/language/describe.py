"""Values as messages name them: their kind ("a mapping", "an integer") and a short form of the value itself."""

from __future__ import annotations

from typing import Any


def kind(value: Any) -> str:
    """What sort of value this is, in the words every runbook message uses."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_JSON_WORDS = {"a list": "an array", "a mapping": "an object", "an integer": "a number", "nothing (null)": "null"}


def json_kind(value: Any) -> str:
    """kind() in the words of JSON, for messages about a JSON file: 'an array', 'an object', 'a number', 'null'."""
    word = kind(value)
    return _JSON_WORDS.get(word, word)


def short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to at most limit characters (never raises)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
