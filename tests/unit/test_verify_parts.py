"""verify's scenario, latency, log and PostgreSQL checks, through the module code against real loopback servers
(127.0.0.1, ephemeral ports) and real files:

- http_check's scenario: values extracted by JSON path, substituted by the module into later URLs, headers, JSON
  bodies and expectations; it stops at the first failing call and says which one and why;
- http_latency: median and p95 over real calls, bounds, failing calls;
- log_count: lines of a file by their ISO 8601 time (continuations, zones), the last N lines without times;
- pg_assert: how a value is compared with equals, min and max.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import Server
from opsmodule import load

http_check = load("http_check")
latency = load("http_latency")
log_count = load("log_count")
pg_assert = load("pg_assert")

from ansible_collections.runbook.ops.plugins.module_utils import http_request  # noqa: E402


@pytest.fixture
def shop() -> Iterator[Server]:
    """Orders, a wallet debited by an order's amount, and settlements, the way seed 000's smoke test uses them."""
    orders: dict[int, dict[str, Any]] = {}

    def route(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if (method, path) == ("POST", "/orders"):
            order = {"id": 41 + len(orders) + 1, "total": 12.5 * body["quantity"], "sku": body["sku"]}
            orders[order["id"]] = order
            return 201, order
        if (method, path) == ("POST", "/wallet/debit"):
            if body["order"] not in orders or body["amount"] != orders[body["order"]]["total"]:
                return 422, {"error": "amount does not match the order"}
            return 200, {"balance": 100 - body["amount"], "trace": headers.get("X-Trace")}
        if method == "GET" and path.startswith("/settlements/"):
            order_id = int(path.rsplit("/", 1)[1])
            return (200, {"order_id": order_id, "settled": True}) if order_id in orders else (404, {})
        if path == "/broken":
            return 500, {"error": "database unavailable"}
        return 404, {}

    server = Server(route)
    yield server
    server.close()


def scenario(base: str) -> list[dict[str, Any]]:
    return [
        {"name": "create an order", "url": base + "/orders", "method": "POST", "body": {"sku": "A1", "quantity": 2},
         "status": [201], "extract": {"order_id": "$.id", "amount": "$.total"}},
        {"name": "debit the wallet", "url": base + "/wallet/debit", "method": "POST",
         "headers": {"X-Trace": "order-${order_id}"}, "body": {"order": "${order_id}", "amount": "${amount}"},
         "json": {"balance": 75}},
        {"name": "read the settlement", "url": base + "/settlements/${order_id}", "json": {"order_id": "${order_id}"}},
    ]  # fmt: skip


def run(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = http_check.run_checks(checks, 1, 0, 2.0, sleep=lambda s: None)
    return results


# ------------------------------------------------------------------------------------------------- scenario


def test_later_calls_use_values_extracted_from_earlier_answers(shop: Server) -> None:
    results = run(scenario(shop.base))
    assert [(r["name"], r["ok"]) for r in results] == [
        ("create an order", True), ("debit the wallet", True), ("read the settlement", True),
    ]  # fmt: skip
    assert results[0]["extracted"] == {"order_id": 42, "amount": 25.0}
    assert results[2]["url"] == shop.base + "/settlements/42"
    debit = shop.requests[1]
    assert debit[2] == {"order": 42, "amount": 25.0}  # a whole ${name} keeps the JSON type
    assert debit[3]["X-Trace"] == "order-42"
    assert "extracted" not in results[1]


def test_the_scenario_stops_at_the_first_failing_call_and_says_why(shop: Server) -> None:
    calls = scenario(shop.base)
    calls[1]["body"] = {"order": "${order_id}", "amount": 1}
    results = run(calls)
    assert [r["ok"] for r in results] == [True, False, None]
    assert results[1]["detail"] == "status 422, expected 200; json balance missing (after 1 attempt)"
    assert results[2]["detail"] == "not run: an earlier check failed"
    assert [path for _, path, _, _ in shop.requests] == ["/orders", "/wallet/debit"]  # the settlement never read
    assert http_check.summary(results)[1]["name"] == "debit the wallet"


def test_a_value_that_is_not_in_the_answer_fails_the_call(shop: Server) -> None:
    calls = scenario(shop.base)
    calls[0]["extract"] = {"order_id": "$.order.id"}
    results = run(calls)
    assert results[0]["ok"] is False
    assert results[0]["detail"] == "cannot extract order_id: $.order.id not in the response (after 1 attempt)"
    assert len(shop.requests) == 1


def test_a_reference_no_earlier_call_extracted_is_not_sent(shop: Server) -> None:
    calls = [
        {"name": "orphan", "url": shop.base + "/settlements/${order_id}"},
        scenario(shop.base)[0],
    ]
    results = run(calls)
    assert results[0]["ok"] is False and results[0]["attempts"] == 0
    assert results[0]["detail"] == "uses ${order_id}, which no earlier call extracted"
    assert results[1]["detail"] == "not run: an earlier check failed"
    assert shop.requests == []


def test_extraction_is_retried_with_the_attempts(shop: Server) -> None:
    answers = iter([(200, b'{"state": "pending"}', 1, None), (200, b'{"state": "done", "id": 7}', 1, None)])
    result = http_check.run_check({"url": "u", "extract": {"id": "$.id"}}, 3, 0, 1.0,
                                  request=lambda c, t: next(answers), sleep=lambda s: None)  # fmt: skip
    assert (result["ok"], result["attempts"], result["extracted"]) == (True, 2, {"id": 7})


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("$", {"items": [{"id": 1, "a b": "x"}, {"id": 2}], "n": None}),
        ("$.items[0].id", 1),
        ("$.items[-1].id", 2),
        ("$.items[0]['a b']", "x"),
        ("$.n", None),
        ("$.items[5].id", http_request.MISSING),
        ("$.missing", http_request.MISSING),
        ("$.n.deeper", http_request.MISSING),
    ],
)
def test_json_paths(path: str, found: Any) -> None:
    data = {"items": [{"id": 1, "a b": "x"}, {"id": 2}], "n": None}
    assert (
        http_request.json_path(data, path) == found
        if found is not http_request.MISSING
        else (http_request.json_path(data, path) is http_request.MISSING)
    )


@pytest.mark.parametrize("bad", ["items[0]", "$items", "$.items[x]", "$..id", "$.a b"])
def test_json_paths_that_are_not(bad: str) -> None:
    with pytest.raises(ValueError):
        http_request.path_steps(bad)


def test_substitution_of_references() -> None:
    values = {"id": 42, "name": "A1", "ok": True}
    assert http_request.substitute("${id}", values) == 42
    assert http_request.substitute("/orders/${id}?sku=${name}", values) == "/orders/42?sku=A1"
    assert http_request.substitute({"a": ["${ok}", "x${ok}"]}, values) == {"a": [True, "xtrue"]}
    assert http_request.substitute("price $$5 and {{ id }}", values) == "price $5 and {{ id }}"
    assert http_request.substitute(7, values) == 7
    with pytest.raises(http_request.UnknownReference):
        http_request.substitute("${other}", values)


def test_checks_without_extract_are_sent_as_written() -> None:
    sent: list[str] = []

    def request(check: dict[str, Any], timeout: float) -> tuple[int, bytes, int, None]:
        sent.append(check["url"])
        return 200, b"{}", 1, None

    results = http_check.run_checks([{"url": "http://x/${literal}/$$"}], 1, 0, 1.0, request=request)
    assert results[0]["ok"] is True and sent == ["http://x/${literal}/$$"]


def test_existing_checks_without_references_are_unchanged() -> None:
    check = {"url": "http://x/$.a/health", "json": {"$.literal": "v"}}
    assert http_check.resolve(check, {}) == dict(check, name="GET http://x/$.a/health")
    assert http_request.lookup({"$.literal": "v"}, "$.literal") == "v"  # a literal key still wins
    assert http_request.lookup({"a": {"b": 1}}, "$.a.b") == 1


def test_check_mode_plan_names_the_extraction() -> None:
    text = http_check.describe_plan({"url": "http://x/o", "method": "post", "extract": {"id": "$.id"}}, 1, 1.0)
    assert text == "would check POST http://x/o expecting status 200, extracting id from $.id (1 attempt, 1s apart)"


# -------------------------------------------------------------------------------------------------- latency


@pytest.fixture
def timed() -> Iterator[Server]:
    def route(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/slow":
            time.sleep(0.06)
        return (500, {}) if path == "/broken" else (200, {"status": "ok"})

    server = Server(route)
    yield server
    server.close()


def test_latency_passes_under_the_bound_and_fails_over_it(timed: Server) -> None:
    fast = latency.measure({"url": timed.base + "/fast", "samples": 10, "p95_ms": 1000, "median_ms": 1000}, 2.0)
    assert fast["ok"] is True and len(fast["samples"]) == 10 and fast["failed"] == 0
    assert fast["detail"].startswith("median ") and fast["detail"].endswith("over 10 calls")
    slow = latency.measure({"url": timed.base + "/slow", "samples": 5, "p95_ms": 30}, 2.0)
    assert slow["ok"] is False and slow["p95_ms"] >= 60
    assert slow["detail"].startswith(f"p95 {slow['p95_ms']} ms is over 30 ms; median ")
    by_median = latency.measure({"url": timed.base + "/slow", "samples": 3, "median_ms": 30}, 2.0)
    assert by_median["ok"] is False and "median" in by_median["detail"].split(";")[0]
    assert len([r for r in timed.requests if r[1] == "/slow"]) == 8


def test_a_failing_call_fails_the_latency_check(timed: Server) -> None:
    result = latency.measure({"url": timed.base + "/broken", "samples": 4, "p95_ms": 1000}, 2.0)
    assert result["ok"] is False
    assert result["detail"] == "4 of 4 call(s) failed (status 500, expected 200)"


def test_percentiles_by_nearest_rank() -> None:
    values = list(range(1, 101))
    assert latency.percentile(values, 0.95) == 95
    assert latency.percentile([5], 0.95) == 5
    assert latency.percentile([10, 1, 7, 3], 0.95) == 10
    ok, _, figures = latency.judge({"p95_ms": 95}, values, [])
    assert ok is True and figures["median_ms"] == 50 and figures["max_ms"] == 100


def test_a_stopped_work_ends_the_samples() -> None:
    def sleep(seconds: float) -> None:
        if len(calls) == 2:
            raise latency.WorkStopped("stopped at its timeout (1s)")

    calls: list[int] = []

    def request(check: dict[str, Any], timeout: float) -> tuple[int, bytes, int, None]:
        calls.append(1)
        return 200, b"", 3, None

    result = latency.measure({"url": "u", "samples": 5}, 1.0, request=request, sleep=sleep)
    assert result["ok"] is False and result["detail"] == "stopped at its timeout (1s) after 2 of 5 calls"


# ----------------------------------------------------------------------------------------------------- logs


def stamp(minutes_ago: float, now: float) -> str:
    moment = datetime.datetime.fromtimestamp(now - minutes_ago * 60, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_file_lines_count_by_their_time(tmp_path: Path) -> None:
    now = time.time()
    log = tmp_path / "app.log"
    log.write_text("\n".join([
        "no time yet: ERROR before the first timed line",
        f"{stamp(30, now)} ERROR old failure",
        "    at old.frame (ERROR in a trace of the old failure)",
        f"{stamp(5, now)} INFO started",
        f"{stamp(4, now)} ERROR payment failed",
        "    Traceback: FATAL inside the recent one",
        f"{stamp(1, now)} panic: nil map",
        f"{stamp(0.5, now)} WARN error in lower case",
    ]) + "\n")  # fmt: skip
    result = log_count.count_check({"file": str(log), "minutes": 10, "max": 3}, "", now=now)
    assert (result["ok"], result["count"], result["lines"]) == (True, 3, 5)
    assert result["detail"] == f"3 lines match 'ERROR|FATAL|panic' in lines timed in the last 10 minutes of file {log}"
    over = log_count.count_check({"file": str(log), "minutes": 10, "max": 2, "name": "app"}, "", now=now)
    assert over["ok"] is False and over["detail"].endswith(", more than 2") and over["name"] == "app"
    loose = log_count.count_check({"file": str(log), "minutes": 10, "pattern": "error", "ignore_case": True}, "",
                                  now=now)  # fmt: skip
    assert loose["count"] == 2
    everything = log_count.count_check({"file": str(log), "minutes": 60, "max": 10}, "", now=now)
    assert everything["count"] == 5  # the lines before the first timed one belong to none


def test_a_file_without_times_is_judged_by_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "plain.log"
    log.write_text("".join(f"line {i} {'ERROR' if i % 2 else 'ok'}\n" for i in range(100)))
    result = log_count.count_check({"file": str(log), "minutes": 10, "lines": 10, "max": 10}, "")
    assert (result["count"], result["lines"], result["window"]) == (5, 10, "the last 10 lines")
    assert result["samples"] == ["line 91 ERROR", "line 93 ERROR", "line 95 ERROR", "line 97 ERROR", "line 99 ERROR"]
    by_lines = log_count.count_check({"file": str(log), "minutes": 0, "lines": 20, "max": 9}, "")
    assert (by_lines["count"], by_lines["ok"]) == (10, False)


def test_a_missing_file_fails_the_check(tmp_path: Path) -> None:
    result = log_count.count_check({"file": str(tmp_path / "nope.log")}, "")
    assert result["ok"] is False and result["detail"].startswith(f"cannot read the logs of file {tmp_path}/nope.log")


@pytest.mark.parametrize(
    ("line", "epoch"),
    [
        ("2026-12-02T17:05:09Z ERROR x", 1796231109.0),
        ("2026-12-02 18:05:09,250+01:00 [main] ERROR", 1796231109.25),
        ("[2026-12-02T12:05:09.5-0500] boom", 1796231109.5),
        ("no time here", None),
        (" " * 70 + "2026-12-02T17:05:09Z late in the line", None),
    ],
)
def test_line_times(line: str, epoch: float | None) -> None:
    assert log_count.line_time(line) == epoch


def test_a_check_names_one_source() -> None:
    for bad in ({}, {"container": "backend", "file": "/var/log/x"}):
        with pytest.raises(ValueError, match="one of container and file"):
            log_count.validate([bad])


# ------------------------------------------------------------------------------------------------ pg_assert


@pytest.mark.parametrize(
    ("assertion", "value", "problems"),
    [
        ({"min": 1}, 1000, []),
        ({"min": 1}, 0, ["expected at least 1"]),
        ({"max": 5}, 12.5, ["expected at most 5"]),
        ({"min": 0, "max": 5}, 4.99, []),
        ({"equals": True}, True, []),
        ({"equals": "true"}, True, []),
        ({"equals": 100}, 99, ["expected 100"]),
        ({"equals": "100"}, 100, []),
        ({"max": 5}, "recent", ["not a number"]),
        ({"min": 1}, True, ["not a number"]),
    ],
)
def test_a_value_is_compared_with_equals_min_and_max(
    assertion: dict[str, Any], value: Any, problems: list[str]
) -> None:
    assert pg_assert.compare(assertion, value) == problems


def test_an_assertion_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="gives none of equals, min, max"):
        pg_assert.validate({"assertions": [{"sql": "SELECT 1"}]})
    assert pg_assert.assertion_name({"sql": "SELECT   count(*)\n FROM orders"}) == "SELECT count(*) FROM orders"
