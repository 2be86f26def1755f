"""runbook.ops.watch_window and the watch role against real loopback servers started here: a fake Prometheus
(/api/v1/query answering what the test sets) and a service whose error rate and latency the test controls.

Intervals are a tenth of a second, so each watch takes well under a second or two."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opsmodule import COLLECTIONS, MODULES, load

from runner.errors import InvalidInput
from runner.language import value_formats
from runner.language.durations import parse_duration as runbook_duration
from runner.language.loader import load_runbook_text
from runner.language.typecheck import check_resolved_options

module = load("watch_window")  # puts runner/collections on sys.path: the imports below resolve from there

from ansible_collections.runbook.ops.plugins.module_utils import host_work  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import watch_providers as providers  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import watch_rules as rules  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils.watch_loop import WatchPlan, run_watch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Behaviour:
    """What the servers answer: Prometheus values in turn (the last one stays), the service's failures and delay."""

    def __init__(self) -> None:
        self.prom: list[Any] = [0.0]
        self.queries: list[str] = []
        self.fail_every = 0  # every n-th service request answers 500 (0: none)
        self.delay = 0.0
        self.requests = 0
        self.lock = threading.Lock()

    def next_prom(self) -> Any:
        with self.lock:
            return self.prom.pop(0) if len(self.prom) > 1 else self.prom[0]


def _prometheus_body(answer: Any) -> tuple[int, dict[str, Any]]:
    if answer == "empty":
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
    if answer == "two":
        series = [{"metric": {"i": str(i)}, "value": [1.0, "1"]} for i in (1, 2)]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": series}}
    if answer == "bad query":
        return 400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    if isinstance(answer, tuple):  # ("scalar", "0.5")
        return 200, {"status": "success", "data": {"resultType": "scalar", "result": [1.0, answer[1]]}}
    value = answer if isinstance(answer, str) else repr(float(answer))
    series = [{"metric": {}, "value": [1.0, value]}]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": series}}


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.startswith("/api/v1/query?"):
                behaviour.queries.append(self.path)
                self._send(*_prometheus_body(behaviour.next_prom()))
                return
            with behaviour.lock:
                behaviour.requests += 1
                failing = behaviour.fail_every and behaviour.requests % behaviour.fail_every == 0
            time.sleep(behaviour.delay)
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(500 if failing else 200, {"ok": not failing})

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()


def _prom_check(base: str, **extra: Any) -> dict[str, Any]:
    check = {
        "name": "errors",
        "provider": "prometheus",
        "url": base,
        "query": 'sum(rate(x{status="500"}[1m]))',
        "fail_if": "> 0.05",
        "for": 0.3,
        "interval": 0.1,
        "timeout": "1s",
    }
    check.update(extra)
    return check


def _watch(checks: list[dict[str, Any]], window: Any = 1.2, **options: Any) -> dict[str, Any]:
    params = {
        "checks": checks,
        "window": window,
        "initial_delay": options.pop("initial_delay", 0),
        "on_no_data": options.pop("on_no_data", "inconclusive"),
        "max_provider_errors": options.pop("max_provider_errors", 3),
        "on_inconclusive": options.pop("on_inconclusive", "fail"),
        "runbook_timeout": 0.0,
    }
    assert not options
    plan = module.build_plan(params)
    return run_watch(plan, providers.sampler())


def _values(result: dict[str, Any], index: int = 0) -> list[Any]:
    return [m["value"] for m in result["checks"][index]["measurements"]]


# ------------------------------------------------------------------------------------------- fail_if, durations

GOOD_COMPARISONS = {
    "> 0.05": (">", 0.05),
    "<1": ("<", 1.0),
    " >= 2 ": (">=", 2.0),
    "<= -3.5": ("<=", -3.5),
    "== 1": ("==", 1.0),
    "!= 0": ("!=", 0.0),
    "> 1e-3": (">", 0.001),
    "< .5": ("<", 0.5),
}
BAD_COMPARISONS = [
    "=> 0.05",
    "= 1",
    "> ",
    "0.05",
    "> 5%",
    "> abc",
    ">> 1",
    "> 1 and < 2",
    "gt 1",
    "",
    "> 1e999",
    "> nan",
    5,
    None,
]


