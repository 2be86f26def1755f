"""The severity policy (policies/severity.yml): response and resolution targets per SEV level."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from runner.language.durations import parse_duration
from runner.paths import POLICIES_DIR


@lru_cache(maxsize=1)
def load_policy() -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load((POLICIES_DIR / "severity.yml").read_text(encoding="utf-8"))
    return data


def response_target_s(severity: str) -> float:
    return parse_duration(str(load_policy()["levels"][severity]["response"]))
