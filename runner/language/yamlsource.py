"""YAML parsing that keeps where every key and value came from, for file:line:col errors.

libyaml (through PyYAML's C parser, or its pure-Python parser where the C one is missing) turns the text into
events; this module composes them into plain Python data (dict with str keys, list, str, int, float, bool, None)
with YAML 1.2 core-schema scalars (only true/false are booleans, so `on:` stays a key), recording the position of
every key and value. Whatever the input, parsing either returns a Located or raises YamlSyntaxError with located
Diagnostics; it never raises anything else. Problems found while composing (keys that are not text, unsupported
tags, recursive aliases, values nested too deeply, documents that explode when aliases are expanded, integers
beyond signed 64 bits) are collected in Located.problems and the offending value is replaced by None, so the caller
reports them together with everything else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import Diagnostic
from runner.language.describe import scalar_text
from runner.language.value_limits import INT_OUT_OF_RANGE, TOO_DEEP, int_in_range
from runner.language.value_limits import MAX_DEPTH as MAX_DEPTH
from runner.language.value_limits import PathKey as PathKey

MAX_NODES = 20_000  # values in a document, counting every expansion of an alias
MAX_EVENTS = 200_000  # YAML events in a file (a large runbook has a few thousand)
MAX_BYTES = 4 * 1024 * 1024  # a runbook is a few kilobytes

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP_TAGS = {None, "!", "tag:yaml.org,2002:map"}
_SEQ_TAGS = {None, "!", "tag:yaml.org,2002:seq"}

# YAML 1.2 core schema, as ruamel.yaml resolves it (timestamps stay text: `2024-01-31` is the string it reads as)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT_RE = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


@dataclass
class Located:
    """A parsed document as plain Python data plus a (line, col) for every path in it (1-based)."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    spoiled: list[PathKey] = field(default_factory=list)  # where each problem is: the value there was replaced

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


class _Node:
    """A composed YAML node: kind "scalar" (value str), "seq" (list of nodes), "map" (list of key/value nodes)."""

    __slots__ = ("col", "kind", "line", "plain", "tag", "value")

    def __init__(self, kind: str, tag: str | None, value: Any, line: int, col: int, plain: bool = False) -> None:
        self.kind = kind
        self.tag = tag
        self.value = value
        self.line = line  # 1-based
        self.col = col
        self.plain = plain