@pytest.mark.parametrize("text", sorted(GOOD_COMPARISONS))
def test_fail_if_parses_an_operator_and_a_number(text: str) -> None:
    assert rules.parse_fail_if(text) == GOOD_COMPARISONS[text]
    assert value_formats.comparison_problem(text) is None  # runbook validate accepts what the module accepts


@pytest.mark.parametrize("text", BAD_COMPARISONS, ids=repr)
def test_fail_if_refuses_anything_else_saying_what_it_takes(text: Any) -> None:
    with pytest.raises(ValueError, match=r"is not a comparison: write one of >, <, >=, <=, ==, != and a number"):
        rules.parse_fail_if(text)
    assert "is not a comparison" in (value_formats.comparison_problem(text) or "")


@pytest.mark.parametrize("text", ["90s", "2m", "1h", "500ms", "1d", "0s"])
def test_durations_are_spelled_as_runbooks_spell_them(text: str) -> None:
    assert rules.parse_duration(text) == runbook_duration(text)
    assert value_formats.duration_problem(text) is None


def test_durations_also_take_seconds_and_refuse_the_rest() -> None:
    assert [rules.parse_duration(v) for v in (90, 0.5, "30", "1.5")] == [90.0, 0.5, 30.0, 1.5]
    for bad in ("1m30s", "90 s", "-1s", "ten", -1, True, float("nan")):
        with pytest.raises(ValueError, match="not a duration"):
            rules.parse_duration(bad)
        assert value_formats.duration_problem(bad) is not None


# --------------------------------------------------------------------------------------------- the for: rule


