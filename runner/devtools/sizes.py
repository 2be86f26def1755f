"""Size limits of the code: no module over 500 lines, no class over 200, no function over 60.

    python -m runner.devtools.sizes                  check runner/, the Ansible collection's modules included
    python -m runner.devtools.sizes PATH...          check these files or folders instead
    ... --warn-only DIR                              list the offenders below DIR as warnings only

Prints one FILE:LINE: line per offender with its size, and exits 1 when any file outside the warn-only folders
breaks a limit (or does not parse). A class or function is measured from its `class`/`def` line to its last line.
"""

from __future__ import annotations

import argparse
import ast
import enum
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_DIR = Path(__file__).resolve().parents[1]


class Kind(enum.Enum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"


@dataclass(frozen=True)
class Limits:
    module: int = 500
    klass: int = 200
    function: int = 60

    def of(self, kind: Kind) -> int:
        return {Kind.MODULE: self.module, Kind.CLASS: self.klass, Kind.FUNCTION: self.function}[kind]


@dataclass(frozen=True)
class Offender:
    path: Path
    line: int
    kind: Kind
    name: str
    size: int
    limit: int

    def message(self, warning: bool = False) -> str:
        label = "warning: " if warning else ""
        what = self.kind.value if self.kind is Kind.MODULE else f"{self.kind.value} {self.name}"
        return f"{display(self.path)}:{self.line}: {label}{what} has {self.size} lines (limit {self.limit})"


def display(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _defs(tree: ast.AST) -> Iterator[tuple[Kind, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield Kind.CLASS, node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield Kind.FUNCTION, node


def file_offenders(path: Path, source: str, limits: Limits) -> list[Offender]:
    """The module itself, its classes and its functions (methods and nested ones too) over their limits;
    raises SyntaxError when the source does not parse."""
    found: list[Offender] = []
    module_size = len(source.splitlines())
    if module_size > limits.module:
        found.append(Offender(path, 1, Kind.MODULE, path.stem, module_size, limits.module))
    for kind, node in _defs(ast.parse(source, filename=str(path))):
        size = (node.end_lineno or node.lineno) - node.lineno + 1
        if size > limits.of(kind):
            found.append(Offender(path, node.lineno, kind, node.name, size, limits.of(kind)))
    return sorted(found, key=lambda o: o.line)


def python_files(paths: Sequence[Path]) -> list[Path]:
    files: set[Path] = set()
    for path in paths:
        candidates = path.rglob("*.py") if path.is_dir() else [path]
        files.update(p for p in candidates if "__pycache__" not in p.parts)
    return sorted(files)


def _is_below(path: Path, folders: Sequence[Path]) -> bool:
    return any(path.resolve().is_relative_to(folder.resolve()) for folder in folders)


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check(paths: Sequence[Path], warn_only: Sequence[Path], limits: Limits) -> Findings:
    """One message per offender; those below a warn-only folder are warnings."""
    findings = Findings()
    for path in python_files(paths):
        try:
            offenders = file_offenders(path, path.read_text(encoding="utf-8"), limits)
        except (SyntaxError, UnicodeDecodeError) as exc:
            line = exc.lineno if isinstance(exc, SyntaxError) and exc.lineno else 1
            findings.errors.append(f"{display(path)}:{line}: cannot be parsed: {exc}")
            continue
        if _is_below(path, warn_only):
            findings.warnings.extend(o.message(warning=True) for o in offenders)
        else:
            findings.errors.extend(o.message() for o in offenders)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m runner.devtools.sizes", description=doc.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders to check (default: runner/)")
    parser.add_argument(
        "--warn-only", action="append", type=Path, metavar="DIR",
        default=[],
        help="folder whose offenders are listed as warnings only (repeatable; default: none)",
    )
    args = parser.parse_args(argv)
    findings = check(args.paths or [RUNNER_DIR], args.warn_only, Limits())
    for line in findings.errors + findings.warnings:
        print(line)
    if findings.errors:
        print(f"{len(findings.errors)} size limit(s) broken", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
