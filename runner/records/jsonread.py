"""Reading one JSON object of a stored report field by field: a missing field takes its default (reports written
by older versions, or partial ones), a field of the wrong type is a ShapeError naming where it is."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from runner.errors import InvalidInput
from runner.language.describe import json_kind

E = TypeVar("E", bound=StrEnum)


class ShapeError(ValueError):
    """A field of the wrong type or value; Report.from_dict turns it into an InvalidInput naming the file."""


def load_object(text: str | bytes, source: str) -> dict[str, Any]:
    """The JSON object in text; InvalidInput when it is not JSON, holds NaN or Infinity, or is not an object."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidInput(f"{source} is not a readable run report: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{source} is not a run report: it holds {json_kind(data)}, not an object")
    return data


class Fields:
    """One JSON object of a report; `where` names it in errors (e.g. `steps[2]`)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ShapeError(f"{where or 'the report'} must be an object, not {json_kind(data)}")
        self.data: Mapping[str, Any] = data
        self.where = where

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _wrong(self, key: str, expected: str) -> ShapeError:
        return ShapeError(f"{self._path(key)} must be {expected}, not {json_kind(self.data[key])}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def number(self, key: str, default: float = 0.0) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._wrong(key, "a finite number")
        return value

    def count(self, key: str) -> int:
        value = self.number(key, 0)
        if not isinstance(value, int):
            raise self._wrong(key, "a whole number")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def choice(self, key: str, kind: type[E], default: E) -> E:
        value = self.text(key, default.value)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ShapeError(f"{self._path(key)} is {value!r}, not one of {allowed}") from None

    def scalar(self, key: str) -> str | int | float | None:
        value = self.data.get(key)
        if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
            return value
        raise self._wrong(key, "a string, a number or null")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._wrong(key, "an object")
        return dict(value)

    def child(self, key: str) -> Fields:
        return Fields(self.mapping(key), self._path(key))

    def children(self, key: str) -> dict[str, Fields]:
        return {name: Fields(value, f"{self._path(key)}.{name}") for name, value in self.mapping(key).items()}

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "an array")
        return value

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self._path(key)}[{index}]") for index, item in enumerate(self.items(key))]

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.items(key)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise ShapeError(f"{self._path(key)}[{index}] must be a string, not {json_kind(value)}")
        return tuple(values)

    def rest(self, *known: str) -> dict[str, Any]:
        """The fields other than `known`, in their order."""
        return {key: value for key, value in self.data.items() if key not in known}