def test_a_breach_is_confirmed_once_it_held_for_its_for(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = [0.0, 0.0, 0.2]  # bad from the third sample (t=0.2) on
    result = _watch([_prom_check(base)], window=3)
    assert result["verdict"] == "breached" and result["breached_check"] == "errors" and not result["healthy"]
    breaches = [m["breach"] for m in result["checks"][0]["measurements"]]
    assert breaches == [False, False, True, True, True, True]  # t=0.2 .. t=0.5: held for 0.3s
    assert 0.5 <= result["time_to_detect"] <= 0.2 + 0.3 + 0.1 + 0.05  # the failure began at t=0.2: for + interval
    assert result["ended_early"] and result["elapsed"] < 1.0  # not waiting out the 3s window
    assert "errors: 0.2, fail_if > 0.05 held for 0.3s (from t=0.2s" in result["reason"]
    assert result["started_at"].endswith("Z") and result["ended_at"] >= result["started_at"]
    assert "query=sum%28rate%28x%7Bstatus%3D%22500%22%7D%5B1m%5D%29%29" in behaviour.queries[0]


def test_one_good_sample_resets_the_breach(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = [0.2, 0.2, 0.2, 0.0] * 3 + [0.0]  # three bad samples span 0.2s, never the 0.3s of for
    result = _watch([_prom_check(base)], window=1.2)
    assert result["verdict"] == "healthy" and result["healthy"] and result["time_to_detect"] is None
    assert len(result["checks"][0]["measurements"]) == 13  # t=0 .. t=1.2 every 0.1s: the whole window
    assert sum(m["breach"] for m in result["checks"][0]["measurements"]) == 9
    assert result["summary"] == [
        {"name": "errors", "ok": True, "detail": "13 samples, fail_if > 0.05 never held for 0.3s (max 0.2)"}
    ]


def test_for_zero_breaches_on_the_first_bad_sample_after_the_initial_delay(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = [1.0]
    started = time.monotonic()
    result = _watch([_prom_check(base, **{"for": "0s"})], window=1, initial_delay=0.3)
    assert result["verdict"] == "breached" and 0.3 <= result["time_to_detect"] < 0.4
    assert result["checks"][0]["measurements"][0]["t"] >= 0.3 and time.monotonic() - started < 0.8


# ---------------------------------------------------------------------------------------------- no data, NaN


@pytest.mark.parametrize(
    ("policy", "verdict"), [("pass", "healthy"), ("fail", "breached"), ("inconclusive", "inconclusive")]
)
def test_an_empty_result_is_no_data_handled_by_the_policy(
    server: tuple[str, Behaviour], policy: str, verdict: str
) -> None:
    base, behaviour = server
    behaviour.prom = ["empty"]
    result = _watch([_prom_check(base)], window=0.6, on_no_data=policy)
    assert result["verdict"] == verdict
    assert set(_values(result)) == {None} and not any("error" in m for m in result["checks"][0]["measurements"])
    if verdict == "inconclusive":
        assert result["reason"] == "errors: 3 consecutive samples without a value (last: no data)"
        assert len(_values(result)) == 3 and result["ended_early"]


def test_nan_is_no_data_and_a_value_again_resets_the_count(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = ["NaN", "NaN", 0.01, "NaN", "NaN", 0.0]
    result = _watch([_prom_check(base)], window=0.7)
    assert result["verdict"] == "healthy"
    assert _values(result)[:6] == [None, None, 0.01, None, None, 0.0]


def test_a_window_without_a_single_value_is_never_healthy(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = ["NaN"]
    result = _watch([_prom_check(base)], window=0.3, max_provider_errors=10)
    assert result["verdict"] == "inconclusive" and not result["healthy"]
    assert result["reason"] == "errors: no sample gave a value in the window (4 taken)"


def test_scalars_infinities_and_several_series(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = [("scalar", "0.5"), "+Inf", "two", "bad query"]
    check = _prom_check(base)
    sample = providers.sampler()
    assert [sample(check, 1.0) for _ in range(4)] == [
        (0.5, None),
        (float("inf"), None),
        (None, "query gave 2 series: aggregate them to one (sum, max, avg)"),
        (None, "Prometheus answered HTTP 400: parse error at char 3"),
    ]


# ------------------------------------------------------------------------------------------- provider errors


def test_prometheus_gone_makes_the_watch_inconclusive_and_it_ends(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.prom = [0.0, 0.0]

    def stop_prometheus() -> None:  # the server goes away after a few samples
        time.sleep(0.25)
        closed.set()

    closed = threading.Event()
    dead = "http://127.0.0.1:1"
    check = _prom_check(base)
    sample = providers.sampler()

    def flaky(c: dict[str, Any], timeout: float) -> tuple[Any, Any]:
        return sample(dict(c, url=dead) if closed.is_set() else c, timeout)

    threading.Thread(target=stop_prometheus, daemon=True).start()
    plan = module.build_plan({"checks": [check], "window": 5, "max_provider_errors": 3})
    result = run_watch(plan, flaky)
    assert result["verdict"] == "inconclusive" and not result["healthy"] and result["breached_check"] is None
    measurements = result["checks"][0]["measurements"]
    assert [m["value"] for m in measurements[:2]] == [0.0, 0.0]
    assert [m["error"].startswith("no answer from Prometheus") for m in measurements[-3:]] == [True] * 3
    assert "3 consecutive samples without a value (last: no answer from Prometheus" in result["reason"]
    assert result["elapsed"] < 1.5  # inconclusive fails the step: no reason to wait out the window


def test_fewer_errors_in_a_row_than_the_limit_are_tolerated() -> None:
    answers = iter([(0.0, None), (None, "boom"), (None, "boom"), (0.0, None)] * 5)
    plan = WatchPlan([{"name": "c", "provider": "command", "fail_if": "> 1", "interval": 0.05}], 0.5)
    result = run_watch(plan, lambda check, timeout: next(answers))
    assert result["verdict"] == "healthy"
    assert [m.get("error") for m in result["checks"][0]["measurements"][:4]] == [None, "boom", "boom", None]


def test_a_provider_that_raises_is_an_error_of_that_sample() -> None:
    def broken(check: dict[str, Any], timeout: float) -> tuple[Any, Any]:
        raise KeyError("result")

    plan = WatchPlan(
        [{"name": "c", "provider": "command", "fail_if": "> 1", "interval": 0.05}], 1, max_provider_errors=2
    )
    result = run_watch(plan, broken)
    assert result["verdict"] == "inconclusive"
    assert result["checks"][0]["measurements"][0]["error"] == "KeyError: 'result'"


def test_under_on_inconclusive_pass_the_other_checks_go_on_and_may_still_breach() -> None:
    series = iter([0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    checks = [
        {"name": "gone", "provider": "command", "fail_if": "> 1", "interval": 0.05},
        {"name": "latency", "provider": "command", "fail_if": "> 1", "for": 0.1, "interval": 0.05},
    ]

    def sample(check: dict[str, Any], timeout: float) -> tuple[Any, Any]:
        return (None, "refused") if check["name"] == "gone" else (next(series), None)

    result = run_watch(WatchPlan(checks, 2, on_inconclusive="pass", max_provider_errors=1), sample)
    assert result["verdict"] == "breached" and result["breached_check"] == "latency"
    assert [c["verdict"] for c in result["checks"]] == ["inconclusive", "breached"]
    assert len(result["checks"][0]["measurements"]) == 1  # an inconclusive check is sampled no more
    only_gone = run_watch(WatchPlan(checks[:1], 0.3, on_inconclusive="pass", max_provider_errors=1), sample)
    assert only_gone["verdict"] == "inconclusive" and only_gone["healthy"] is False


def test_a_stopped_watch_is_inconclusive_and_says_why() -> None:
    work = host_work.HostWork("watch_window", timeout_s=0.3, run_id="", poll_s=0.05).start()
    try:
        plan = WatchPlan(
            [{"name": "c", "provider": "command", "argv": ["echo", "0"], "fail_if": "> 1", "interval": 0.1}], 5
        )
        result = module.watch(plan, work)
    finally:
        work.finish(True, "")
    assert result["verdict"] == "inconclusive" and result["elapsed"] < 1.0
    stopped = r"watch stopped after 0\.\d+s: stopped at its timeout \(0\.3s\)"
    assert re.match(stopped, result["reason"]), result["reason"]
    assert all(not m.get("error") for m in result["checks"][0]["measurements"])


# ------------------------------------------------------------------------------------------------------ http


def test_http_error_rate_from_the_services_own_answers(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.fail_every = 5  # 20 % of the requests fail
    check = {
        "name": "errors",
        "provider": "http",
        "url": base + "/orders",
        "requests": 10,
        "fail_if": "> 0.05",
        "for": 0.2,
        "interval": 0.1,
    }
    result = _watch([check], window=2)
    assert result["verdict"] == "breached" and set(_values(result)) == {0.2}
    assert behaviour.requests == 10 * len(_values(result)) and len(_values(result)) == 3


def test_http_latency_percentiles(server: tuple[str, Behaviour]) -> None:
    base, behaviour = server
    behaviour.delay = 0.15
    check = {
        "name": "p95",
        "provider": "http",
        "url": base + "/",
        "requests": 2,
        "measure": "p95",
        "fail_if": "> 0.1",
        "for": 0,
        "interval": 0.1,
    }
    result = _watch([check], window=1)
    assert result["verdict"] == "breached" and 0.15 <= _values(result)[0] < 0.5
    assert providers.percentile([0.1 * i for i in range(1, 21)], 95) == pytest.approx(1.9)
    assert providers.percentile([3.0, 1.0, 2.0], 50) == 2.0 and providers.percentile([], 99) is None


def test_http_healthy_service_passes_the_whole_window(server: tuple[str, Behaviour]) -> None:
    base, _ = server
    checks = [
        {"name": "errors", "provider": "http", "url": base + "/", "requests": 3, "fail_if": "> 0.05", "interval": 0.1},
        {
            "name": "median",
            "provider": "http",
            "url": base + "/redirect",
            "requests": 3,
            "measure": "median",
            "fail_if": "> 1",
            "interval": 0.2,
        },
    ]
    started = time.monotonic()
    result = _watch(checks, window=0.6)
    assert result["verdict"] == "healthy" and time.monotonic() - started >= 0.6
    assert set(_values(result, 0)) == {0.0}  # a 3xx is an answer, not followed elsewhere
    assert [c["samples"] for c in result["checks"]] == [7, 4]


def test_http_without_any_answer(server: tuple[str, Behaviour]) -> None:
    dead = {"name": "x", "provider": "http", "url": "http://127.0.0.1:1/", "requests": 2, "fail_if": "> 0.05"}
    sample = providers.sampler()
    assert sample(dead, 1.0) == (1.0, None)  # every request failed: error rate 1
    value, error = sample(dict(dead, measure="p99"), 1.0)
    assert value is None and error.startswith("no request got an answer: no response:")
    base, behaviour = server
    behaviour.delay = 0.5
    value, error = sample(dict(dead, url=base + "/", measure="p99"), 0.1)
    assert value == pytest.approx(0.1, abs=0.1) and error is None  # a timeout is a latency


# ------------------------------------------------------------------------------------------ command, postgres


def test_command_prints_a_number_or_there_is_no_data() -> None:
    sample = providers.sampler()
    check = {"name": "c", "provider": "command", "fail_if": "> 1"}
    assert sample(dict(check, argv=["sh", "-c", "echo ' 0.5 '"]), 2.0) == (0.5, None)
    assert sample(dict(check, argv=["echo", "many things"]), 2.0) == (None, None)
    assert sample(dict(check, argv=["echo", "NaN"]), 2.0) == (None, None)
    value, error = sample(dict(check, argv=["sh", "-c", "echo oops >&2; exit 3"]), 2.0)
    assert value is None and error == "sh failed (exit 3): oops"
    assert sample(dict(check, argv=["sleep", "5"]), 0.2) == (None, "sleep timed out after 0.2s")
    assert sample(dict(check, argv=["/nonexistent/tool"]), 1.0)[1].startswith("cannot run /nonexistent/tool")


def test_postgres_is_up_or_down(tmp_path: Path) -> None:
    sample = providers.sampler()
    check = {"name": "db", "provider": "postgres", "fail_if": "< 1", "login_host": "127.0.0.1", "login_port": 1}
    if os.path.exists("/usr/bin/pg_isready"):
        assert sample(check, 2.0) == (0.0, None)  # nothing listens on port 1: no response
    value, error = sample(dict(check, bin_dir=str(tmp_path)), 2.0)
    assert value is None and "cannot run" in error


# ----------------------------------------------------------------------------------------- options, the module


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provider": "graphite"}, "unknown provider 'graphite'"),
        ({"url": ""}, "provider prometheus needs url"),
        ({"fail_if": "=> 1"}, "is not a comparison"),
        ({"interval": "0s"}, "interval of check errors must be longer than zero"),
        ({"for": "2 minutes"}, "for of check errors '2 minutes' is not a duration"),
        ({"provider": "http", "requests": 0}, "requests must be between 1 and 1000"),
        ({"provider": "command"}, "provider command needs argv"),
        ({"interval": "1ms"}, "would take more than 10000 samples"),
    ],
)
def test_a_bad_watch_is_refused_before_any_sample(change: dict[str, Any], message: str) -> None:
    check = dict(_prom_check("http://127.0.0.1:1"), **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        module.build_plan({"checks": [check], "window": "20s"})


def test_a_watch_longer_than_its_step_may_take_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the watch takes 70s .* but the step may only take 48s"):
        module.build_plan(
            {"checks": [_prom_check("http://x")], "window": "1m", "initial_delay": "10s", "runbook_timeout": 48.0}
        )
    with pytest.raises(ValueError, match="two checks are named 'errors'"):
        module.build_plan({"checks": [_prom_check("http://x")] * 2, "window": "1m"})


def _run_module(args: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run(
        [sys.executable, str(MODULES / "watch_window.py"), str(args_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_the_module_fails_for_a_breach_and_takes_no_sample_in_check_mode(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    base, behaviour = server
    behaviour.prom = [0.5]
    args = {"checks": [_prom_check(base, **{"for": "0s"})], "window": "1s"}
    code, result = _run_module(args, tmp_path)
    assert code == 1 and result["failed"] and result["verdict"] == "breached"
    assert result["msg"].startswith("watch breached after ") and result["checks"][0]["measurements"][0]["breach"]
    queries = len(behaviour.queries)
    code, result = _run_module(dict(args, _ansible_check_mode=True), tmp_path)
    assert code == 0 and result["verdict"] is None and result["skipped"] and len(behaviour.queries) == queries
    assert result["msg"] == "check mode, no sample taken: would watch for 1s: errors every 0.1s (fail_if > 0.05 for 0s)"
    code, result = _run_module(dict(args, window="1 minute"), tmp_path)
    assert (
        code == 1
        and result["msg"]
        == "invalid watch: window '1 minute' is not a duration (use seconds or a "
        "whole number and ms, s, m, h or d: 90s, 2m, 1h)"
    )
    behaviour.prom = ["empty"]
    code, result = _run_module(dict(args, window="0.3", on_inconclusive="pass"), tmp_path)
    assert code == 0 and result["verdict"] == "inconclusive" and result["healthy"] is False
    assert result["msg"].startswith("watch inconclusive: errors: 3 consecutive samples without a value")


def test_once_takes_one_sample_per_check_and_decides_by_it_without_for(
    server: tuple[str, Behaviour], tmp_path: Path
) -> None:
    base, behaviour = server
    behaviour.prom = [0.5]
    slow = {"name": "latency", "provider": "http", "url": base + "/", "requests": 3, "measure": "p50",
            "fail_if": "> 10", "for": "2m", "interval": "10s"}
    args = {"checks": [_prom_check(base, **{"for": "5m"}), slow], "window": "10m", "initial_delay": "1m",
            "once": True, "runbook_timeout": 5.0}
    started = time.monotonic()
    code, result = _run_module(args, tmp_path)
    assert time.monotonic() - started < 10  # neither the delay nor the window is waited out
    assert code == 0 and not result.get("failed") and result["once"] is True  # the verdict says it, not a failure
    assert result["verdict"] == "breached" and result["breached_check"] == "errors"
    errors, latency = result["checks"]
    assert [m["value"] for m in errors["measurements"]] == [0.5] and errors["measurements"][0]["breach"]
    assert errors["for"] == 300 and errors["reason"] == (
        "errors: 0.5, fail_if > 0.05 holds (one sample; the step's for of 300s is not applied)")
    assert latency["verdict"] == "healthy" and latency["samples"] == 1 and behaviour.requests == 3
    assert result["msg"].startswith("one sample per check: errors: 0.5")

    behaviour.prom = [0.01]
    code, result = _run_module(args, tmp_path)
    assert code == 0 and result["verdict"] == "healthy" and result["breached_check"] is None
    assert [c["samples"] for c in result["checks"]] == [1, 1]

    behaviour.prom = ["empty"]  # one sample without a value proves nothing: inconclusive, however many errors allowed
    code, result = _run_module(dict(args, max_provider_errors=5), tmp_path)
    assert code == 0 and result["verdict"] == "inconclusive" and result["healthy"] is False
    assert result["checks"][0]["verdict"] == "inconclusive"


# ------------------------------------------------------------------------------------------- the role itself

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: A healthy watch
      ansible.builtin.include_role: {name: watch}
      vars:
        watch_window: 0.4
        watch_checks: [{name: errors, provider: http, url: "BASE/", requests: 2, fail_if: "> 0.05", interval: 0.1}]
    - name: Keep its outputs
      ansible.builtin.set_fact: {healthy_outputs: "{{ runbook_outputs }}"}
    - name: A breached watch
      block:
        - name: Watch the broken service
          ansible.builtin.include_role: {name: watch}
          vars:
            watch_window: 5s
            watch_checks: [{name: errors, provider: http, url: "BASE/", requests: 2, fail_if: "> 0.05",
                            interval: 0.1, for: 0.1}]
      rescue:
        - name: Keep the failure
          ansible.builtin.set_fact: {failure: "{{ ansible_failed_result.msg }}"}
    - name: Write what the role published
      ansible.builtin.copy:
        dest: OUT
        content: "{{ {'healthy': healthy_outputs, 'breached': runbook_outputs, 'failure': failure} | to_json }}"
        mode: "0600"
"""


def test_the_role_publishes_its_outputs_and_fails_on_a_breach(server: tuple[str, Behaviour], tmp_path: Path) -> None:
    base, behaviour = server
    out = tmp_path / "out.json"
    (tmp_path / "play.yml").write_text(PLAYBOOK.replace("BASE", base).replace("OUT", str(out)))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    playbook = Path(sys.executable).parent / "ansible-playbook"

    behaviour.fail_every = 0
    proc = subprocess.Popen(
        [
            str(playbook),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "play.yml"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        output += line
        if "Watch the broken service" in line:  # the second watch sees every second request fail
            behaviour.fail_every = 2
    assert proc.wait(timeout=120) == 0, output
    published = json.loads(out.read_text())
    healthy, breached = published["healthy"], published["breached"]
    assert healthy["verdict"] == "healthy" and healthy["healthy"] is True and healthy["checks"][0]["ok"] is True
    assert healthy["results"][0]["samples"] == 5 and healthy["check_mode"] is False
    assert breached["verdict"] == "breached" and breached["breached_check"] == "errors"
    assert breached["results"][0]["measurements"][-1] == {
        "t": pytest.approx(breached["time_to_detect"]),
        "value": 0.5,
        "breach": True,
    }
    assert published["failure"].startswith("watch on localhost breached ")


# ------------------------------------------------------------------------------------------- runbook validate

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata:
  name: watch-release
spec:
  params:
    watch_for: {type: string, default: 15s}
  steps:
    - id: watch
      hosts: app
      uses: watch
      with:
        window: WINDOW
        checks:
          - name: errors
            provider: PROVIDER
            url: http://127.0.0.1:9090
            query: up
            fail_if: "FAIL_IF"
            for: "{{ params.watch_for }}"
"""


def _runbook(window: str = "90s", provider: str = "prometheus", fail_if: str = "> 0.05") -> str:
    return RUNBOOK.replace("WINDOW", window).replace("PROVIDER", provider).replace("FAIL_IF", fail_if)


def test_runbook_validate_accepts_a_watch_step() -> None:
    runbook = load_runbook_text(_runbook(), "watch.yml", [ROOT / "roles"])
    assert runbook.steps[0].uses == "watch"
    problems = check_resolved_options(runbook, {"watch_for": "2m"}, [ROOT / "roles"])
    assert problems == []


def test_runbook_validate_refuses_a_bad_watch_where_it_is_written() -> None:
    with pytest.raises(InvalidInput) as caught:
        load_runbook_text(_runbook("90x", "graphite", "=> 0.05"), "watch.yml", [ROOT / "roles"])
    assert [str(d) for d in caught.value.diagnostics] == [
        "watch.yml:13:17: error: option 'window' of role watch: '90x' is not a duration (use a whole number and ms, "
        "s, m, h or d: 90s, 5m, 1h), or a number of seconds (at spec.steps[0].with.window)",
        "watch.yml:16:23: error: option 'checks[0].provider' of role watch must be one of: prometheus, http, "
        "postgres, command (got a string 'graphite') (at spec.steps[0].with.checks[0].provider)",
        "watch.yml:19:22: error: option 'checks[0].fail_if' of role watch: '=> 0.05' is not a comparison: write one "
        'of >, <, >=, <=, ==, != and a number, such as "> 0.05" or "< 1" (at spec.steps[0].with.checks[0].fail_if)',
    ]


def test_a_param_that_is_no_duration_is_refused_once_params_are_known() -> None:
    runbook = load_runbook_text(_runbook(), "watch.yml", [ROOT / "roles"])
    problems = check_resolved_options(runbook, {"watch_for": "soon"}, [ROOT / "roles"])
    assert len(problems) == 1 and "option 'checks[0].for' of role watch: 'soon' is not a duration" in problems[0]


def test_a_role_with_an_unreadable_format_line_is_reported() -> None:
    with pytest.raises(ValueError, match="unknown format 'percent'"):
        value_formats.parse_formats(["checks[].fail_if: percent"])
    with pytest.raises(ValueError, match="is not 'option path: format'"):
        value_formats.parse_formats(["fail_if is a comparison"])
    assert value_formats.parse_formats(["checks[].for: duration"]) == {"checks[].for": "duration"}
    assert value_formats.pattern(("checks", 3, "for")) == "checks[].for"
