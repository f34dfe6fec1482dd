"""What plan, run and verify return; each has ``to_json()`` (JSON-safe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One progress report: ``rows`` copied into ``table`` during ``step`` so far, in ``seconds``.

    During a COPY ``rows`` counts data messages (one per row); ``done`` reports carry the
    server's exact count.
    """

    table: str
    step: str  # load | include
    rows: int
    seconds: float
    done: bool


ProgressCallback = Callable[[Progress], None]


@dataclass
class TableCount:
    rows: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    tables: dict[str, TableCount]
    seconds: float
    seed: int
    fraction: float | dict[str, float]
    included: dict[str, int] = field(default_factory=dict)
    nullified: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    #: Tables outside the sample that reference it: rows deleted (prune) per table, and tables emptied.
    outside_pruned: dict[str, int] = field(default_factory=dict)
    outside_emptied: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": {n: {"rows": t.rows, "seconds": round(t.seconds, 3)} for n, t in self.tables.items()},
            "total_rows": self.total_rows,
            "seconds": round(self.seconds, 3),
            "seed": self.seed,
            "fraction": self.fraction,
            "included": self.included,
            "nullified": self.nullified,
            "dropped": self.dropped,
            "outside_pruned": self.outside_pruned,
            "outside_emptied": self.outside_emptied,
        }


@dataclass
class TablePlanRow:
    mode: str
    selected: int  # rows the downward pass takes (all rows for copy: all)
    parents_first_level: int  # rows that include pulls in directly (first level; more levels may follow)
    final: int | None = None  # rows after parents, nullify and drop: only from an exact plan (a dry run)


@dataclass
class Plan:
    tables: dict[str, TablePlanRow]
    unreached: list[str]
    sensitive_without_rule: list[str]
    cycle_breaks: list[str]
    #: Foreign keys of tables outside the sample that reference a table the run replaces.
    outside_references: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": {
                n: {"mode": t.mode, "selected": t.selected, "parents_first_level": t.parents_first_level}
                | ({} if t.final is None else {"final": t.final})
                for n, t in self.tables.items()
            },
            "total_selected": sum(t.selected for t in self.tables.values()),
            "unreached": self.unreached,
            "sensitive_without_rule": self.sensitive_without_rule,
            "cycle_breaks": self.cycle_breaks,
            "outside_references": self.outside_references,
        }


@dataclass
class VerifyReport:
    problems: list[str]
    warnings: list[str]
    checked_links: int
    checked_sequences: int
    checked_columns: int

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "checked_links": self.checked_links,
            "checked_sequences": self.checked_sequences,
            "checked_columns": self.checked_columns,
        }
