"""The product as functions returning typed results; the CLI only parses arguments and prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import paths
from runner.engine import backup_status as backup_catalog
from runner.engine.inventory import resolve_hosts
from runner.engine.render import RenderedProject, render_project
from runner.engine.runflow import RunOptions, RunResult, execute_run
from runner.errors import Diagnostic, InvalidInput
from runner.language.loader import load_runbook
from runner.language.model import Runbook
from runner.language.params import ResolvedParams, load_params_file, parse_assignments, resolve
from runner.language.typecheck import ensure_resolved_options
from runner.records import formats
from runner.records import history as history_db
from runner.records import metrics as run_metrics
from runner.records.report import load_report, render_markdown


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


def plan(
    runbook: Runbook,
    inventory: Path,
    limit: str | None = None,
    roles_paths: list[Path] | None = None,
    params: ResolvedParams | None = None,
) -> Plan:
    from runner.engine.planning import describe_steps
    from runner.language import policy

    roles_paths = roles_paths or roles_search_path()
    if params is not None:
        ensure_resolved_options(runbook, params.values, roles_paths)
    changes = describe_steps(runbook, roles_paths, params.values if params is not None else None)
    patterns = sorted({s.hosts for s in runbook.all_steps})
    resolved = resolve_hosts(inventory, patterns, limit)
    rows = [
        PlanRow(
            s.id, s.phase, s.uses, s.hosts, resolved.get(s.hosts, []), s.title, s.when, s.confirm, changes.get(s.id, "")
        )
        for s in runbook.all_steps
    ]
    return Plan(runbook, rows, runbook.budget_s, policy.response_target_s(runbook.severity))


def run(runbook: Runbook, params: ResolvedParams, options: RunOptions) -> RunResult:
    ensure_resolved_options(runbook, params.values, options.roles_paths)
    resolved = resolve_hosts(options.inventory, sorted({s.hosts for s in runbook.steps}), options.limit)
    if not any(resolved.values()):
        raise InvalidInput(
            f"no host in {options.inventory} matches any step's hosts "
            f"({', '.join(sorted({s.hosts for s in runbook.steps}))})"
        )
    return execute_run(runbook, params, options)


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
    import json

    data: dict[str, Any] = load_report(find_run(run, state_dir))
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        return formats.render_html(data)
    if fmt == "junit":
        return formats.render_junit(data)
    raise InvalidInput(f"unknown report format {fmt!r} (md, html, json, junit)")


def history(state_dir: Path, runbook: str | None = None, since_s: float | None = None) -> list[history_db.RunRow]:
    return history_db.list_runs(state_dir, runbook, since_s)


def metrics(state_dir: Path, runbook: str | None = None, since_s: float | None = None) -> run_metrics.MetricsReport:
    return run_metrics.compute(state_dir, runbook, since_s)


def backups_status(
    inventory: Path,
    hosts: str = "db",
    dirs: list[str] | None = None,
    *,
    max_age_s: float | None = None,
    decode: bool = False,
    limit: str | None = None,
) -> backup_catalog.BackupsReport:
    """The newest verified backup of every database on the hosts matching `hosts`, with its age."""
    if not Path(inventory).exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    return backup_catalog.status(Path(inventory), hosts, dirs, max_age_s=max_age_s, decode=decode, limit=limit)


def resume(
    run_ref: str,
    options: RunOptions,
    from_step: str | None = None,
    failed_hosts_only: bool = False,
    assignments: list[str] | None = None,
    params_file: str | None = None,
) -> RunResult:
    """Continue a failed or interrupted run: same runbook, params and inventory; recorded outputs reused."""
    from runner.engine.resume import plan_resume, read_state
    from runner.language.params import SECRET_MASK

    run_dir = find_run(run_ref, options.state_dir, need_report=False)
    state = read_state(run_dir)
    runbook = load_runbook(state.runbook_file, options.roles_paths)
    if state.runbook_sha256 and runbook.sha256 != state.runbook_sha256:
        raise InvalidInput(
            f"{state.runbook_file} changed since run {state.run_id}; start a new run instead of resuming"
        )
    given = parse_assignments(assignments or [])
    recorded_values = {
        k: v for k, v in state.params.items() if k in runbook.params and v != SECRET_MASK and k not in given
    }
    file_values = {**recorded_values, **(load_params_file(params_file) if params_file else {})}
    missing_secrets = [n for n in runbook.secret_params if n not in given and n not in file_values]
    if missing_secrets and any(not runbook.params[n].has_default for n in missing_secrets):
        raise InvalidInput(
            "secret params are never recorded; give them again: "
            + " ".join(f"-p {n}=..." for n in sorted(missing_secrets))
        )
    params = resolve(runbook, given, file_values)
    ensure_resolved_options(runbook, params.values, options.roles_paths)
    resume_plan = plan_resume(state, runbook, from_step, failed_hosts_only)
    options.inventory = options.inventory if str(options.inventory) not in ("", ".") else state.inventory
    options.start_at = resume_plan.start_at
    options.recorded = resume_plan.recorded
    options.resumed_from = state.run_id
    if resume_plan.hosts:
        options.limit = ":".join(resume_plan.hosts)
    elif state.limit and not options.limit:
        options.limit = state.limit
    return execute_run(runbook, params, options)
