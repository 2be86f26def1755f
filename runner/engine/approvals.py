"""The confirm: gates of a run: approved before it (--yes; check mode asks none) or asked of the operator.

The operator is asked the confirm: text rendered with what is known when it is asked (runner/engine/preview.py):
the params, the inventory variables of the step's hosts, the outputs recorded so far; `runbook plan` shows the
same text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from runner.engine.host_variables import inventory_variables
from runner.engine.inventory import StepHosts
from runner.engine.journal import Journal
from runner.engine.preview import Outputs, Preview
from runner.engine.start_gate import StartGate
from runner.errors import ApprovalRequired
from runner.language.model import Step
from runner.language.params import ResolvedParams
from runner.records.redact import Redactor

Approver = Callable[[Step, str], bool]
Emit = Callable[..., None]


@dataclass(frozen=True)
class ApprovalPolicy:
    assume_yes: bool
    check: bool
    approver: Approver | None

    @property
    def known_before_the_run(self) -> bool:
        """Every approval is known up front: no gate needs a call of its own."""
        return self.assume_yes or self.check


@dataclass(frozen=True)
class Questions:
    """The question of each gate: its confirm: text rendered for the step's hosts, known secrets masked."""

    preview: Preview
    hosts: StepHosts
    redactor: Redactor

    @classmethod
    def for_steps(
        cls,
        steps: Iterable[Step],
        params: ResolvedParams,
        inventory: Path,
        hosts: StepHosts,
        redactor: Redactor,
        outputs: Outputs | None = None,
    ) -> Questions:
        """Questions of these steps' gates; the inventory variables of their hosts are read when first needed."""
        gated = hosts.of(s for s in steps if s.confirm)
        variables = partial(inventory_variables, inventory, gated)
        return cls(Preview(params.values, params.secret_names, variables, outputs), hosts, redactor)

    def of(self, step: Step) -> str:
        text = self.preview.text(step.confirm or "", self.hosts.by_pattern.get(step.hosts, []))
        return self.redactor.text(text)


class Approvals:
    """Asks each gate of a group of steps; `declined` says which step the operator declined."""

    def __init__(
        self, policy: ApprovalPolicy, journal: Journal, emit: Emit, gate: StartGate, question: Callable[[Step], str]
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.emit = emit
        self.gate = gate
        self.question = question
        self.declined = ""

    def approve_group(self, group: list[Step]) -> bool:
        """False when the operator declined a step of the group (none is asked in check mode)."""
        if self.policy.check:
            return True
        for step in group:
            if not step.confirm:
                continue
            question = self.question(step)
            self.gate.when_begun(partial(self.emit, "approval", step=step.id, question=question))
            if not self._approve(step, question):
                self.declined = f"operator declined step {step.id!r}"
                self.journal.append("declined", step=step.id)
                return False
            self.gate.when_begun(partial(self.journal.append, "approved", step=step.id))
        return True

    def asks_first(self, steps: tuple[Step, ...]) -> bool:
        """Whether an operator must approve the first of these steps before it runs."""
        return bool(steps) and bool(steps[0].confirm) and not self.policy.assume_yes

    def _approve(self, step: Step, question: str) -> bool:
        if self.policy.assume_yes:
            return True
        if self.policy.approver is None:
            raise ApprovalRequired(
                f"step {step.id!r} needs approval ({question}); no terminal to ask on — "
                "re-run with --yes to approve, or run it interactively"
            )
        return self.policy.approver(step, question)
