"""Values as messages name them: their kind ("a mapping", "an integer") and a short form of the value itself."""

from __future__ import annotations

from typing import Any

# bool before int: a boolean is an int to isinstance
_KINDS: tuple[tuple[type, str], ...] = (
    (type(None), "nothing (null)"),
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def kind(value: Any) -> str:
    """What sort of value this is, in the words every runbook message uses."""
    for sort, word in _KINDS:
        if isinstance(value, sort):
            return word
    return type(value).__name__


def scalar_text(value: Any) -> str | None:
    """A string as it is, a boolean or null as YAML and JSON spell them; None for any other value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else None


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
