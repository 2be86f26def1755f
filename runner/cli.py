"""`runbook` command line: parse, call runner.api, print. Errors are handled in one place (main)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runner import __version__, api, crash_log, paths
from runner.console import choose as progress_for
from runner.console import one_line
from runner.engine.runflow import RunOptions, is_tty
from runner.errors import ExitStatus, InvalidInput, RunbookError
from runner.language.durations import format_seconds, parse_duration
from runner.language.model import Runbook
from runner.language.params import ResolvedParams

Handler = Callable[[argparse.Namespace], int]


def _state_dir(args: argparse.Namespace) -> Path:
    return paths.state_dir(getattr(args, "state_dir", None))


def cmd_validate(args: argparse.Namespace) -> int:
    roles = api.roles_search_path(args.roles_path)
    worst = 0
    for path in args.paths:
        result = api.validate(path, roles)
        if result.ok:
            if not args.quiet:
                print(f"{path}: ok")
        else:
            worst = ExitStatus.INVALID
            for diagnostic in result.diagnostics:
                print(diagnostic, file=sys.stderr)
    return worst


def _load_with_params(args: argparse.Namespace) -> tuple[Runbook, ResolvedParams, list[Path]]:
    roles = api.roles_search_path(args.roles_path)
    runbook = api.load(args.runbook, roles)
    params = api.resolve_params(runbook, args.param, args.params_file)
    return runbook, params, roles


def cmd_render(args: argparse.Namespace) -> int:
    runbook, params, roles = _load_with_params(args)
    out = Path(args.output)
    project = api.render(runbook, out, roles, params)
    print(f"rendered {len(project.files)} files into {out} (see {out / 'README.md'})")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    runbook, params, roles = _load_with_params(args)
    plan = api.plan(runbook, Path(args.inventory), args.limit, roles, params)
    print(f"{runbook.name}: {runbook.title}")
    print(
        f"severity {runbook.severity}; budget {format_seconds(plan.budget_s)} ({runbook.budget_from}); "
        f"SEV target {format_seconds(plan.severity_target_s)}"
        + ("" if plan.budget_s <= plan.severity_target_s else "  WARNING: budget exceeds the SEV target")
    )
    for row in plan.rows:
        hosts = ", ".join(row.hosts) or "(no host matches)"
        extra = (f"  when: {row.when}" if row.when else "") + (f"  confirm: {row.confirm}" if row.confirm else "")
        print(f"  {row.phase:<10} {row.step_id:<18} {row.uses:<26} {hosts}{extra}")
        if row.changes:
            print(f"  {'':<10} {'':<18} ↳ {row.changes}")
    params_shown = ", ".join(f"{k}={v}" for k, v in params.masked().items())
    print(f"params: {params_shown or '(none)'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    runbook, params, roles = _load_with_params(args)
    progress = progress_for(args.json)

    options = RunOptions(
        inventory=Path(args.inventory),
        roles_paths=roles,
        state_dir=_state_dir(args),
        report_dir=Path(args.report_dir) if args.report_dir else None,
        limit=args.limit,
        check=args.check,
        no_rollback=args.no_rollback,
        strict_budget=args.strict_budget,
        assume_yes=args.yes,
        approver=_ask if is_tty() else None,
        progress=progress,
    )
    result = api.run(runbook, params, options)
    if not args.json:
        _print_summary(result.report)
        print(f"report: {result.files.markdown}")
        print(f"        {result.files.json}")
        print(f"        {result.files.directory / 'report.html'}")
    return result.exit_status


def _print_summary(report: dict[str, object]) -> None:
    print(
        f"status: {report['status']}"
        + (f" — {one_line(str(report['status_detail']), 400)}" if report.get("status_detail") else "")
    )
    hosts = report.get("hosts")
    if isinstance(hosts, dict):
        for host, versions in hosts.items():
            if isinstance(versions, dict) and (versions.get("version_before") or versions.get("version_after")):
                print(f"  {host}: {versions.get('version_before')} -> {versions.get('version_after')}")
    duration = float(str(report.get("duration_s", 0)))
    budget = float(str(report.get("budget_s", 0)))
    print(
        f"duration: {format_seconds(duration)} (budget {format_seconds(budget)}, "
        f"{'met' if report.get('budget_met') else 'MISSED'})"
    )
    rollback = report.get("on_failure")
    if isinstance(rollback, dict) and rollback.get("ran"):
        print(f"rollback: {rollback.get('status')} in {format_seconds(float(rollback.get('duration_s', 0)))}")


def cmd_resume(args: argparse.Namespace) -> int:
    roles = api.roles_search_path(args.roles_path)
    options = RunOptions(
        inventory=Path(args.inventory) if args.inventory else Path(""),
        roles_paths=roles,
        state_dir=_state_dir(args),
        report_dir=Path(args.report_dir) if args.report_dir else None,
        no_rollback=args.no_rollback,
        assume_yes=args.yes,
        approver=_ask if is_tty() else None,
        progress=progress_for(args.json),
    )
    result = api.resume(args.run, options, args.from_step, args.failed_hosts_only, args.param, args.params_file)
    if not args.json:
        _print_summary(result.report)
        print(f"report: {result.files.markdown}")
    return result.exit_status


def _ask(step: object, question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_report(args: argparse.Namespace) -> int:
    sys.stdout.write(api.report(args.run, _state_dir(args), args.format))
    return 0


def _since(args: argparse.Namespace) -> float | None:
    if not args.since:
        return None
    try:
        return parse_duration(args.since)
    except ValueError as exc:
        raise InvalidInput(f"--since {exc}") from None


def cmd_history(args: argparse.Namespace) -> int:
    from runner.records import history

    rows = api.history(_state_dir(args), args.runbook, _since(args))
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2, default=str))
    else:
        print(history.format_runs(rows))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from runner.records import metrics

    report = api.metrics(_state_dir(args), args.runbook, _since(args))
    if args.format == "prometheus":
        sys.stdout.write(metrics.format_prometheus(report))
    elif args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        sys.stdout.write(metrics.format_text(report))
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    from runner.engine import backup_status

    max_age = None
    if args.max_age:
        try:
            max_age = parse_duration(args.max_age)
        except ValueError as exc:
            raise InvalidInput(f"--max-age {exc}") from None
    report = api.backups_status(
        Path(args.inventory), args.hosts, args.dir or None, max_age_s=max_age, decode=args.decode, limit=args.limit
    )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "prometheus":
        sys.stdout.write(backup_status.format_prometheus(report))
    else:
        sys.stdout.write(backup_status.format_text(report))
    return 0 if report.ok else 1


def cmd_lab(args: argparse.Namespace) -> int:
    from runner import lab

    if args.action == "up":
        status = lab.up()
        _print_lab(status)
    elif args.action == "down":
        lab.down()
        print("lab is down")
    elif args.action == "status":
        status = lab.status()
        _print_lab(status)
        return 0 if all(h.ssh_ok for h in status.hosts) and status.hosts else 3
    elif args.action == "reset":
        _print_lab(lab.reset())
    elif args.action == "ssh":
        if not args.host:
            raise InvalidInput("runbook lab ssh HOST [-- CMD...]")
        command = [c for c in args.command if c != "--"]
        return lab.ssh(args.host, command)
    return 0


def _print_lab(status: object) -> None:
    hosts = getattr(status, "hosts", [])
    for host in hosts:
        print(
            f"  {host.name:<8} {host.address:<13} container {host.container:<8} ssh {'ok' if host.ssh_ok else 'DOWN'}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runbook", description="Declarative runbook executor.")
    parser.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, params: bool = False, state: bool = False) -> None:
        p.add_argument(
            "--roles-path",
            action="append",
            default=[],
            metavar="DIR",
            help="extra directory of roles (before the product's own); repeatable",
        )
        if params:
            p.add_argument(
                "-p",
                "--param",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="param value (taken literally, never as a template); repeatable",
            )
            p.add_argument("--params-file", metavar="FILE", help="YAML or JSON mapping of param values")
        if state:
            p.add_argument(
                "--state-dir",
                metavar="DIR",
                help="history and runs (default $RUNBOOK_STATE_DIR or ~/.local/state/runbook)",
            )

    p = sub.add_parser("validate", help="check runbooks; exit 0 valid, 2 invalid")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-q", "--quiet", action="store_true")
    common(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("render", help="write the Ansible project for a runbook")
    p.add_argument("runbook")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    common(p, params=True)
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser("plan", help="steps x resolved hosts, budget vs severity target")
    p.add_argument("runbook")
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--limit")
    p.add_argument("--check", action="store_true", help="accepted for symmetry with run")
    common(p, params=True)
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("run", help="run a runbook")
    p.add_argument("runbook")
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--limit", metavar="PATTERN")
    p.add_argument("--check", action="store_true", help="Ansible check mode: change nothing")
    p.add_argument("--no-rollback", action="store_true", help="do not run on_failure when a step fails")
    p.add_argument("--report-dir", metavar="DIR", help="also write the report files here")
    p.add_argument("--strict-budget", action="store_true", help="fail when the budget is exceeded")
    p.add_argument("--yes", action="store_true", help="approve every confirm: gate")
    p.add_argument("--json", action="store_true", help="JSON event stream on stdout")
    common(p, params=True, state=True)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="continue a failed or interrupted run from its journal")
    p.add_argument("run", help="run id (or unique prefix) or run directory")
    p.add_argument("--from", dest="from_step", metavar="STEP", help="start at this main step")
    p.add_argument("--failed-hosts-only", action="store_true", help="only the hosts that failed that step")
    p.add_argument("-i", "--inventory", help="default: the inventory of the original run")
    p.add_argument("--no-rollback", action="store_true")
    p.add_argument("--report-dir", metavar="DIR")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--json", action="store_true")
    common(p, params=True, state=True)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("report", help="print a run's report")
    p.add_argument("run", help="run id (or unique prefix) or run directory")
    p.add_argument("--format", choices=["md", "html", "json", "junit"], default="md")
    common(p, state=True)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("history", help="past runs from the history database")
    p.add_argument("--runbook", metavar="NAME")
    p.add_argument("--since", metavar="DURATION", help="e.g. 7d, 12h")
    p.add_argument("--json", action="store_true")
    common(p, state=True)
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("metrics", help="recovery metrics: success rate, rollback frequency, MTTR, SEV targets")
    p.add_argument("--runbook", metavar="NAME")
    p.add_argument("--since", metavar="DURATION")
    p.add_argument("--format", choices=["text", "prometheus", "json"], default="text")
    common(p, state=True)
    p.set_defaults(handler=cmd_metrics)

    p = sub.add_parser("backups", help="backups: status - the newest verified backup per host and database, its age")
    p.add_argument("action", choices=["status"])
    p.add_argument("-i", "--inventory", required=True, metavar="INV")
    p.add_argument("--hosts", default="db", metavar="PATTERN", help="hosts that keep backups (default: db)")
    p.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="DIR",
        help="backup directory, or a parent of backup directories, on the hosts (repeatable; default "
        "/var/backups/runbook/postgres and /var/backups/runbook/mongodb)",
    )
    p.add_argument("--max-age", metavar="DURATION", help="exit 1 when a newest verified backup is older (e.g. 2d)")
    p.add_argument("--decode", action="store_true", help="also decode every byte of each backup checked (slow)")
    p.add_argument("--limit", metavar="PATTERN")
    p.add_argument("--format", choices=["text", "json", "prometheus"], default="text")
    p.set_defaults(handler=cmd_backups)

    p = sub.add_parser("lab", help="the local drill lab")
    p.add_argument("action", choices=["up", "down", "status", "reset", "ssh"])
    p.add_argument("host", nargs="?")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(handler=cmd_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return int(handler(args))
    except RunbookError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.SUCCEEDED
    except Exception as exc:  # a defect: one line on the terminal, the traceback in a log file
        log = crash_log.write(_state_dir(args), exc)
        what = f"{type(exc).__name__}: {one_line(str(exc))}"
        print(f"error: internal error ({what}); the traceback is in {log}", file=sys.stderr)
        return ExitStatus.INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
