"""Secret values never leave the process: every record and report passes through a Redactor.

The values known to be secret are the run's secret params and the values its steps give to options a role marks
no_log (literal, or a template over params only: one over inventory vars stays the role's to protect). A secret is
masked as a whole value (any length), and inside a larger text only where it stands as a token of its own: the
secret or one of its encoded forms (URL-encoded, JSON-escaped, shell-quoted, HTML-escaped, base64) with no word
character right before or after it. Word characters are everything but whitespace, quotes and the punctuation
that separates values (`= : @ , ; ( ) [ ] { } < > & ? # | !`), so with the secret `lab`, `password=lab`,
`postgres://u:lab@db` and `'lab'` are masked while `available`, `/var/lib/runbook-lab`, `inventories/lab` and
`lab.example.com` are left as they are. A `.` ends a token only where no word follows it (`lab.` ends a sentence).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runner.language import templates
from runner.language.model import Runbook
from runner.language.params import SECRET_MASK, ResolvedParams
from runner.language.role_specs import find_role
from runner.language.typecheck import substitute_params

_SEPARATORS = r"\s'\"`=:@,;()\[\]{}<>&?#|!"
_WORD = rf"[^{_SEPARATORS}.]"


def encoded_forms(secret: str) -> set[str]:
    """The secret as it may be written into a larger text."""
    raw = secret.encode("utf-8")
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        shlex.quote(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }
    for encoded in (base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")):
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if form}


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        forms = sorted({form for s in self.secrets for form in encoded_forms(s)}, key=len, reverse=True)
        alternatives = "|".join(re.escape(form) for form in forms)
        self._pattern = (
            re.compile(rf"(?<!{_WORD})(?<!\.)(?:{alternatives})(?!{_WORD})(?!\.{_WORD})") if forms else None
        )

    @classmethod
    def for_run(cls, runbook: Runbook, params: ResolvedParams, roles_paths: list[Path]) -> Redactor:
        """The redactor of a run: its secret params and the values of the options its roles mark no_log."""
        return cls([*params.secret_values(), *no_log_values(runbook, params, roles_paths)])

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(SECRET_MASK, value)

    def scrub(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value

    def hides(self, value: Any) -> bool:
        """Whether scrub would mask something in value."""
        if self._pattern is None:
            return False
        if isinstance(value, str):
            return self._pattern.search(value) is not None
        if isinstance(value, dict):
            return any(self.hides(k) or self.hides(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(self.hides(v) for v in value)
        return False

    def masked_fields(self, fields: Mapping[str, Any]) -> list[str]:
        """The fields scrub would change, a mapping's entries by name: ['message', 'outputs.uri', 'params.note']."""
        masked: list[str] = []
        for name, value in fields.items():
            if isinstance(value, dict):
                masked += [f"{name}.{key}" for key, item in value.items() if self.hides(key) or self.hides(item)]
            elif self.hides(value):
                masked.append(name)
        return masked


def no_log_values(runbook: Runbook, params: ResolvedParams, roles_paths: list[Path]) -> list[str]:
    """What the steps give to options their roles mark no_log, where the runner can tell it (the role's own
    default, a literal, a template over params); None and "" are no secret."""
    values: list[str] = []
    for step in runbook.all_steps:
        role = find_role(step.uses, roles_paths)
        if role is None:
            continue
        for name, option in role.options.items():
            if not option.no_log:
                continue
            given = step.with_.get(name, option.default)
            value = substitute_params(given, params.values)
            if value not in (None, "") and not isinstance(value, (dict, list)) and not templates.is_template(value):
                values.append(str(value))
    return values
