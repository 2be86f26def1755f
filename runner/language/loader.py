"""The one runbook loader: YAML with positions -> schema -> semantic checks -> typed Runbook.

Each stage reads only what the one before accepted: the schema checks what the YAML layer could read, the
semantic checks read the schema-valid parts, and the Runbook is built only from a runbook with no problem at
all. Every problem is collected (not only the first) and raised together as InvalidInput.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from runner.errors import Diagnostic, InvalidInput
from runner.language import policy
from runner.language.durations import parse_duration
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE, Notification, Param, Runbook, Step
from runner.language.param_checks import param_schema
from runner.language.parts import Parts
from runner.language.schema import check_document
from runner.language.semantics import semantic_diagnostics
from runner.language.yamlsource import Located, YamlSyntaxError, parse_yaml_file, parse_yaml_text

INTERNAL_ERROR = "internal error while checking this runbook"
DEFAULT_NOTIFY_ON = ("failure", "rolled_back")


def load_runbook(path: str | Path, roles_paths: list[Path]) -> Runbook:
    """Load and fully validate a runbook file; raise InvalidInput listing every problem."""
    file = Path(path)
    try:
        located = parse_yaml_file(file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc), exc.diagnostics) from None
    return _validate(located, roles_paths)


def load_runbook_text(text: str, file: str, roles_paths: list[Path]) -> Runbook:
    try:
        located = parse_yaml_text(text, file)
    except YamlSyntaxError as exc:
        raise InvalidInput(str(exc), exc.diagnostics) from None
    return _validate(located, roles_paths)


def _validate(located: Located, roles_paths: list[Path]) -> Runbook:
    try:
        problems = _problems(located, roles_paths)
        if not problems:
            return _runbook(located)
    except RecursionError:
        problems = [Diagnostic(located.file, 1, 1, "runbook nested too deeply to check")]
    except Exception as exc:  # a bug of ours must still not become a traceback for the user
        detail = f"{type(exc).__name__}: {exc}"[:200]
        problems = [Diagnostic(located.file, 1, 1, f"{INTERNAL_ERROR} ({detail}); please report this file")]
    raise InvalidInput("\n".join(map(str, problems)), problems)


def _problems(located: Located, roles_paths: list[Path]) -> list[Diagnostic]:
    """Every problem of the document, in file order: YAML, then schema, then semantic checks of what is valid."""
    data = located.data
    if data is None and not located.problems:
        return [Diagnostic(located.file, 1, 1, "empty file: expected a runbook (apiVersion, kind, metadata, spec)")]
    if not isinstance(data, dict):
        problems = list(located.problems)
        if data is not None or not problems:
            problems.append(
                located.diagnostic((), "a runbook must be a mapping with apiVersion, kind, metadata and spec")
            )
        return problems
    schema = check_document(located, "runbook.schema.json")
    semantic = semantic_diagnostics(located, Parts.of(data, schema), roles_paths)
    problems = [*located.problems, *schema.diagnostics, *semantic]
    return sorted(dict.fromkeys(problems), key=lambda d: (d.line, d.column, d.message))


# --- the typed runbook, from a document with no problem ------------------------------------------------------


def _runbook(located: Located) -> Runbook:
    metadata: dict[str, Any] = located.data["metadata"]
    spec: dict[str, Any] = located.data["spec"]
    severity = metadata.get("severity", "SEV3")
    if "budget" in spec:
        budget_s, budget_from = parse_duration(spec["budget"]), "runbook"
    else:
        budget_s, budget_from = policy.response_target_s(severity), "severity policy"
    return Runbook(
        path=Path(located.file),
        name=metadata["name"],
        title=metadata.get("title", ""),
        severity=severity,
        owner=metadata.get("owner", ""),
        tags=tuple(metadata.get("tags", ())),
        params={name: _param(name, definition) for name, definition in spec.get("params", {}).items()},
        budget_s=budget_s,
        budget_from=budget_from,
        lock=spec.get("lock", "host"),
        steps=tuple(_step(item, index, PHASE_MAIN) for index, item in enumerate(spec["steps"])),
        on_failure=tuple(_step(item, i, PHASE_ON_FAILURE) for i, item in enumerate(spec.get("on_failure", ()))),
        notify=tuple(_notification(item) for item in spec.get("notify", ())),
        sha256=_sha256(located.file),
    )


def _param(name: str, definition: dict[str, Any]) -> Param:
    return Param(
        name=name,
        schema=param_schema(definition),
        secret=definition.get("secret", False),
        has_default="default" in definition,
        default=definition.get("default"),
        description=definition.get("description", ""),
    )


def _step(item: dict[str, Any], index: int, phase: str) -> Step:
    return Step(
        id=item["id"],
        uses=item["uses"],
        hosts=item["hosts"],
        phase=phase,
        name=item.get("name", ""),
        with_=dict(item.get("with", {})),
        timeout_s=parse_duration(item["timeout"]) if "timeout" in item else None,
        retries=item.get("retries", 0),
        serial=item.get("serial"),
        when=item.get("when"),
        confirm=item.get("confirm"),
        index=index,
    )


def _notification(item: dict[str, Any]) -> Notification:
    target = {k: v for k, v in item.items() if k not in ("kind", "on")}
    return Notification(item["kind"], tuple(item.get("on", DEFAULT_NOTIFY_ON)), target)


def _sha256(file: str) -> str:
    try:
        return hashlib.sha256(Path(file).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return ""