def _mark(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


class _Composer:
    """Events -> a node graph (aliases share nodes, so recursive structures are possible); all syntax checks."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.anchors: dict[str, _Node] = {}
        self.duplicates: list[Diagnostic] = []

    def fail(self, line: int, col: int, message: str) -> YamlSyntaxError:
        return YamlSyntaxError(Diagnostic(self.file, line, col, f"YAML: {message}"))

    def compose(self) -> _Node | None:
        loader = _Loader(self.text)
        try:
            return self._events(loader)
        finally:
            loader.dispose()

    def _events(self, loader: Any) -> _Node | None:
        root: _Node | None = None
        stack: list[_Node] = []
        pending: list[_Node | None] = []  # per open mapping: its key waiting for a value
        seen: list[set[Any]] = []  # per open mapping: keys so far
        documents = 0
        count = 0
        while loader.check_event():
            event = loader.get_event()
            count += 1
            if count > MAX_EVENTS:
                raise self.fail(*_mark(event), f"document too large (more than {MAX_EVENTS} YAML events)")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(_mark(event)[0], 1, "expected one document, found several ('---')")
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                closed = stack.pop()
                if closed.kind == "map":
                    pending.pop()
                    seen.pop()
                continue
            if isinstance(event, yaml.AliasEvent):
                node = self.anchors.get(str(event.anchor))
                if node is None:
                    raise self.fail(*_mark(event), f"found undefined alias {event.anchor!r}")
            elif isinstance(event, yaml.ScalarEvent):
                line, col = _mark(event)
                node = _Node("scalar", event.tag, event.value, line, col, plain=bool(event.implicit[0]))
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                line, col = _mark(event)
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(line, col, TOO_DEEP)
                kind = "seq" if isinstance(event, yaml.SequenceStartEvent) else "map"
                node = _Node(kind, event.tag, [], line, col)
            else:
                continue  # stream start/end, document end
            anchor = getattr(event, "anchor", None)
            if anchor is not None and not isinstance(event, yaml.AliasEvent):
                self.anchors[str(anchor)] = node
            if not stack:
                root = node
            else:
                self._attach(node, stack[-1], pending, seen)
            if node.kind != "scalar" and not isinstance(event, yaml.AliasEvent):
                stack.append(node)
                if node.kind == "map":
                    pending.append(None)
                    seen.append(set())
        return root

    def _attach(self, node: _Node, parent: _Node, pending: list[_Node | None], seen: list[set[Any]]) -> None:
        """Add node to its parent: an item of a sequence, or a mapping's key, or the value of its pending key."""
        if parent.kind == "seq":
            parent.value.append(node)
            return
        key = pending[-1]
        if key is None:
            pending[-1] = node
            return
        self._check_duplicate(key, seen[-1])
        parent.value.append((key, node))
        pending[-1] = None

    def _check_duplicate(self, key: _Node, seen: set[Any]) -> None:
        if key.kind != "scalar":
            return
        value, _ = _resolve(key)
        identity = (type(value).__name__, value if not isinstance(value, float) or not math.isnan(value) else "nan")
        if identity in seen:
            self.duplicates.append(Diagnostic(self.file, key.line, key.col, f'YAML: found duplicate key "{key.value}"'))
        seen.add(identity)


def _resolve(node: _Node) -> tuple[Any, str | None]:
    """A scalar node's value under the YAML 1.2 core schema, and a problem (None when fine)."""
    text = str(node.value)
    tag = node.tag
    if tag is None:
        if not node.plain:
            return text, None
        if _NULL_RE.match(text):
            return None, None
        if _BOOL_RE.match(text):
            return text.lower() == "true", None
        if _INT_RE.match(text):
            return _int(text)
        if _FLOAT_RE.match(text):
            return _float(text), None
        return text, None
    if tag in ("!", _STR, _TIMESTAMP):
        return text, None
    if tag == _INT:
        if _INT_RE.match(text.strip()):
            return _int(text.strip())
        return None, f"{text!r} is not an integer (!!int)"
    if tag == _FLOAT:
        if _FLOAT_RE.match(text.strip()) or _INT_RE.match(text.strip()):
            return _float(text.strip()), None
        return None, f"{text!r} is not a number (!!float)"
    if tag == _BOOL:
        if _BOOL_RE.match(text.strip()):
            return text.strip().lower() == "true", None
        return None, f"{text!r} is not true or false (!!bool)"
    if tag == _NULL:
        return None, None
    return None, f"unsupported YAML tag {tag!r}"


def _int(text: str) -> tuple[Any, str | None]:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if not digits:
        return text, None
    if len(digits) > 80:
        return None, INT_OUT_OF_RANGE
    if digits.startswith("0b"):
        value = int(digits[2:] or "0", 2)
    elif digits.startswith("0x"):
        value = int(digits[2:] or "0", 16)
    elif digits.startswith("0o"):
        value = int(digits[2:] or "0", 8)
    else:
        value = int(digits)
    value *= sign
    if not int_in_range(value):
        return None, INT_OUT_OF_RANGE
    return value, None


def _float(text: str) -> float:
    lowered = text.replace("_", "").lower()
    sign = -1.0 if lowered.startswith("-") else 1.0
    lowered = lowered.lstrip("+-")
    if lowered == ".inf":
        return sign * math.inf
    if lowered == ".nan":
        return math.nan
    try:
        return sign * float(lowered)
    except (ValueError, OverflowError):
        return math.nan


class _Builder:
    """Node graph -> plain data, recording positions and problems, bounded in size and depth."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.count = 0
        self.active: set[int] = set()  # collections on the current path (a repeat is a recursive alias)
        self.too_large = False

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.located.problems.append(self.located.diagnostic(path, message, key=key))
        self.located.spoiled.append(path)

    def build(self, node: _Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if not self.too_large:
                self.too_large = True
                self.problem(path, f"document too large: more than {MAX_NODES} values once aliases are expanded")
            return None
        if node.kind == "scalar":
            value, problem = _resolve(node)
            if problem:
                self.problem(path, problem)
            return value
        if id(node) in self.active:
            self.problem(path, "recursive alias: this value contains itself")
            return None
        if depth >= MAX_DEPTH:
            self.problem(path, TOO_DEEP)
            return None
        allowed = _MAP_TAGS if node.kind == "map" else _SEQ_TAGS
        if node.tag not in allowed:
            self.problem(path, f"unsupported YAML tag {node.tag!r}")
            return None
        self.active.add(id(node))
        try:
            if node.kind == "map":
                return self._map(node, path, depth)
            return self._seq(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _seq(self, node: _Node, path: PathKey, depth: int) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            self.located.positions.setdefault(child, (item.line, item.col))
            items.append(self.build(item, child, depth + 1))
        return items

    def _map(self, node: _Node, path: PathKey, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[tuple[_Node, _Node, _Node]] = []  # (key, value, the << key they came through)
        for key, value in node.value:
            if key.kind == "scalar" and key.plain and key.tag is None and key.value == "<<":
                merged += self._merge_sources(key, value, path)
                continue
            self._entry(result, key, value, key, path, depth)
        for key, value, via in merged:
            name = self._key_name(key)
            if name is not None and name not in result:
                self._entry(result, key, value, via, path, depth)
        return result

    def _merge_sources(self, key: _Node, value: _Node, path: PathKey) -> list[tuple[_Node, _Node, _Node]]:
        sources = value.value if value.kind == "seq" else [value]
        found: list[tuple[_Node, _Node, _Node]] = []
        for source in sources:
            if source.kind != "map" or id(source) in self.active:
                self.located.key_positions.setdefault((*path, "<<"), (key.line, key.col))
                self.problem((*path, "<<"), "a merge key (<<) needs a mapping or a list of mappings", key=True)
                return []
            found += [(k, v, key) for k, v in source.value]
        return found

    def _key_name(self, key: _Node) -> str | None:
        if key.kind != "scalar":
            return None
        value, _ = _resolve(key)
        return _key_text(value)

    def _entry(self, result: dict[str, Any], key: _Node, value: _Node, at: _Node, path: PathKey, depth: int) -> None:
        name = self._key_name(key)
        if name is None:
            name = "[key]" if key.kind == "seq" else "{key}"
        child = (*path, name)
        self.located.key_positions.setdefault(child, (at.line, at.col))
        self.located.positions.setdefault(child, (value.line, value.col) if at is key else (at.line, at.col))
        if key.kind != "scalar":
            self.problem(child, "a key must be text, not a list or mapping", key=True)
            return
        resolved, _ = _resolve(key)
        if not isinstance(resolved, str):
            self.problem(child, f"key {name!r} must be text (write it in quotes)", key=True)
        result[name] = self.build(value, child, depth + 1)


def _key_text(key: Any) -> str:
    text = scalar_text(key)
    return str(key) if text is None else text


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def parse_yaml_text(text: str, file: str) -> Located:
    """Parse one YAML document; raise YamlSyntaxError (with Diagnostics) on bad syntax or duplicate keys."""
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"file too large (more than {MAX_BYTES} bytes)"))
    composer = _Composer(text, file)
    try:
        root = composer.compose()
    except YamlSyntaxError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = str(exc.problem or exc.context or "invalid YAML").strip()
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        if "tab" in problem or _char_at(text, line, col) == "\t":
            problem += "; indent with spaces, not tabs"
        raise YamlSyntaxError(Diagnostic(file, line, col, f"YAML: {problem}")) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position) if isinstance(exc.position, int) else (1, 1)
        character = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or " ")
        raise YamlSyntaxError(
            Diagnostic(file, line, col, f"YAML: {exc.reason} (character U+{character:04X})")
        ) from None
    except Exception as exc:  # the parser on hostile input: never a traceback
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise YamlSyntaxError(Diagnostic(file, 1, 1, f"YAML: cannot read the document ({detail})")) from None
    if composer.duplicates:
        raise YamlSyntaxError(*composer.duplicates)
    located = Located(file=file, data=None)
    located.positions[()] = (root.line, root.col) if root is not None else (1, 1)
    if root is not None:
        builder = _Builder(located)
        try:
            located.data = builder.build(root, (), 0)
        except RecursionError:
            raise YamlSyntaxError(Diagnostic(file, 1, 1, "YAML: nested too deeply")) from None
        except Exception as exc:  # never a traceback, whatever the document
            detail = f"{type(exc).__name__}: {exc}"[:200]
            raise YamlSyntaxError(Diagnostic(file, 1, 1, f"YAML: cannot read the document ({detail})")) from None
        if builder.too_large:  # what is left is truncated: other messages would mislead
            raise YamlSyntaxError(*[d for d in located.problems if "too large" in d.message])
    return located


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


def parse_yaml_file(path: Path) -> Located:
    try:
        with path.open("rb") as handle:  # bounded: /dev/zero or a huge file must not exhaust memory
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"cannot read file: {exc.strerror or exc}")) from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"cannot read file: {exc}")) from None
    if len(raw) > MAX_BYTES:
        raise YamlSyntaxError(Diagnostic(str(path), 1, 1, f"file too large (more than {MAX_BYTES} bytes)"))
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
    """The file cannot be read as one YAML document; diagnostics say every reason found (at least one)."""

    def __init__(self, diagnostic: Diagnostic, *more: Diagnostic) -> None:
        super().__init__("\n".join(str(d) for d in (diagnostic, *more)))
        self.diagnostic = diagnostic
        self.diagnostics = [diagnostic, *more]
