"""Reading one JSON object of a stored report field by field: a missing field takes its default (reports written
by older versions, or partial ones), a field of the wrong type is a ShapeError naming where it is."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from runner.errors import InvalidInput
from runner.language.describe import json_kind

E = TypeVar("E", bound=StrEnum)
R = TypeVar("R")


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


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

    def _value(self, key: str, default: Any, fits: Callable[[Any], bool], expected: str) -> Any:
        """The field's value, default when it is missing or null; a ShapeError when fits(value) is false."""
        value = self.data.get(key)
        if value is None:
            return default
        if not fits(value):
            raise self._wrong(key, expected)
        return value

    def text(self, key: str, default: str = "") -> str:
        value: str = self._value(key, default, lambda v: isinstance(v, str), "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def number(self, key: str, default: float = 0.0) -> float:
        value: float = self._value(key, default, _finite_number, "a finite number")
        return value

    def count(self, key: str) -> int:
        value = self.number(key, 0)
        if not isinstance(value, int):
            raise self._wrong(key, "a whole number")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value: bool = self._value(key, default, lambda v: isinstance(v, bool), "true or false")
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
        return dict(self._value(key, {}, lambda v: isinstance(v, Mapping), "an object"))

    def child(self, key: str) -> Fields:
        return Fields(self.mapping(key), self._path(key))

    def children(self, key: str) -> dict[str, Fields]:
        return {name: Fields(value, f"{self._path(key)}.{name}") for name, value in self.mapping(key).items()}

    def items(self, key: str) -> list[Any]:
        value: list[Any] = self._value(key, [], lambda v: isinstance(v, list), "an array")
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

    def typed(self, key: str, hint: Any, default: Any = dataclasses.MISSING) -> Any:
        """The field read by its type: str, float, bool, a StrEnum, str | None, tuple[str, ...], or a scalar
        (str | int | float | None); default (else the type's empty value) when it is missing."""
        given = default is not dataclasses.MISSING
        if hint is str:
            return self.text(key, default if given else "")
        if hint is bool:
            return self.flag(key, default if given else False)
        if hint is float:
            return self.number(key, default if given else 0.0)
        if isinstance(hint, type) and issubclass(hint, StrEnum):
            return self.choice(key, hint, default)
        if hint == tuple[str, ...]:
            return self.strings(key)
        if isinstance(hint, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}:
            return self.optional_text(key)
        if isinstance(hint, types.UnionType) and set(typing.get_args(hint)) == {str, int, float, type(None)}:
            return self.scalar(key)
        raise TypeError(f"no reader for a field of type {hint}")


_FIELD_TYPES: dict[type[Any], tuple[tuple[str, Any, Any], ...]] = {}


def _field_types(record: type[Any]) -> tuple[tuple[str, Any, Any], ...]:
    """(name, type, default) of each field of a dataclass."""
    if record not in _FIELD_TYPES:
        hints = typing.get_type_hints(record)
        _FIELD_TYPES[record] = tuple((spec.name, hints[spec.name], spec.default) for spec in dataclasses.fields(record))
    return _FIELD_TYPES[record]


def read_record(record: type[R], f: Fields, **defaults: Any) -> R:
    """The dataclass record from its JSON object, each field read by its type (Fields.typed); a missing field
    takes defaults[name], else the field's own default."""
    values = {name: f.typed(name, hint, defaults.get(name, default)) for name, hint, default in _field_types(record)}
    return record(**values)
