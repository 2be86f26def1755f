"""The product as functions returning typed results; the CLI only parses arguments and prints."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from runner import paths
from runner.engine import backup_status as backup_catalog
from runner.engine import drills, lease_admin, watch_once
from runner.engine.dry_run import DryRun, dry_run
from runner.engine.inventory import step_hosts
from runner.engine.prepare import prepare_run
from runner.engine.render import RenderedProject, render_project
from runner.engine.resume import ResumeRequest, resume_run
from runner.engine.runflow import DETECTED_PARAM, RunOptions, RunResult, execute_run, moment_text
from runner.errors import Diagnostic, InvalidInput
from runner.language.loader import load_runbook
from runner.language.model import Runbook
from runner.language.params import ResolvedParams, load_params_file, parse_assignments, resolve
from runner.language.typecheck import ensure_resolved_options
from runner.records import drills as drill_records
from runner.records import formats, lease_history
from runner.records import history as history_db
from runner.records import metrics as run_metrics
from runner.records.report import load_report


@dataclass(frozen=True)
class ValidationResult:
    path: Path
    runbook: Runbook | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return self.runbook is not None and not self.diagnostics


def roles_search_path(extra: list[str] | None = None) -> list[Path]:
    return paths.extra_roles_paths(extra)


def validate(path: str | Path, roles_paths: list[Path] | None = None) -> ValidationResult:
    roles_paths = roles_paths or roles_search_path()
    try:
        runbook = load_runbook(path, roles_paths)
    except InvalidInput as exc:
        diagnostics = exc.diagnostics or [Diagnostic(str(path), 1, 1, str(exc))]
        return ValidationResult(Path(path), None, diagnostics)
    return ValidationResult(Path(path), runbook, [])


def load(path: str | Path, roles_paths: list[Path] | None = None) -> Runbook:
    return load_runbook(path, roles_paths or roles_search_path())


def resolve_params(
    runbook: Runbook, assignments: list[str] | None = None, params_file: str | None = None
) -> ResolvedParams:
    file_values = load_params_file(params_file) if params_file else {}
    return resolve(runbook, parse_assignments(assignments or []), file_values)


def render(
    runbook: Runbook,
    output: Path,
    roles_paths: list[Path] | None = None,
    params: ResolvedParams | None = None,
) -> RenderedProject:
    roles_paths = roles_paths or roles_search_path()
    if params is not None:
        ensure_resolved_options(runbook, params.values, roles_paths)
    project = render_project(
        runbook,
        roles_paths,
        params.values if params is not None else None,
        params.secret_names if params is not None else frozenset(),
    )
    project.write(output)
    return project


@dataclass(frozen=True)
class PlanRow:
    step_id: str
    phase: str
    uses: str
    hosts_pattern: str
    hosts: list[str]
    title: str
    when: str | None
    confirm: str | None
    changes: str = ""


@dataclass(frozen=True)
class Plan:
    runbook: Runbook
    rows: list[PlanRow]
    budget_s: float
    severity_target_s: float
    check: DryRun | None = None  # plan --check: the main steps run in Ansible check mode


def plan(
    runbook: Runbook,
    inventory: Path,
    limit: str | None = None,
    roles_paths: list[Path] | None = None,
    params: ResolvedParams | None = None,
    *,
    check: bool = False,
) -> Plan:
    from runner.engine.planning import plan_texts
    from runner.language import policy

    roles_paths = roles_paths or roles_search_path()
    prepared = None
    if check:
        prepared = prepare_run(runbook, params or resolve(runbook, {}), roles_paths, inventory, limit)
        hosts = prepared.hosts
    else:
        if params is not None:
            ensure_resolved_options(runbook, params.values, roles_paths)
        hosts = step_hosts(inventory, runbook.all_steps, limit, params.values if params is not None else None)
    texts = plan_texts(runbook, roles_paths, params, inventory, hosts)
    rows = [
        PlanRow(
            s.id, s.phase, s.uses, s.hosts, hosts.by_pattern[s.hosts], s.title, s.when, texts.questions.get(s.id),
            texts.changes[s.id],
        )
        for s in runbook.all_steps
    ]
    checked = dry_run(prepared, inventory, roles_paths, limit) if prepared is not None else None
    return Plan(runbook, rows, runbook.budget_s, policy.response_target_s(runbook.severity), checked)


def run(runbook: Runbook, params: ResolvedParams, options: RunOptions) -> RunResult:
    given = params.values.get(DETECTED_PARAM)
    if options.detected_at is None and isinstance(given, str) and given:
        moment_text(given, f"param {DETECTED_PARAM}")  # a bad alert time is refused before anything runs
    prepared = prepare_run(runbook, params, options.roles_paths, options.inventory, options.limit)
    if not prepared.hosts.of(runbook.steps):
        raise InvalidInput(
            f"no host in {options.inventory} matches any step's hosts "
            f"({', '.join(sorted({s.hosts for s in runbook.steps}))})"
        )
    return execute_run(prepared, options)


def watch(
    runbook: Runbook,
    step_id: str,
    inventory: Path,
    params: ResolvedParams,
    roles_paths: list[Path] | None = None,
    limit: str | None = None,
) -> watch_once.WatchOnce:
    """Sample the checks of watch step STEP once, now, on its hosts: each value against its threshold.
    InvalidInput when the step is not a watch step of the runbook, its options are wrong or no host matches."""
    roles_paths = roles_paths or roles_search_path()
    step = watch_once.watch_step(runbook, step_id)
    ensure_resolved_options(runbook, params.values, roles_paths)
    hosts = step_hosts(inventory, [step], limit, params.values)
    if not hosts.of([step]):
        raise InvalidInput(f"no host in {inventory} matches the hosts of step {step.id} ({step.hosts})")
    return watch_once.evaluate(runbook, step, params, inventory, roles_paths, limit)


def find_run(run: str, state_dir: Path, *, need_report: bool = True) -> Path:
    """A run id, a unique prefix of one, or a run directory."""
    marker = "report.json" if need_report else "journal.jsonl"
    candidate = Path(run)
    if (candidate / marker).is_file():
        return candidate
    runs = state_dir / "runs"
    matches = sorted(p for p in runs.glob(f"{run}*") if (p / marker).is_file()) if runs.is_dir() else []
    if len(matches) == 1 or (matches and matches[-1].name == run):
        return matches[-1]
    if not matches:
        raise InvalidInput(f"no run {run!r} under {runs}")
    raise InvalidInput(f"{run!r} matches several runs: {', '.join(m.name for m in matches[:5])}")


def report(run: str, state_dir: Path, fmt: str = "md") -> str:
    """A run's report in one format; InvalidInput when its report.json is not a run report."""
    import json

    loaded = load_report(find_run(run, state_dir))
    if fmt == "json":
        return json.dumps(loaded.to_json(), indent=2) + "\n"
    if fmt == "md":
        return formats.render_markdown(loaded)
    if fmt == "html":
        return formats.render_html(loaded)
    if fmt == "junit":
        return formats.render_junit(loaded)
    raise InvalidInput(f"unknown report format {fmt!r} (md, html, json, junit)")


