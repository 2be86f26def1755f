"""The `runbook` command line's arguments: one function per command, each taking the handler it is parsed for."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TypeAlias

from runner import __version__

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runbook", description="Declarative runbook executor.")
    parser.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        add(sub).set_defaults(handler=handlers[name])
    return parser


def _common(p: argparse.ArgumentParser, *, params: bool = False, state: bool = False) -> None:
    _repeatable(p, "--roles-path", metavar="DIR",
                help="extra directory of roles (before the product's own); repeatable")
    if params:
        _repeatable(p, "-p", "--param", metavar="KEY=VALUE",
                    help="param value (taken literally, never as a template); repeatable")
        p.add_argument("--params-file", metavar="FILE", help="YAML or JSON mapping of param values")
    if state:
        _state_dir(p)


def _repeatable(p: argparse.ArgumentParser, *flags: str, metavar: str, help: str) -> None:
    """An option that may be given several times: its values in a list, empty when it is not given."""
    p.add_argument(*flags, action="append", default=[], metavar=metavar, help=help)


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="history and runs (default $RUNBOOK_STATE_DIR or ~/.local/state/runbook)",
    )


def _validate(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="check runbooks; exit 0 valid, 2 invalid")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-q", "--quiet", action="store_true")
    _common(p)
    return p


def _render(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="write the Ansible project for a runbook")
    p.add_argument("runbook")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _common(p, params=True)
    return p


def _on_hosts(
    sub: Subparsers, command: str, about: str, check: str, limit_metavar: str | None = None
) -> argparse.ArgumentParser:
    """A command that takes a runbook and the inventory of its hosts: plan and run."""
    p = sub.add_parser(command, help=about)
    p.add_argument("runbook")
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--limit", metavar=limit_metavar)
    p.add_argument("--check", action="store_true", help=check)
    return p


def _plan(sub: Subparsers) -> argparse.ArgumentParser:
    p = _on_hosts(sub, "plan", "steps x resolved hosts, budget vs severity target",
                  "dry run in Ansible check mode: what each step would change")
    _common(p, params=True)
    return p


def _run(sub: Subparsers) -> argparse.ArgumentParser:
    p = _on_hosts(sub, "run", "run a runbook", "Ansible check mode: change nothing", limit_metavar="PATTERN")
    p.add_argument("--no-rollback", action="store_true", help="do not run on_failure when a step fails")
    p.add_argument("--report-dir", metavar="DIR", help="also write the report files here")
    p.add_argument("--strict-budget", action="store_true", help="fail when the budget is exceeded")
    p.add_argument("--yes", action="store_true", help="approve every confirm: gate")
    p.add_argument("--json", action="store_true", help="JSON event stream on stdout")
    p.add_argument("--trigger", default="", metavar="TEXT", help="what started the run, recorded in history")
    p.add_argument(
        "--detected-at", metavar="TIME",
        help="when the incident was detected (2026-12-02T09:41:00Z, or 12m for 12 minutes ago): the time to "
        "restore counts from there (rollback runbooks: from the run's start by default)",
    )
    _timeout(p)
    _common(p, params=True, state=True)
    return p


def _watch(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "watch", help="sample a watch step's checks once, now: each value against its threshold; exit 0 none "
        "breaches, 1 one does (or gives no value), 2 invalid input",
    )
    p.add_argument("runbook")
    p.add_argument("step", metavar="STEP", help="id of a watch step of the runbook")
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--limit", metavar="PATTERN")
    p.add_argument("--json", action="store_true")
    _common(p, params=True)
    return p


def _schedule(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("schedule", help="runbooks run by cron: add, list, remove, run")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="install /etc/cron.d/runbook-NAME")
    add.add_argument("name", metavar="NAME")
    add.add_argument("runbook", metavar="RUNBOOK", help="a runbook file, or drill:NAME[,NAME...] for drills")
    add.add_argument("-i", "--inventory", metavar="INV", help="the runbook's inventory (required for a runbook)")
    add.add_argument("--project", metavar="DIR", help="for drills: the checkout holding molecule/ (default: this one)")
    add.add_argument("--cron", required=True, metavar="EXPR", help='five-field cron expression, e.g. "0 3 * * *"')
    _common(add, params=True)
    listing = actions.add_parser("list", help="schedules, next fire time, last run")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", help="remove a schedule")
    remove.add_argument("name", metavar="NAME")
    now = actions.add_parser("run", help="run a schedule now, exactly as cron would")
    now.add_argument("name", metavar="NAME")
    for action in (add, listing, remove, now):
        _state_dir(action)
    return p


def _drill(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("drill", help="run drills (molecule/NAME/ in the lab) and record them in history")
    p.add_argument("names", nargs="+", metavar="NAME", help="drill scenario, named after its runbook")
    p.add_argument("--project", metavar="DIR", help="the checkout holding molecule/ (default: this one)")
    p.add_argument("--results", metavar="DIR", help="where the drills leave their results (default: a new temp dir)")
    p.add_argument("--lab-lock-held", action="store_true",
                   help="the caller holds the lab's in-use lock already (do not wait for it)")
    _state_dir(p)
    return p


def _timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        metavar="DURATION",
        help="overall deadline (e.g. 30m): then the run is cancelled, the work on the hosts stopped, and it is "
        "reported interrupted (default 3x the runbook's budget)",
    )


def _resume(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("resume", help="continue a failed or interrupted run from its journal")
    p.add_argument("run", help="run id (or unique prefix) or run directory")
    p.add_argument("--from", dest="from_step", metavar="STEP", help="start at this main step")
    p.add_argument("--failed-hosts-only", action="store_true", help="only the hosts that failed that step")
    p.add_argument("-i", "--inventory", help="default: the inventory of the original run")
    p.add_argument("--no-rollback", action="store_true")
    p.add_argument("--report-dir", metavar="DIR")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--json", action="store_true")
    _timeout(p)
    _common(p, params=True, state=True)
    return p


def _report(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="print a run's report")
    p.add_argument("run", help="run id (or unique prefix) or run directory")
    p.add_argument("--format", choices=["md", "html", "json", "junit"], default="md")
    _common(p, state=True)
    return p


def _history(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("history", help="past runs from the history database")
    p.add_argument("--runbook", metavar="NAME")
    p.add_argument("--since", metavar="DURATION", help="e.g. 7d, 12h")
    p.add_argument("--json", action="store_true")
    _common(p, state=True)
    return p


def _metrics(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("metrics", help="recovery metrics: success rate, rollback frequency, MTTR, SEV targets")
    p.add_argument("--runbook", metavar="NAME")
    p.add_argument("--since", metavar="DURATION")
    p.add_argument("--format", choices=["text", "prometheus", "json"], default="text")
    _common(p, state=True)
    return p


def _backups(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("backups", help="backups: status - the newest verified backup per host and database, its age")
    p.add_argument("action", choices=["status"])
    p.add_argument("-i", "--inventory", required=True, metavar="INV")
    p.add_argument("--hosts", default="db", metavar="PATTERN", help="hosts that keep backups (default: db)")
    _repeatable(
        p,
        "--dir",
        metavar="DIR",
        help="backup directory, or a parent of backup directories, on the hosts (repeatable; default "
        "/var/backups/runbook/postgres and /var/backups/runbook/mongodb)",
    )
    p.add_argument(
        "--max-age",
        metavar="DURATION",
        help="exit 1 when a newest verified backup is older (default: twice the interval of the database's backup "
        "schedule, else 2d)",
    )
    _repeatable(p, "--notify", metavar="KIND:TARGET",
                help="when stale, alert webhook:URL or email:ADDRESS (repeatable)")
    p.add_argument("--decode", action="store_true", help="also decode every byte of each backup checked (slow)")
    p.add_argument("--limit", metavar="PATTERN")
    p.add_argument("--format", choices=["text", "json", "prometheus"], default="text")
    _state_dir(p)
    return p


def _lock(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("lock", help="host leases: status - who holds which; release --force - the way out")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("status", help="every lease on the hosts: holder run, owner, pid, expiry")
    show.add_argument("host", nargs="?", metavar="HOST", help="host or pattern (default: every host)")
    show.add_argument("--name", metavar="NAME", help="only this lease (default: every lease)")
    show.add_argument("--limit", metavar="PATTERN")
    show.add_argument("--json", action="store_true")
    free = actions.add_parser("release", help="remove a lease whatever run holds it (recorded in history)")
    free.add_argument("host", metavar="HOST", help="host or pattern")
    free.add_argument("--name", default="host", metavar="NAME", help="the lease (default: host)")
    free.add_argument("--force", action="store_true", help="required: the holder may still be running")
    for action in (show, free):
        action.add_argument("-i", "--inventory", required=True, metavar="INV")
        _state_dir(action)
    return p


def _lab(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser("lab", help="the local drill lab")
    p.add_argument("action", choices=["up", "down", "status", "reset", "ssh"])
    p.add_argument("host", nargs="?")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


_COMMANDS: dict[str, Callable[[Subparsers], argparse.ArgumentParser]] = {
    "validate": _validate,
    "render": _render,
    "plan": _plan,
    "run": _run,
    "resume": _resume,
    "watch": _watch,
    "report": _report,
    "history": _history,
    "metrics": _metrics,
    "backups": _backups,
    "lock": _lock,
    "schedule": _schedule,
    "drill": _drill,
    "lab": _lab,
}
