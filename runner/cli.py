"""`runbook` command line: parse, call runner.api, print. Errors are handled in one place (main)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runner import api, cli_args, crash_log, paths
from runner.console import choose as progress_for
from runner.console import one_line
from runner.engine import dry_run
from runner.engine.runflow import RunOptions, is_tty, moment_text
from runner.errors import ExitStatus, InvalidInput, RunbookError
from runner.language.durations import format_seconds, parse_duration
from runner.language.model import Runbook
from runner.language.params import ResolvedParams

if TYPE_CHECKING:
    from runner.lab import LabStatus
    from runner.records.model import Report



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
    plan = api.plan(runbook, Path(args.inventory), args.limit, roles, params, check=args.check)
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
    if plan.check is not None:
        sys.stdout.write(dry_run.format_text(plan.check))
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
        timeout_s=_duration(args, "timeout"),
        trigger=args.trigger,
        detected_at=moment_text(args.detected_at, "--detected-at") if args.detected_at else None,
    )
    result = api.run(runbook, params, options)
    if not args.json:
        _print_summary(result.report)
        print(f"report: {result.files.markdown}")
        print(f"        {result.files.json}")
        print(f"        {result.files.directory / 'report.html'}")
    return result.exit_status


def _print_summary(report: Report) -> None:
    detail = f" — {one_line(report.status_detail, 400)}" if report.status_detail else ""
    print(f"status: {report.status.value}{detail}")
    for host, versions in report.hosts.items():
        if versions.version_before or versions.version_after:
            print(f"  {host}: {versions.version_before} -> {versions.version_after}")
    print(
        f"duration: {format_seconds(report.duration_s)} (budget {format_seconds(report.budget_s)}, "
        f"{'met' if report.budget_met else 'MISSED'})"
    )
    rollback = report.on_failure
    if rollback.ran:
        print(f"rollback: {rollback.status.value} in {format_seconds(rollback.duration_s)}")


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
        timeout_s=_duration(args, "timeout"),
    )
    result = api.resume(args.run, options, args.from_step, args.failed_hosts_only, args.param, args.params_file)
    if not args.json:
        _print_summary(result.report)
        print(f"report: {result.files.markdown}")
    return result.exit_status


def cmd_watch(args: argparse.Namespace) -> int:
    from runner.engine import watch_once

    runbook, params, roles = _load_with_params(args)
    result = api.watch(runbook, args.step, Path(args.inventory), params, roles, args.limit)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(watch_once.format_text(result))
    return ExitStatus.SUCCEEDED if result.ok else ExitStatus.WATCH_BREACHED


def _ask(step: object, question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_report(args: argparse.Namespace) -> int:
    sys.stdout.write(api.report(args.run, _state_dir(args), args.format))
    return 0


def _duration(args: argparse.Namespace, option: str) -> float | None:
    """The seconds of a duration option (--timeout, --since); None when it is not given."""
    text = getattr(args, option)
    if not text:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(f"--{option} {exc}") from None


def cmd_history(args: argparse.Namespace) -> int:
    from runner.records import history, lease_history

    rows = api.history(_state_dir(args), args.runbook, _duration(args, "since"))
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2, default=str))
    else:
        print(history.format_runs(rows))
        events = api.lease_events(_state_dir(args), args.runbook, _duration(args, "since"))
        sys.stdout.write(lease_history.format_lease_events(events))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from runner.records import drills, metrics

    report = api.metrics(_state_dir(args), args.runbook, _duration(args, "since"))
    drilled = api.drill_metrics(_state_dir(args), args.runbook, _duration(args, "since"))
    if args.format == "prometheus":
        from runner.engine import backup_freshness

        sys.stdout.write(metrics.format_prometheus(report))
        backups = backup_freshness.prometheus_lines(backup_freshness.load_saved(_state_dir(args)))
        sys.stdout.write("".join(f"{line}\n" for line in [*backups, *drills.prometheus_lines(drilled)]))
    elif args.format == "json":
        print(json.dumps({**report.to_dict(), "drills": drilled.to_dict()}, indent=2, default=str))
    else:
        sys.stdout.write(metrics.format_text(report) + drills.format_text(drilled))
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    from runner.engine import backup_freshness, backup_status

    max_age = None
    if args.max_age:
        try:
            max_age = parse_duration(args.max_age)
        except ValueError as exc:
            raise InvalidInput(f"--max-age {exc}") from None
    report = api.backups_status(
        Path(args.inventory), args.hosts, args.dir or None, max_age_s=max_age, decode=args.decode, limit=args.limit
    )
    backup_freshness.assess(report, _state_dir(args), Path(args.inventory))
    if not report.ok:
        for target, ok, error in backup_freshness.notify(args.notify, report):
            print(f"notify {target}: {'sent' if ok else 'FAILED ' + error}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "prometheus":
        sys.stdout.write(backup_status.format_prometheus(report))
    else:
        sys.stdout.write(backup_status.format_text(report))
    return ExitStatus.SUCCEEDED if report.ok else ExitStatus.BACKUPS_UNVERIFIED


def cmd_lock(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from runner.engine import lease_admin

    if args.action == "status":
        report = api.lock_status(Path(args.inventory), args.host, args.name, args.limit)
        if args.json:
            print(json.dumps(asdict(report), indent=2))
        else:
            sys.stdout.write(lease_admin.format_status(report))
        return ExitStatus.SUCCEEDED
    released = api.lock_release(Path(args.inventory), args.host, _state_dir(args), force=args.force, name=args.name)
    sys.stdout.write(lease_admin.format_release(released))
    return ExitStatus.SUCCEEDED if released.ok else ExitStatus.NOT_RESTORED


def cmd_schedule(args: argparse.Namespace) -> int:
    from runner.engine import schedules

    state = _state_dir(args).resolve()
    if args.action == "add":
        schedules.check_name(args.name)
        schedules.check_cron(args.cron)
        if schedules.drill_names(args.runbook):
            return _schedule_drills(args, state)
        if not args.inventory:
            raise InvalidInput("schedule add: -i/--inventory is required for a runbook")
        runbook, _params, _roles = _load_with_params(args)
        inventory = Path(args.inventory).resolve()
        if not inventory.exists():
            raise InvalidInput(f"inventory {inventory} does not exist")
        entry = schedules.Schedule(
            name=args.name, runbook=str(Path(args.runbook).resolve()), inventory=str(inventory), cron=args.cron,
            state_dir=str(state), params=tuple(args.param), executable=schedules.runbook_executable(),
            roles_paths=tuple(str(Path(r).resolve()) for r in args.roles_path),
        )
        print(f"schedule {args.name}: {runbook.name} at {args.cron!r} -> {schedules.add(entry)}")
    elif args.action == "list":
        rows = schedules.listing(state)
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        else:
            sys.stdout.write(schedules.format_list(rows))
    elif args.action == "remove":
        schedules.remove(state, args.name)
        print(f"schedule {args.name} removed")
    else:
        return schedules.run_now(schedules.load(state, args.name))
    return ExitStatus.SUCCEEDED


def cmd_drill(args: argparse.Namespace) -> int:
    outcomes = api.drill(
        args.names, _state_dir(args), project=args.project, results=Path(args.results) if args.results else None,
        hold_lab=not args.lab_lock_held,
    )
    for outcome in outcomes:
        result = outcome.result or {}
        measured = result.get("duration_s")
        took = f"runbook {format_seconds(float(measured))}" if isinstance(measured, (int, float)) else "no run"
        verdict = "passed" if outcome.passed else "FAILED"
        print(f"drill {outcome.scenario}: {verdict} ({took}; history {outcome.run_id})")
    return ExitStatus.SUCCEEDED if all(o.passed for o in outcomes) else ExitStatus.ROLLED_BACK


def _schedule_drills(args: argparse.Namespace, state: Path) -> int:
    """`schedule add NAME drill:A,B --cron ...`: the drills must exist in the checkout when the schedule is added."""
    from runner.engine import drills, schedules

    project = drills.project_dir(args.project)
    for name in schedules.drill_names(args.runbook):
        drills.check_scenario(project, name)
    entry = schedules.Schedule(
        name=args.name, runbook=args.runbook, inventory="", cron=args.cron, state_dir=str(state),
        executable=schedules.runbook_executable(), project=str(project),
    )
    print(f"schedule {args.name}: {args.runbook} at {args.cron!r} -> {schedules.add(entry)}")
    return ExitStatus.SUCCEEDED


def cmd_lab(args: argparse.Namespace) -> int:
    """The lab (runner.lab is imported here only: the other commands never load it)."""
    from runner import lab

    if args.action == "up":
        status = lab.up()
        _print_lab(status)
    elif args.action == "down":
        lab.down()
    elif args.action == "status":
        status = lab.status()
        _print_lab(status)
        reachable = bool(status.hosts) and all(h.ssh_ok for h in status.hosts)
        return ExitStatus.SUCCEEDED if reachable else ExitStatus.LAB_UNAVAILABLE
    elif args.action == "reset":
        _print_lab(lab.reset())
    elif args.action == "ssh":
        if not args.host:
            raise InvalidInput("runbook lab ssh HOST [-- CMD...]")
        command = [c for c in args.command if c != "--"]
        return lab.ssh(args.host, command)  # the remote command's own exit status
    return ExitStatus.SUCCEEDED


def _print_lab(status: LabStatus) -> None:
    for host in status.hosts:
        print(
            f"  {host.name:<8} {host.address:<13} container {host.container:<8} ssh {'ok' if host.ssh_ok else 'DOWN'}"
        )


def build_parser() -> argparse.ArgumentParser:
    return cli_args.build_parser(
        {
            "validate": cmd_validate,
            "render": cmd_render,
            "plan": cmd_plan,
            "run": cmd_run,
            "resume": cmd_resume,
            "watch": cmd_watch,
            "report": cmd_report,
            "history": cmd_history,
            "metrics": cmd_metrics,
            "backups": cmd_backups,
            "lock": cmd_lock,
            "schedule": cmd_schedule,
            "drill": cmd_drill,
            "lab": cmd_lab,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: cli_args.Handler = args.handler
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