def history(state_dir: Path, runbook: str | None = None, since_s: float | None = None) -> list[history_db.RunRow]:
    return history_db.list_runs(state_dir, runbook, since_s)


def metrics(state_dir: Path, runbook: str | None = None, since_s: float | None = None) -> run_metrics.MetricsReport:
    """Incident metrics (drills left out; their own: drill_metrics)."""
    return run_metrics.compute(state_dir, runbook, since_s)


def drill_metrics(
    state_dir: Path, runbook: str | None = None, since_s: float | None = None
) -> drill_records.DrillReport:
    return drill_records.from_rows(history_db.list_runs(state_dir, runbook, since_s))


backups_status = backup_catalog.status  # the newest verified backup of every database on the hosts, with its age


def resume(
    run_ref: str,
    options: RunOptions,
    from_step: str | None = None,
    failed_hosts_only: bool = False,
    assignments: list[str] | None = None,
    params_file: str | None = None,
) -> RunResult:
    """Continue a failed or interrupted run: same runbook, params and inventory; recorded outputs reused.
    options.inventory empty: the original run's; the caller's options are left as they are."""
    run_dir = find_run(run_ref, options.state_dir, need_report=False)
    inventory = options.inventory if str(options.inventory) not in ("", ".") else None
    given = tuple(assignments or ())
    request = ResumeRequest(from_step, failed_hosts_only, given, params_file, inventory, options.limit)
    resumed = resume_run(run_dir, options.roles_paths, request)
    options = replace(options, inventory=resumed.inventory, limit=resumed.limit)
    prepared = prepare_run(
        resumed.runbook, resumed.params, options.roles_paths, options.inventory, options.limit, resumed.plan
    )
    return execute_run(prepared, options)


def lock_status(
    inventory: Path, hosts: str | None = None, name: str | None = None, limit: str | None = None
) -> lease_admin.LocksReport:
    """The leases kept on the hosts matching `hosts` (every host when None); only lease `name` when given."""
    if not Path(inventory).exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    return lease_admin.status(Path(inventory), hosts or "all", name, limit)


def lock_release(
    inventory: Path, hosts: str, state_dir: Path, *, force: bool = False, name: str = "host"
) -> lease_admin.ReleaseReport:
    """Remove lease `name` on the hosts matching `hosts`, whatever run holds it (force must be given); each removal
    is recorded in history."""
    if not force:
        raise InvalidInput(
            "lock release removes the lease whatever run holds it: check `runbook lock status` and add --force"
        )
    if not Path(inventory).exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    return lease_admin.release(Path(inventory), hosts, state_dir, name=name)


def lease_events(
    state_dir: Path, runbook: str | None = None, since_s: float | None = None
) -> list[lease_history.LeaseEvent]:
    """Leases released by hand (`lock release --force`), oldest first, as `history` shows them."""
    return lease_history.list_lease_events(state_dir, runbook, since_s)


def drill(
    names: list[str], state_dir: Path, *, project: str | None = None, results: Path | None = None,
    hold_lab: bool = True,
) -> list[drills.DrillOutcome]:
    """Run each drill (one at a time, each under the lab's lock) and record it in history as trigger drill:NAME."""
    checkout = drills.project_dir(project)
    for name in names:
        drills.check_scenario(checkout, name)
    outcomes = []
    for name in names:
        outcome = drills.run(name, checkout, results, hold_lab=hold_lab)
        why = "" if outcome.result else f"molecule ended with exit status {outcome.exit_status} before verify"
        run_id = drill_records.record(state_dir, name, outcome.result, outcome.passed, why)
        outcomes.append(replace(outcome, run_id=run_id))
    return outcomes
