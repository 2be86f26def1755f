"""The data-loss check of a run: per database step and host, the rows of each table before and after it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.records.jsonread import Fields

NO_DATABASE_STEP = "no database step in this run"


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TableRows:
    table: str
    before: float
    after: float  # 0 when the table is gone after the step

    @property
    def lost(self) -> float:
        return self.before - self.after if self.after < self.before else 0

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "rows_before": self.before, "rows_after": self.after, "rows_lost": self.lost}


@dataclass(frozen=True)
class HostRows:
    """What one step that counted rows (rows_before and rows_after outputs) found on one host."""

    step: str
    host: str
    tables: tuple[TableRows, ...]

    @property
    def lost(self) -> dict[str, float]:
        return {t.table: t.lost for t in self.tables if t.lost}

    @property
    def sentence(self) -> str:
        lost = self.lost
        return f"{self.host}: rows lost {lost}" if lost else f"{self.host}: no rows lost"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "host": self.host, "tables": [t.to_json() for t in self.tables]}

    @classmethod
    def from_outputs(cls, step: str, host: str, outputs: Mapping[str, Any]) -> HostRows | None:
        before, after = outputs.get("rows_before"), outputs.get("rows_after")
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            return None
        tables = tuple(
            TableRows(str(table), count, after.get(table, 0))
            for table, count in before.items()
            if _is_count(count) and _is_count(after.get(table, 0))
        )
        return cls(step, host, tables)

    @classmethod
    def read(cls, fields: Fields) -> HostRows:
        tables = tuple(
            TableRows(t.text("table"), t.number("rows_before"), t.number("rows_after"))
            for t in fields.objects("tables")
        )
        return cls(fields.text("step"), fields.text("host"), tables)


@dataclass(frozen=True)
class DataCheck:
    hosts: tuple[HostRows, ...] = ()

    @property
    def rows_lost(self) -> bool:
        return any(h.lost for h in self.hosts)

    @property
    def summary(self) -> str:
        """report.json's data_check: per database host 'no rows lost' or 'rows lost {table: n}'."""
        return "; ".join(h.sentence for h in self.hosts) if self.hosts else NO_DATABASE_STEP

    def to_json(self) -> list[dict[str, Any]]:
        return [h.to_json() for h in self.hosts]

    @classmethod
    def from_outputs(cls, published: Iterable[tuple[str, str, Mapping[str, Any]]]) -> DataCheck:
        """From (step id, host, outputs) of the run's step x host results, in report order."""
        found = (HostRows.from_outputs(step, host, outputs) for step, host, outputs in published)
        return cls(tuple(h for h in found if h is not None))

    @classmethod
    def read(cls, report: Fields) -> DataCheck:
        """data_check_detail; a report written before it existed: from the outputs the sentence was made of."""
        if report.has("data_check_detail"):
            return cls(tuple(HostRows.read(h) for h in report.objects("data_check_detail")))
        published = []
        for key, outputs in report.mapping("outputs").items():
            step, _, host = key.partition("@")
            if isinstance(outputs, Mapping):
                published.append((step, host, outputs))
        return cls.from_outputs(published)
