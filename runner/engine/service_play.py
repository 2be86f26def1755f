"""The runner's own one-task playbooks (lease, host work, backups status, offsite probe): the playbook, and each
host's answer to its task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from runner.engine.yamldump import dump


def one_task_playbook(name: str, hosts: str, task: dict[str, Any], header: str) -> str:
    """A playbook of one play named name that runs task on hosts, facts not gathered; header heads the file."""
    return dump([{"name": name, "hosts": hosts, "gather_facts": False, "tasks": [task]}], header)


class TaskAnswers(ABC):
    """ansible-runner event handler: each host's result of the task named `task`, or why it gave none.

    A subclass keeps them: answered(host, result) for an ok result, failed(host, message) for an unreachable host
    or a failed task (message no_answer when the failure says nothing)."""

    no_answer = "the host did not answer"

    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        host, kind = data.get("host"), event.get("event", "")
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if not host or not isinstance(res, dict):
            return True
        if kind == "runner_on_unreachable":
            self.failed(str(host), f"unreachable: {res.get('msg', '')}".strip())
        elif data.get("task") == self.task and kind == "runner_on_ok":
            self.answered(str(host), res)
        elif data.get("task") == self.task and kind == "runner_on_failed":
            self.failed(str(host), str(res.get("msg") or self.no_answer))
        return True

    @abstractmethod
    def answered(self, host: str, result: dict[str, Any]) -> None:
        """The host's ok result of the task."""

    @abstractmethod
    def failed(self, host: str, message: str) -> None:
        """Why the host gave no result: unreachable, or its task failed."""


__all__ = ["TaskAnswers", "one_task_playbook"]
