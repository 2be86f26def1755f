"""Secret values never leave the process: every record and report passes through a Redactor."""

from __future__ import annotations

from typing import Any

from runner.language.params import SECRET_MASK


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        # longest first so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, SECRET_MASK)
        return value

    def scrub(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)) if isinstance(k, str) else k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value
