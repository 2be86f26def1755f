"""YAML parsing that keeps where every key and value came from (ruamel.yaml), for file:line:col errors.

Whatever the input, parsing either returns plain Python data (dict with str keys, list, str, int, float, bool,
None) or raises YamlSyntaxError with one located Diagnostic; it never raises anything else. Problems found while
turning ruamel's objects into plain data (keys that are not text, unsupported tags, recursive aliases, values
nested too deeply, documents that explode when aliases are expanded, integers beyond 64 bits) are collected in
Located.problems and the offending value is replaced by None, so the caller reports them with everything else.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, CommentedSet, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from runner.errors import Diagnostic

PathKey = tuple[str | int, ...]

MAX_DEPTH = 64  # nesting levels of mappings/lists; a runbook needs fewer than ten
MAX_NODES = 100_000  # values in a document, counting every expansion of an alias
MAX_INT_BITS = 64
MAX_BYTES = 8 * 1024 * 1024  # a runbook is a few kilobytes

_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:omap",
}


@dataclass
class Located:
    """A parsed document as plain Python data plus a (line, col) for every path in it (1-based)."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

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


class _Builder:
    """ruamel's round-trip objects -> plain data, recording positions and problems, bounded in size and depth."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.count = 0
        self.active: set[int] = set()  # containers on the current path (a repeat is a recursive alias)
        self.too_large = False

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.located.problems.append(self.located.diagnostic(path, message, key=key))

    def build(self, node: Any, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if not self.too_large:
                self.too_large = True
                self.problem(
                    path, f"document too large: more than {MAX_NODES} values once aliases are expanded"
                )
            return None
        if isinstance(node, (CommentedMap, CommentedSeq, CommentedSet)):
            if id(node) in self.active:
                self.problem(path, "recursive alias: this value contains itself")
                return None
            if depth >= MAX_DEPTH:
                self.problem(path, f"nested too deeply (more than {MAX_DEPTH} levels)")
                return None
            tag = _tag(node)
            if tag is not None and tag not in _STANDARD_TAGS:
                self.problem(path, f"unsupported YAML tag {tag!r}")
                return None
            if isinstance(node, CommentedSet):
                self.problem(path, "a YAML set (!!set) is not supported; write a list")
                return None
            self.active.add(id(node))
            try:
                if isinstance(node, CommentedMap):
                    return self._map(node, path, depth)
                return self._seq(node, path, depth)
            finally:
                self.active.discard(id(node))
        return self._scalar(node, path)

    def _map(self, node: CommentedMap, path: PathKey, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key in list(node.keys()):
            name = _key_text(key)
            child = (*path, name)
            try:
                line, col = node.lc.key(key)
                vline, vcol = node.lc.value(key)
            except (KeyError, TypeError, AttributeError, IndexError):  # merged (<<) keys have no own position
                line, col = vline, vcol = self.located.where(path)
                line, col, vline, vcol = line - 1, col - 1, vline - 1, vcol - 1
            if child not in self.located.key_positions:
                self.located.key_positions[child] = (line + 1, col + 1)
                self.located.positions[child] = (vline + 1, vcol + 1)
            if not isinstance(key, str):
                self.problem(child, f"key {name!r} must be text (write it in quotes)", key=True)
            result[name] = self.build(node[key], child, depth + 1)
        return result

    def _seq(self, node: CommentedSeq, path: PathKey, depth: int) -> list[Any]:
        items = []
        for index, item in enumerate(node):
            child = (*path, index)
            try:
                line, col = node.lc.item(index)
                self.located.positions.setdefault(child, (line + 1, col + 1))
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            items.append(self.build(item, child, depth + 1))
        return items

    def _scalar(self, node: Any, path: PathKey) -> Any:
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, str):
            return str(node)
        if isinstance(node, int):
            if type(node).__name__ == "ScalarBoolean":
                return bool(node)
            value = int(node)
            if value.bit_length() > MAX_INT_BITS:
                self.problem(path, f"integer out of range (more than {MAX_INT_BITS} bits)")
                return None
            return value
        if isinstance(node, float):
            return float(node)
        if isinstance(node, TaggedScalar):
            tag = _tag(node)
            if tag in ("tag:yaml.org,2002:str", None):
                return str(node.value)
            self.problem(path, f"unsupported YAML tag {tag!r}")
            return None
        if isinstance(node, (datetime.date, datetime.datetime)):
            return node.isoformat()
        if isinstance(node, bytes):
            self.problem(path, "binary values (!!binary) are not supported")
            return None
        self.problem(path, f"unsupported YAML value ({type(node).__name__})")
        return None


def _tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", tag)
    return str(value) if value else None


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    try:
        return str(key)
    except (ValueError, RecursionError):
        return f"<{type(key).__name__}>"


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _second_document_line(text: str, documents: list[Any]) -> int:
    first = documents[0]
    start = first.lc.line if isinstance(first, (CommentedMap, CommentedSeq)) else 0
    for number, line in enumerate(text.splitlines()):
        if number > start and re.match(r"^(---|\.\.\.)(\s|$)", line):
            return number + 1
    return 1


def parse_yaml_text(text: str, file: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError (with a Diagnostic) on bad syntax or duplicate keys."""
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"file too large (more than {MAX_BYTES} bytes)"))
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        documents = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = str(exc.problem or exc.context or "invalid YAML").strip()
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
        if "\t" in problem or "'\\t'" in problem:
            problem += " (indent with spaces, not tabs)"
        raise YamlSyntaxError(Diagnostic(file, line, col, f"YAML: {problem}")) from None
    except YAMLError as exc:
        position = getattr(exc, "position", None)
        line, col = _line_col(text, position) if isinstance(position, int) else (1, 1)
        reason = getattr(exc, "reason", None)
        character = getattr(exc, "character", None)
        if reason and isinstance(character, int):
            message = f"YAML: {reason} (character U+{character:04X})"
        else:
            message = f"YAML: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'invalid YAML'}"
        raise YamlSyntaxError(Diagnostic(file, line, col, message)) from None
    except RecursionError:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, "YAML: nested too deeply")) from None
    except ValueError as exc:
        message = str(exc)
        if "integer string conversion" in message:
            message = "integer out of range (too many digits)"
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"YAML: cannot read the document: {message}")) from None
    except Exception as exc:  # ruamel on hostile input: never a traceback
        raise YamlSyntaxError(
            Diagnostic(file, 1, 1, f"YAML: cannot read the document ({type(exc).__name__}: {exc})")
        ) from None
    if len(documents) > 1:
        line = _second_document_line(text, documents)
        raise YamlSyntaxError(Diagnostic(file, line, 1, "YAML: expected one document, found several ('---')"))
    located = Located(file=file, data=None)
    located.positions[()] = (1, 1)
    root = documents[0] if documents else None
    if isinstance(root, (CommentedMap, CommentedSeq)):
        with contextlib.suppress(AttributeError, TypeError):
            located.positions[()] = (root.lc.line + 1, root.lc.col + 1)
    try:
        located.data = _Builder(located).build(root, (), 0)
    except RecursionError:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, "YAML: nested too deeply")) from None
    return located


def parse_yaml_file(path: Path) -> Located:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlSyntaxError(
            Diagnostic(str(path), 1, 1, f"cannot read file: {exc.strerror or exc}")
        ) from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"cannot read file: {exc}")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8", errors="replace")
        line, col = _line_col(good, len(good))
        raise YamlSyntaxError(
            Diagnostic(str(path), line, col, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
        ) from None
    return parse_yaml_text(text, str(path))


class YamlSyntaxError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic
