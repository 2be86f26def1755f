"""The parts of a runbook the schema accepted: what the semantic checks read.

The semantic checks run after the schema and never see a value the schema (or the YAML layer) rejected: asking
for a rejected or absent part answers None. Because every part handed out is schema-valid, it has the shape the
schema promises (a step's `id` is a string, `with` is a mapping) and the checks need not test it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runner.language.schema import SchemaCheck, within
from runner.language.yamlsource import PathKey


@dataclass(frozen=True)
class Parts:
    data: Any
    rejected: frozenset[PathKey]
    incomplete: frozenset[PathKey]

    @classmethod
    def of(cls, data: Any, check: SchemaCheck) -> Parts:
        return cls(data, check.rejected, check.incomplete)

    def valid(self, path: PathKey) -> bool:
        """Whether the value at path, and every value around it, passed the schema (its content may not have)."""
        return not any(path[:depth] in self.rejected for depth in range(len(path) + 1))

    def whole(self, path: PathKey) -> bool:
        """Whether the value at path passed the schema with all it contains, and no mapping in it lacks a key."""
        return self.complete(path) and not any(
            within(outer, path) for outer in (*self.rejected, *self.incomplete) if len(outer) > len(path)
        )

    def complete(self, path: PathKey) -> bool:
        """Whether the mapping at path is valid and has every key the schema requires of it."""
        return self.valid(path) and path not in self.incomplete

    def get(self, path: PathKey) -> Any:
        """The valid value at path; None when it is absent or was rejected."""
        if not self.valid(path):
            return None
        node = self.data
        for part in path:
            if not isinstance(node, (dict, list)):
                return None
            try:
                node = node[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def has(self, path: PathKey) -> bool:
        """Whether the mapping around path holds the key at its end (valid or not)."""
        parent = self.get(path[:-1])
        return isinstance(parent, dict) and path[-1] in parent

    def items(self, path: PathKey) -> Iterator[tuple[PathKey, Any]]:
        """(path, value) of each valid item of the valid list at path."""
        values = self.get(path)
        for index, value in enumerate(values if isinstance(values, list) else ()):
            if self.valid((*path, index)):
                yield (*path, index), value

    def entries(self, path: PathKey) -> Iterator[tuple[PathKey, str, Any]]:
        """(path, key, value) of each valid entry of the valid mapping at path."""
        values = self.get(path)
        for key, value in (values if isinstance(values, dict) else {}).items():
            if self.valid((*path, key)):
                yield (*path, key), key, value

    def rejected_within(self, path: PathKey) -> frozenset[PathKey]:
        """Rejected parts inside the value at path, relative to it."""
        inside = (outer for outer in self.rejected if len(outer) > len(path) and within(outer, path))
        return frozenset(outer[len(path) :] for outer in inside)


@dataclass(frozen=True)
class Problem:
    """A semantic problem of a runbook, before it is placed at FILE:LINE:COL."""

    path: PathKey
    message: str
    key: bool = False  # points at the key rather than the value
