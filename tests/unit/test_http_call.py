"""runbook.ops.http_call against a real loopback server: expected statuses, retries with backoff, and secrets that
never appear in what the module returns - as a library and run as the Ansible module it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import Server
from opsmodule import COLLECTIONS, MODULES, load

http_call = load("http_call")

TOKEN = "tok-3f9c1b7e-very-secret"
API_KEY = "key-8d2a-also-secret"


@pytest.fixture
def admin() -> Iterator[Server]:
    """An admin API that fails twice with 503, refuses a bad token with 401 and echoes the credentials it got."""
    state = {"flaky": 0}

    def route(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/flaky":
            state["flaky"] += 1
            return (503, {"error": "busy"}) if state["flaky"] <= 2 else (200, {"attempt": state["flaky"]})
        if path == "/down":
            return 503, {"error": "down"}
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": f"bad credentials {headers.get('Authorization')}"}
        return 200, {
            "feature": body and body.get("feature"),
            "enabled": False,
            "seen": {"authorization": headers.get("Authorization"), "key": headers.get("X-Api-Key")},
        }

    server = Server(route)
    yield server
    server.close()


def params(**given: Any) -> dict[str, Any]:
    base = {"method": "GET", "headers": {}, "secret_headers": [], "token": "", "body": None, "status": 200,
            "retries": 0, "retry_statuses": [408, 429, 500, 502, 503, 504], "backoff": "10ms", "backoff_factor": 2.0,
            "backoff_max": "30s", "timeout": "5s", "validate_certs": True}  # fmt: skip
    return {**base, **given}


def test_a_call_gets_its_expected_status_and_returns_the_json(admin: Server) -> None:
    result = http_call.call(params(url=admin.base + "/admin/feature-flags", method="patch", token=TOKEN,
                                   body={"feature": "new-checkout", "enabled": False}))  # fmt: skip
    assert (result["ok"], result["status"], result["attempts"], result["changed"]) == (True, 200, 1, True)
    assert result["json"]["feature"] == "new-checkout"
    assert admin.requests[0][:3] == ("PATCH", "/admin/feature-flags", {"feature": "new-checkout", "enabled": False})
    assert result["msg"] == f"PATCH {admin.base}/admin/feature-flags: HTTP 200 (after 1 attempt)"


def test_retries_back_off_until_the_call_succeeds(admin: Server) -> None:
    slept: list[float] = []
    result = http_call.call(params(url=admin.base + "/flaky", retries=4, backoff="100ms", backoff_factor=3.0,
                                   backoff_max="500ms"), sleep=slept.append)  # fmt: skip
    assert (result["ok"], result["attempts"], result["json"]) == (True, 3, {"attempt": 3})
    assert slept == pytest.approx([0.1, 0.3])
    assert [h["detail"] for h in result["history"]] == ["status 503, expected 200"] * 2 + ["HTTP 200"]
    assert result["changed"] is False  # a GET changes nothing


def test_retries_end_and_the_pauses_stop_growing_at_backoff_max(admin: Server) -> None:
    slept: list[float] = []
    result = http_call.call(params(url=admin.base + "/down", retries=4, backoff="1s", backoff_factor=10.0,
                                   backoff_max="5s"), sleep=slept.append)  # fmt: skip
    assert (result["ok"], result["attempts"], result["status"]) == (False, 5, 503)
    assert slept == [1.0, 5.0, 5.0, 5.0]
    assert result["msg"] == f"GET {admin.base}/down: status 503, expected 200 (after 5 attempts)"


def test_an_unexpected_status_that_is_not_retried_fails_at_once(admin: Server) -> None:
    slept: list[float] = []
    result = http_call.call(params(url=admin.base + "/admin/x", retries=3), sleep=slept.append)
    assert (result["ok"], result["status"], result["attempts"], slept) == (False, 401, 1, [])
    accepted = http_call.call(params(url=admin.base + "/admin/x", status=[200, 401]))
    assert accepted["ok"] is True


def test_no_answer_is_retried(tmp_path: Path) -> None:
    slept: list[float] = []
    result = http_call.call(params(url="http://127.0.0.1:9/", retries=2, timeout="1s"), sleep=slept.append)
    assert (result["ok"], result["status"], result["attempts"]) == (False, None, 3)
    assert result["msg"].startswith("GET http://127.0.0.1:9/: no response")


def test_secrets_never_appear_in_the_result_or_its_message(admin: Server) -> None:
    given = params(url=admin.base + "/admin/feature-flags", method="PATCH", token=TOKEN,
                   headers={"X-Api-Key": API_KEY, "X-Request": "r-1"}, secret_headers=["x-api-key"],
                   body={"feature": "f"})  # fmt: skip
    result = http_call.call(given)
    assert result["ok"] is True
    assert admin.requests[0][3]["Authorization"] == f"Bearer {TOKEN}" and admin.requests[0][3]["X-Api-Key"] == API_KEY
    text = json.dumps(result)
    assert TOKEN not in text and API_KEY not in text
    assert result["json"]["seen"] == {"authorization": "********", "key": "********"}
    assert result["request_headers"] == {"X-Api-Key": "********", "X-Request": "r-1", "Authorization": "********"}
    refused = http_call.call(dict(given, token="wrong-" + TOKEN))  # the server echoes it in its error
    assert refused["ok"] is False and TOKEN not in json.dumps(refused)
    plan = http_call.plan(given)
    assert TOKEN not in json.dumps(plan) and plan["msg"].startswith("would call PATCH")


def test_an_authorization_header_is_secret_without_being_named(admin: Server) -> None:
    result = http_call.call(params(url=admin.base + "/admin/x", headers={"authorization": f"Bearer {TOKEN}"}))
    assert result["ok"] is True and TOKEN not in json.dumps(result)


def run_module(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """The module run as Ansible runs it (its arguments in a file), its JSON answer."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}
    env = {**os.environ, "PYTHONPATH": str(COLLECTIONS)}
    proc = subprocess.run([sys.executable, str(MODULES / "http_call.py")], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert TOKEN not in proc.stdout + proc.stderr and API_KEY not in proc.stdout + proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def test_run_as_a_module_nothing_it_prints_holds_a_secret(admin: Server) -> None:
    args = {
        "url": admin.base + "/admin/feature-flags",
        "method": "PATCH",
        "token": TOKEN,
        "headers": {"X-Api-Key": API_KEY},
        "secret_headers": ["X-Api-Key"],
        "body": {"feature": "f"},
    }
    answer = run_module(args)
    assert answer["ok"] is True and answer["status"] == 200 and not answer.get("failed")
    refused = run_module({**args, "url": admin.base + "/down", "retries": 1, "backoff": "10ms"})
    assert refused["failed"] is True and refused["attempts"] == 2
    planned = run_module(args, check_mode=True)
    assert planned["skipped"] is True and planned["ok"] is None and len(admin.requests) == 3
