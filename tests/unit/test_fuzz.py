"""Property test: whatever bytes a runbook file holds, `runbook validate` answers 0 or 2 and never raises.

Valid runbooks are mutated structurally (keys deleted, duplicated, renamed, values retyped, deep nesting, huge
numbers, unicode) and textually (random bytes, tabs, anchors and aliases including recursive ones, binary
garbage). Most examples go through runner.api.validate (fast); a smaller sample runs the real CLI entry point.
Operator param values (-p texts, params-file and journal values) resolve within the loader's limits or are
refused with a message, never an exception.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runner import api, cli
from runner.errors import Diagnostic, InvalidInput
from runner.language import params
from runner.language.loader import INTERNAL_ERROR, load_runbook
from runner.language.value_limits import value_problem

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ROLES = FIXTURES / "roles"
SEEDS = [p.read_text(encoding="utf-8") for p in sorted((FIXTURES / "valid").glob("*.yml"))]
SEED_DATA = [yaml.safe_load(text) for text in SEEDS]

_counter = [0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(workdir: Path, payload: bytes) -> Path:
    _counter[0] += 1
    path = workdir / f"case{_counter[0] % 50}.yml"
    path.write_bytes(payload)
    return path


# --- value strategies -----------------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    [
        "{{ params.nope }}",
        "{{ steps.later.path }}",
        "{{ unclosed",
        "{% for %}",
        "{{ ''.__class__.__mro__ }}",
        "{{ lookup('pipe', 'id') }}",
        "ü日本語\u202e\u0000",
        "\t\ttabbed",
        "a" * 3000,
        "5m",
        "0s",
        "-1s",
        "SEV9",
        "Bad Name",
        "../../etc/passwd",
        "demo_role",
        "no_such_role",
        "x\x00y",
        "a" * 300,
        "[",
        "((((((((((((((((((((((((((((((((((((((((",
        "a{99999999999999999999}",
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    HOSTILE_TEXT,
)

VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans()), children, max_size=4),
    ),
    max_leaves=12,
)


# --- structural mutations on parsed data ------------------------------------------------------------------------


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*at, index))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_data(draw: st.DrawFn) -> bytes:
    data = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(SEED_DATA))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "retype", "add_key", "duplicate_item", "nest", "rename"]))
        if not path:
            if op == "retype":
                data = draw(VALUES)
            continue
        parent = _get(data, path[:-1])
        last = path[-1]
        if op == "delete":
            del parent[last]
        elif op == "retype":
            parent[last] = draw(VALUES)
        elif op == "add_key" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(VALUES)
        elif op == "duplicate_item" and isinstance(parent, list):
            parent.append(parent[last])
        elif op == "nest":
            value: Any = parent[last]
            for _ in range(draw(st.integers(min_value=1, max_value=200))):
                value = [value] if draw(st.booleans()) else {"k": value}
            parent[last] = value
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = parent.pop(last)
    try:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=4096)
    except (yaml.YAMLError, RecursionError, ValueError):
        text = repr(data)
    return text.encode("utf-8", errors="surrogatepass")


# --- textual mutations -----------------------------------------------------------------------------------------

SNIPPETS = st.sampled_from(
    [
        "\t",
        "&a ",
        "*a",
        "&x [*x]",
        "&y {k: *y}",
        "<<: *a\n",
        "? [a, b]\n: c\n",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!!python/object:os.system x",
        "!unsafe 'x'",
        "!!omap [{a: 1}]",
        "2024-01-01",
        "0x" + "f" * 40,
        "9" * 5000,
        "0x" + "f" * 5000,
        "1e99999",
        ".nan",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "\x00",
        "\x85",
        "\ufeff",
        "\u2028",
        "- ",
        ": ",
        "{",
        "[",
        "'",
        '"\\x',
        "#",
        "~: null\n",
        "1: one\n",
        "true: yes\n",
        "[" * 3000 + "]" * 3000,
        "{a: " * 500 + "}" * 500,
    ]
)


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(SEEDS)).encode("utf-8")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(raw)))
        op = draw(st.sampled_from(["bytes", "snippet", "delete", "duplicate_line", "tab"]))
        if op == "bytes":
            raw = raw[:position] + draw(st.binary(min_size=1, max_size=16)) + raw[position:]
        elif op == "snippet":
            raw = raw[:position] + draw(SNIPPETS).encode("utf-8", errors="surrogatepass") + raw[position:]
        elif op == "delete":
            raw = raw[:position] + raw[position + draw(st.integers(min_value=1, max_value=40)) :]
        elif op == "duplicate_line":
            lines = raw.split(b"\n")
            index = min(len(lines) - 1, position % max(1, len(lines)))
            lines.insert(index, lines[index])
            raw = b"\n".join(lines)
        elif op == "tab":
            raw = raw.replace(b"  ", b"\t", draw(st.integers(min_value=1, max_value=3)))
    return raw


@st.composite
def hostile_documents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["laughs", "cycle", "deep", "bigint", "garbage", "wide", "alias_root"]))
    if kind == "laughs":
        levels = draw(st.integers(min_value=3, max_value=12))
        lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for level in range(1, levels):
            lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
        return ("\n".join(lines) + f"\nspec: {{steps: *l{levels - 1}}}\n").encode()
    if kind == "cycle":
        return b"apiVersion: runbook/v1\nkind: Runbook\nmetadata: &m {name: x, tags: *m}\nspec: &s {steps: [*s]}\n"
    if kind == "deep":
        depth = draw(st.integers(min_value=10, max_value=20000))
        return b"spec: " + b"[" * depth + b"]" * depth + b"\n"
    if kind == "bigint":
        digits = draw(st.integers(min_value=19, max_value=6000))
        return f"apiVersion: runbook/v1\nspec: {{steps: [{{id: a, retries: {'9' * digits}}}]}}\n".encode()
    if kind == "wide":
        count = draw(st.integers(min_value=1, max_value=3000))
        steps = "".join(f"  - {{id: s{i}, hosts: db, uses: demo_role, with: {{database: x}}}}\n" for i in range(count))
        return f"apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{name: wide}}\nspec:\n steps:\n{steps}".encode()
    if kind == "alias_root":
        return b"&r [*r]\n"
    return draw(st.binary(max_size=400))


ANY_INPUT = st.one_of(mutated_data(), mutated_text(), hostile_documents())


def _category(message: str) -> str:
    if message.startswith("YAML"):
        return "YAML"
    if "not UTF-8" in message:
        return "encoding"
    return "schema/semantic"


def _check_result(result: api.ValidationResult) -> None:
    if result.ok:
        assert result.runbook is not None
        return
    assert result.diagnostics
    for diagnostic in result.diagnostics:
        assert isinstance(diagnostic, Diagnostic)
        assert INTERNAL_ERROR not in diagnostic.message, diagnostic  # the loader's safety net caught a bug
        assert diagnostic.line >= 1 and diagnostic.column >= 1
        assert not math.isnan(diagnostic.line)
        assert ": error: " in str(diagnostic)


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(payload=ANY_INPUT)
def test_validate_never_raises(workdir: Path, payload: bytes) -> None:
    path = _write(workdir, payload)
    result = api.validate(path, [ROLES])
    _check_result(result)
    event("valid" if result.ok else "invalid: " + _category(result.diagnostics[0].message))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=ANY_INPUT)
def test_cli_validate_exits_0_or_2(workdir: Path, payload: bytes) -> None:
    path = _write(workdir, payload)
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        status = cli.main(["validate", "--roles-path", str(ROLES), str(path)])
    assert status in (0, 2)
    if status == 2:
        assert stderr.getvalue().count(": error: ") >= 1
    assert "Traceback" not in stderr.getvalue()
    assert INTERNAL_ERROR not in stderr.getvalue()


# --- operator param values: -p texts, and the values a params file or a journal holds ----------------------------

PARAM_TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "-inf", "1e400", "9" * 5000, "-9223372036854775809", "-0", "0x10", "1_000", "[NaN]"]),
    st.sampled_from(['{"a": Infinity}', '{"a": 1e999}', "[" + "7" * 5000 + "]", "{", '{"a": "\\ud800"}']),
    st.integers(min_value=1, max_value=5000).map(lambda d: "[" * d + "]" * d),
    st.integers(min_value=1, max_value=5000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    VALUES.map(json.dumps),
)


@functools.cache
def every_type_runbook() -> Any:
    return load_runbook(FIXTURES / "valid" / "params_every_type.yml", [ROLES])


@st.composite
def nested_values(draw: st.DrawFn) -> Any:
    value = draw(VALUES)
    pattern = draw(st.lists(st.booleans(), min_size=1, max_size=4))  # list or mapping, level by level
    for level in range(draw(st.integers(min_value=0, max_value=3000))):
        value = [value] if pattern[level % len(pattern)] else {"k": value}
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    given_name=st.sampled_from(["name", "count", "ratio", "enabled", "hosts", "labels", "mode"]),
    text=PARAM_TEXTS,
    file_name=st.sampled_from(["hosts", "labels", "count", "ratio", "name"]),
    file_value=nested_values(),
)
def test_param_values_resolve_within_limits_or_are_refused(
    given_name: str, text: str, file_name: str, file_value: Any
) -> None:
    try:
        resolved = params.resolve(every_type_runbook(), {"password": "x", given_name: text}, {file_name: file_value})
    except InvalidInput as exc:
        assert str(exc).startswith("param ") and len(str(exc)) < 2000
        return
    for value in resolved.values.values():
        assert value_problem(value) is None
    json.dumps(resolved.values, allow_nan=False)
