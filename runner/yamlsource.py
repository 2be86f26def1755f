"""YAML parsing that keeps where every key and value came from (ruamel.yaml), for file:line:col errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from runner.errors import Diagnostic

PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """A parsed document as plain Python data plus a (line, col) for every path in it (1-based)."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Position of the value at path (or of its key); falls back to the nearest enclosing node."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (1, 1))

    def diagnostic(self, path: PathKey, message: str, *, key: bool = False) -> Diagnostic:
        line, col = self.where(path, key=key)
        return Diagnostic(self.file, line, col, message, dotted(path))


def dotted(path: PathKey) -> str:
    """spec.steps[1].with.database"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _plain(node: Any, path: PathKey, located: Located) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[Any, Any] = {}
        for key in node:
            line, col = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            child = (*path, str(key))
            located.key_positions[child] = (line + 1, col + 1)
            located.positions[child] = (vline + 1, vcol + 1)
            result[str(key) if not isinstance(key, (int, float, bool)) else key] = _plain(
                node[key], child, located
            )
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            line, col = node.lc.item(index)
            located.positions[(*path, index)] = (line + 1, col + 1)
            items.append(_plain(item, (*path, index), located))
        return items
    if isinstance(node, str):
        return str(node)
    return node


def parse_yaml_text(text: str, file: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError (with a Diagnostic) on bad syntax or duplicate keys."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        documents = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
        raise YamlSyntaxError(Diagnostic(file, line, col, f"YAML: {problem}")) from None
    except YAMLError as exc:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"YAML: {exc}")) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"YAML: cannot read the document ({exc})")) from None
    if len(documents) > 1:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, "YAML: expected one document, found several ('---')"))
    located = Located(file=file, data=None)
    located.positions[()] = (1, 1)
    located.data = _plain(documents[0] if documents else None, (), located)
    return located


def parse_yaml_file(path: Path) -> Located:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"cannot read file: {exc.strerror}")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"not UTF-8 text (byte {exc.start})")) from None
    return parse_yaml_text(text, str(path))


class YamlSyntaxError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic
