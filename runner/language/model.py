"""The validated runbook, as typed data the renderer and executor use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASE_MAIN = "main"
PHASE_ON_FAILURE = "on_failure"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    secret: bool = False
    has_default: bool = False
    default: Any = None
    description: str = ""

    @property
    def type(self) -> str:
        return str(self.schema.get("type", "string"))

    @property
    def required(self) -> bool:
        return not self.has_default


@dataclass(frozen=True)
class Step:
    id: str
    uses: str
    hosts: str
    phase: str = PHASE_MAIN
    name: str = ""
    with_: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    retries: int = 0
    serial: int | str | None = None
    when: str | None = None
    confirm: str | None = None
    index: int = 0

    @property
    def title(self) -> str:
        return self.name or f"{self.uses} on {self.hosts}"


@dataclass(frozen=True)
class Notification:
    kind: str
    on: tuple[str, ...]
    target: dict[str, Any]


@dataclass(frozen=True)
class Runbook:
    path: Path
    name: str
    title: str
    severity: str
    owner: str
    tags: tuple[str, ...]
    params: dict[str, Param]
    budget_s: float
    budget_from: str  # "runbook" or "severity policy"
    lock: str
    steps: tuple[Step, ...]
    on_failure: tuple[Step, ...]
    notify: tuple[Notification, ...]
    sha256: str

    @property
    def all_steps(self) -> tuple[Step, ...]:
        return self.steps + self.on_failure

    def step(self, step_id: str) -> Step:
        for step in self.all_steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def secret_params(self) -> set[str]:
        return {name for name, param in self.params.items() if param.secret}
