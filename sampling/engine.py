"""plan, run and verify: the sampler's library entry points.

run() in short:
  1. source: one READ ONLY transaction at REPEATABLE READ (one snapshot for every table);
     target: one transaction with ``session_replication_role = replica`` (no triggers, no
     per-row foreign-key checks).
  2. check the configuration against both catalogs (nothing written yet), then TRUNCATE the
     target tables in one statement;
  3. downward pass: per table, ``COPY (SELECT anonymised ...) TO STDOUT`` on the source streamed
     into ``COPY ... FROM STDIN`` on the target (binary where the types allow);
  4. parents: repeat until nothing is missing — find references whose parent is not loaded
     (anti-join on the target), fetch those parents from the source by key in bounded batches
     (include); then nullify / drop, cascading drops;
  5. validate every foreign key (anti-join), move sequences past the copied values, ANALYZE,
     COMMIT.  Any error or a killed process rolls the target back to exactly what it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sampling.anonymise import KEY_SETTING
from sampling.catalog import (
    Catalog,
    ForeignKey,
    QualifiedName,
    Table,
    display,
    ident,
    read_catalog,
    sees_backend,
    server_identity,
)
from sampling.config import SamplingConfig
from sampling.errors import SamplingError, mask_text, mask_url, url_password
from sampling.model import Resolved, TablePlan, resolve, target_name, target_schemas
from sampling.selection import (
    SourceQueries,
    count_dangling,
    delete_dangling,
    describe_link,
    missing_parent_keys,
    nullify_dangling,
)

Connection = psycopg.Connection[tuple[Any, ...]]

#: Keys fetched from the target and sent back to the source per round trip (bounds client memory).
KEY_BATCH = 50_000

#: Session settings on both sides, so values turned into text (keys, text COPY) read back identically.
_SESSION = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


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


# --------------------------------------------------------------------------- connections


@contextmanager
def _connect(url: str, role: str, *, read_only: bool = False) -> Iterator[Connection]:
    """A connection in a transaction; errors name the server with its password hidden."""
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        message = mask_text(str(error).strip(), url_password(url))
        raise SamplingError(f"cannot connect to the {role} server {mask_url(url)}: {message}") from None
    try:
        if read_only:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        for name, value in _SESSION.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        yield conn
    finally:
        conn.close()  # without COMMIT: the open transaction is rolled back


@contextmanager
def _database_errors(*urls: str | None) -> Iterator[None]:
    """Turn a database error into a SamplingError whose message carries no password."""
    try:
        yield
    except psycopg.Error as error:
        passwords = [url_password(u) for u in urls if u]
        raise SamplingError(f"database error: {mask_text(str(error).strip(), *passwords)}") from None


def _anonymisation_key(config: SamplingConfig, resolved: Resolved) -> str:
    keyed = [
        f"{p.logical}.{c}" for p in resolved.tables.values() if p.loads for c, r in p.rules.items() if r.keyed
    ]
    if not keyed:
        return ""
    key = os.environ.get(config.anonymisation.key_env, "")
    if not key:
        raise SamplingError(
            f"the environment variable {config.anonymisation.key_env} is not set; it must hold the secret key "
            f"of the keyed pseudonyms used by {', '.join(keyed[:5])}"
        )
    return key


def _prepare_source(src: Connection, config: SamplingConfig, key: str) -> None:
    src.execute("SELECT set_config('work_mem', %s, false)", (config.source_work_mem,))
    # Bound parameter: the key is in no query text, so not in the COPY statements the server may log.
    src.execute("SELECT set_config(%s, %s, false)", (KEY_SETTING, key))


def _mirror_catalog(config: SamplingConfig, source: Catalog) -> Catalog:
    """The target catalog ``plan`` assumes when it has no target: the source's, renamed by the mapping."""
    tables = {}
    for table in source.tables.values():
        name = target_name(config, table.name)
        tables[name] = Table(name, table.columns, table.primary_key, table.partitioned, ())
    return Catalog(tables)


def _resolve(config: SamplingConfig, src: Connection, tgt: Connection | None) -> Resolved:
    source_catalog = read_catalog(src, config.schemas, config.mapping.source_prefix)
    if tgt is None:
        return resolve(config, source_catalog, _mirror_catalog(config, source_catalog), same_database=False)
    source_id = server_identity(src)
    same_database = sees_backend(tgt, source_id) and server_identity(tgt)[2] == source_id[2]
    target_catalog = read_catalog(tgt, target_schemas(config), config.mapping.target_prefix)
    return resolve(config, source_catalog, target_catalog, same_database)


def _fraction(config: SamplingConfig) -> float | dict[str, float]:
    if len(config.roots) == 1:
        return config.roots[0].fraction
    return {root.table: root.fraction for root in config.roots}


# --------------------------------------------------------------------------- plan


def plan(
    config: SamplingConfig, source_url: str, target_url: str | None = None, *, exact: bool = False
) -> Plan:
    """Rows per table and first-level growth from ``include`` parents; writes nothing anywhere.

    ``exact=True`` also gives each table's final row count by loading the sample into the target
    inside a transaction that is rolled back (the target's tables are locked meanwhile).
    """
    if exact and not target_url:
        raise SamplingError("an exact plan needs a target database: it loads the sample and rolls it back")
    with _database_errors(source_url, target_url), _connect(source_url, "source", read_only=True) as src:
        if target_url is None:
            resolved = _resolve(config, src, None)
        else:
            with _connect(target_url, "target", read_only=True) as tgt:
                resolved = _resolve(config, src, tgt)
        _prepare_source(src, config, _anonymisation_key(config, resolved))
        queries = SourceQueries(resolved)
        rows: dict[str, TablePlanRow] = {}
        loaded = [
            *resolved.downward_order,
            *[n for n, p in sorted(resolved.tables.items()) if p.mode == "all"],
        ]
        for name in loaded:
            count = src.execute(
                sql.SQL("SELECT count(*) FROM {} AS t").format(queries.selection(name))
            ).fetchone()
            label = display(resolved.tables[name].target.name)
            rows[label] = TablePlanRow(resolved.tables[name].mode, int(count[0]) if count else 0, 0)
        for name in resolved.include_only:
            rows[display(resolved.tables[name].target.name)] = TablePlanRow("sample", 0, 0)
        for child in loaded:
            for link in resolved.tables[child].links:
                parent = resolved.tables.get(link.fk.referenced)
                if link.policy != "include" or parent is None or parent.mode != "sample":
                    continue
                rows[display(parent.target.name)].parents_first_level += _count_missing(src, queries, link.fk)
        result = Plan(
            rows, list(resolved.unreached), list(resolved.sensitive_without_rule), list(resolved.cycle_breaks)
        )
    if exact and target_url:
        for label, loaded_rows in run(config, source_url, target_url, dry_run=True).tables.items():
            rows[label].final = loaded_rows.rows
    return result


def _count_missing(src: Connection, queries: SourceQueries, fk: ForeignKey) -> int:
    """Distinct parents referenced by the child's downward rows that the parent's downward rows lack."""
    cols = sql.SQL(", ").join(sql.Identifier("c", c) for c in fk.columns)
    match = sql.SQL(" AND ").join(
        sql.SQL("p.{} = k.{}").format(sql.Identifier(r), sql.Identifier(c))
        for c, r in zip(fk.columns, fk.referenced_columns, strict=True)
    )
    not_null = sql.SQL(" AND ").join(
        sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns
    )
    when = sql.SQL(" AND ({})").format(sql.SQL(fk.when)) if fk.when else sql.SQL("")
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {child} AS c WHERE {nn}{when}) AS k "
        "WHERE NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {match})"
    ).format(
        cols=cols,
        child=queries.selection(fk.table),
        nn=not_null,
        when=when,
        parent=queries.selection(fk.referenced),
        match=match,
    )
    row = src.execute(query).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- run


def run(
    config: SamplingConfig,
    source_url: str,
    target_url: str,
    progress: ProgressCallback | None = None,
    *,
    dry_run: bool = False,
) -> RunSummary:
    """Replace the target tables' rows with an anonymised sample of the source, atomically.

    ``dry_run=True`` does everything and then rolls the target back (used by an exact plan).
    """
    started = time.monotonic()
    report = progress or (lambda _event: None)
    with (
        _database_errors(source_url, target_url),
        _connect(source_url, "source", read_only=True) as src,
        _connect(target_url, "target") as tgt,
    ):
        resolved = _resolve(config, src, tgt)
        _refuse_unsafe(resolved)
        _prepare_source(src, config, _anonymisation_key(config, resolved))
        _prepare_target(tgt)
        loader = _Loader(resolved, src, tgt, report)
        loader.prepare_queries()
        loader.truncate()
        loader.load_downward()
        loader.resolve_parents()
        loader.validate()
        loader.reset_sequences()
        loader.analyze()
        if dry_run:
            tgt.rollback()
        else:
            tgt.commit()
        return RunSummary(
            loader.counts,
            time.monotonic() - started,
            config.seed,
            _fraction(config),
            loader.included,
            loader.nullified,
            loader.dropped,
        )


def _refuse_unsafe(resolved: Resolved) -> None:
    where = resolved.config.source_file
    if resolved.sensitive_without_rule:
        raise SamplingError(
            f"{where}: refusing to copy columns whose names look personal or secret without a rule: "
            f"{', '.join(resolved.sensitive_without_rule)}. Give each a rule under tables.<table>.columns, "
            "or 'keep' if it is safe."
        )
    if resolved.unreached:
        raise SamplingError(
            f"{where}: no root, foreign key or relation reaches these tables: {', '.join(resolved.unreached)}. "
            "Set their copy mode (all, empty or none) or declare the relation that reaches them."
        )


def _prepare_target(tgt: Connection) -> None:
    try:
        tgt.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        raise SamplingError(
            "the target role may not set session_replication_role (needed to load without firing triggers "
            "and per-row foreign-key checks): use a superuser, or on PostgreSQL 15+ "
            "GRANT SET ON PARAMETER session_replication_role TO <role>"
        ) from None


class _Loader:
    """The target-side steps of one run, sharing the two connections and the row counts."""

    def __init__(
        self, resolved: Resolved, src: Connection, tgt: Connection, report: ProgressCallback
    ) -> None:
        self.resolved = resolved
        self.src = src
        self.tgt = tgt
        self.report = report
        self.queries = SourceQueries(resolved)
        self.downward: dict[QualifiedName, sql.Composed] = {}  # filled by prepare_queries(), in load order
        self.loaded = [n for n, p in sorted(resolved.tables.items()) if p.loads]
        self.counts: dict[str, TableCount] = {
            display(resolved.tables[n].target.name): TableCount() for n in self.loaded
        }
        self.step_counts: dict[tuple[str, str], TableCount] = {}  # per (table, step), for progress
        self.included: dict[str, int] = {}
        self.nullified: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    def _target(self, name: QualifiedName) -> QualifiedName:
        return self.resolved.tables[name].target.name

    def truncate(self) -> None:
        emptied = [p.target.name for p in self.resolved.tables.values() if p.mode != "none"]
        if emptied:
            self.tgt.execute(
                sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(ident(n) for n in sorted(emptied)))
            )

    def _stream(self, plan: TablePlan, select: sql.Composable, step: str) -> int:
        """COPY the rows of ``select`` (run on the source) into the plan's target table; returns the count."""
        label = display(plan.target.name)
        fmt = sql.SQL("(FORMAT binary)" if plan.binary else "(FORMAT text)")
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
        step_count = self.step_counts.setdefault((label, step), TableCount())
        started = time.monotonic()
        chunks = 0
        with self.tgt.cursor() as tcur, self.src.cursor() as scur:
            with (
                scur.copy(sql.SQL("COPY ({}) TO STDOUT {}").format(select, fmt)) as out,
                tcur.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN {}").format(ident(plan.target.name), columns, fmt)
                ) as into,
            ):
                for chunk in out:
                    into.write(chunk)
                    chunks += 1
                    if chunks % 50_000 == 0:
                        elapsed = step_count.seconds + time.monotonic() - started
                        self.report(Progress(label, step, step_count.rows + chunks, elapsed, done=False))
            rows = max(tcur.rowcount, 0)
        elapsed = time.monotonic() - started
        for count in (self.counts[label], step_count):
            count.rows += rows
            count.seconds += elapsed
        self.report(Progress(label, step, step_count.rows, step_count.seconds, done=True))
        return rows

    def prepare_queries(self) -> None:
        """Build and EXPLAIN every downward query: a bad ``where`` or rule fails before anything is written."""
        order = [
            *self.resolved.downward_order,
            *[n for n, p in sorted(self.resolved.tables.items()) if p.mode == "all"],
        ]
        for name in order:
            query = self.queries.downward_rows(name)
            try:
                self.src.execute(sql.SQL("EXPLAIN {}").format(query))
            except psycopg.Error as error:
                raise SamplingError(
                    f"{self.resolved.config.source_file}: the selection of table {self.resolved.tables[name].logical} "
                    f"is not valid SQL on the source (check its root 'where', relations' 'when'): "
                    f"{str(error).strip()}"
                ) from None
            self.downward[name] = query

    def load_downward(self) -> None:
        for name, query in self.downward.items():
            self._stream(self.resolved.tables[name], query, "load")

    def resolve_parents(self) -> None:
        """Pull in parents (include) until nothing is missing, then nullify and drop, cascading."""
        tables = self.resolved.tables
        pending = set(self.loaded)
        while pending:
            grown: set[QualifiedName] = set()
            for child in sorted(pending):
                for link in tables[child].links:
                    parent = tables.get(link.fk.referenced)
                    if (
                        link.policy == "include"
                        and parent is not None
                        and parent.mode == "sample"
                        and self._pull_parents(link.fk)
                    ):
                        grown.add(parent.source.name)
            pending = grown
        # After the include pass only nullify/drop links (and declared relations, whose parent may be
        # missing in the source too) can dangle; once a row is dropped, any link to it may.
        first_pass, changed = True, True
        while changed:
            changed = False
            for child in self.loaded:
                for link in tables[child].links:
                    parent = tables.get(link.fk.referenced)
                    if parent is None or (first_pass and link.policy == "include" and not link.fk.declared):
                        continue
                    target_fk = link.fk
                    make = nullify_dangling if link.policy == "nullify" else delete_dangling
                    cur = self.tgt.execute(make(self._target(child), parent.target.name, target_fk))
                    if cur.rowcount > 0:
                        changed = True
                        label = display(self._target(child))
                        tally = self.nullified if link.policy == "nullify" else self.dropped
                        tally[label] = tally.get(label, 0) + cur.rowcount
                        if link.policy != "nullify":
                            self.counts[label].rows -= cur.rowcount
            first_pass = False

    def _pull_parents(self, fk: ForeignKey) -> int:
        """Copy into the parent table the rows the child references but the target lacks; returns rows added."""
        parent_plan = self.resolved.tables[fk.referenced]
        query = missing_parent_keys(self._target(fk.table), parent_plan.target.name, fk)
        added = 0
        with self.tgt.cursor(name="sampling_missing_keys") as keys:
            keys.execute(query)
            while batch := keys.fetchmany(KEY_BATCH):
                select = self.queries.rows_by_keys(
                    fk.referenced, fk.referenced_columns, [tuple(str(v) for v in row) for row in batch]
                )
                added += self._stream(parent_plan, select, "include")
        if added:
            label = display(parent_plan.target.name)
            self.included[label] = self.included.get(label, 0) + added
        return added

    def validate(self) -> None:
        """Every foreign key of the touched target tables resolves (the load skipped per-row checks)."""
        problems = _dangling_foreign_keys(self.tgt, self.resolved)
        if problems:
            raise SamplingError(
                "foreign keys do not resolve in the target; nothing was committed:\n  "
                + "\n  ".join(problems)
            )

    def reset_sequences(self) -> None:
        for plan in self.resolved.tables.values():
            if plan.mode != "none":
                for column in plan.target.columns:
                    if column.sequence:
                        self.tgt.execute(_setval(plan.target.name, column.name, column.sequence))

    def analyze(self) -> None:
        touched = [p.target.name for p in self.resolved.tables.values() if p.mode != "none"]
        for name in sorted(touched):
            self.tgt.execute(sql.SQL("ANALYZE {}").format(ident(name)))


def _setval(table: QualifiedName, column: str, sequence: str) -> sql.Composed:
    """Make ``sequence`` hand out values past the largest in ``table.column`` (or restart it if empty)."""
    return sql.SQL(
        "SELECT CASE WHEN m IS NULL THEN setval({seq}::regclass, s.seqmin, false) ELSE setval({seq}::regclass, "
        "greatest(m, s.seqmin), true) END FROM (SELECT max({col})::bigint AS m FROM {table}) AS x, "
        "pg_sequence AS s WHERE s.seqrelid = {seq}::regclass"
    ).format(seq=sql.Literal(sequence), col=sql.Identifier(column), table=ident(table))


def _touched_targets(resolved: Resolved) -> set[QualifiedName]:
    return {p.target.name for p in resolved.tables.values() if p.mode != "none"}


def _dangling_foreign_keys(tgt: Connection, resolved: Resolved) -> list[str]:
    """Foreign-key constraints of the target that some row violates (MATCH SIMPLE: a NULL exempts)."""
    touched = _touched_targets(resolved)
    target_tables = {p.target.name: p.target for p in resolved.tables.values()}
    problems = []
    for table in target_tables.values():
        for fk in table.foreign_keys:
            if table.name not in touched and fk.referenced not in touched:
                continue
            row = tgt.execute(count_dangling(table.name, fk.referenced, fk)).fetchone()
            if row and row[0]:
                problems.append(f"{describe_link(fk)} ({fk.name}): {row[0]} rows reference missing rows")
    return problems


# --------------------------------------------------------------------------- verify


def verify(config: SamplingConfig, source_url: str, target_url: str) -> VerifyReport:
    """Check a loaded target: foreign keys, sequences, and that no source value of an anonymised column appears."""
    with (
        _database_errors(source_url, target_url),
        _connect(source_url, "source", read_only=True) as src,
        _connect(target_url, "target", read_only=True) as tgt,
    ):
        resolved = _resolve(config, src, tgt)
        problems = _dangling_foreign_keys(tgt, resolved)
        links = sum(len(p.target.foreign_keys) for p in resolved.tables.values())
        warnings = []
        for plan in resolved.tables.values():
            for link in plan.links:
                parent = resolved.tables.get(link.fk.referenced)
                if link.fk.declared and parent is not None and plan.mode != "none":
                    row = tgt.execute(
                        count_dangling(plan.target.name, parent.target.name, link.fk)
                    ).fetchone()
                    links += 1
                    if row and row[0]:
                        warnings.append(
                            f"declared relation {describe_link(link.fk)}: {row[0]} rows reference "
                            "missing rows"
                        )
        sequences = 0
        for plan in resolved.tables.values():
            for column in plan.target.columns:
                if column.sequence and plan.mode != "none":
                    sequences += 1
                    problem = _sequence_problem(tgt, plan.target.name, column.name, column.sequence)
                    if problem:
                        problems.append(problem)
        columns = 0
        for plan in resolved.tables.values():
            for name, rule in plan.rules.items():
                # Derived values only: a truncated address or a constant may equal a real one by design.
                derived = rule.rule in ("email", "pseudonym") or (
                    rule.rule == "ip" and rule.style == "pseudonym"
                )
                if plan.loads and derived and name in plan.columns:
                    columns += 1
                    leaked = _leaked_values(src, tgt, plan, name)
                    if leaked:
                        problems.append(
                            f"{display(plan.target.name)}.{name}: {leaked} values also appear in the "
                            f"source column {display(plan.source.name)}.{name}"
                        )
        return VerifyReport(problems, warnings, links, sequences, columns)


def _sequence_problem(tgt: Connection, table: QualifiedName, column: str, sequence: str) -> str | None:
    row = tgt.execute(
        sql.SQL("SELECT (SELECT max({col})::bigint FROM {table}), last_value, is_called FROM {seq}").format(
            col=sql.Identifier(column), table=ident(table), seq=sql.SQL(sequence)
        )
    ).fetchone()
    assert row is not None
    largest, last_value, is_called = row
    next_value = last_value + 1 if is_called else last_value
    if largest is not None and next_value <= largest:
        return f"sequence {sequence} of {display(table)}.{column} would hand out {next_value}, not past {largest}"
    return None


def _leaked_values(src: Connection, tgt: Connection, plan: TablePlan, column: str) -> int:
    """How many distinct target values of ``column`` exist in the source column (batched, bounded memory)."""
    col = plan.source.column(column)
    assert col is not None
    leaked = 0
    query = sql.SQL("SELECT DISTINCT {col}::text FROM {table} WHERE {col} IS NOT NULL").format(
        col=sql.Identifier(column), table=ident(plan.target.name)
    )
    with tgt.cursor(name="sampling_verify_values") as values:
        values.execute(query)
        while batch := values.fetchmany(KEY_BATCH):
            row = src.execute(
                sql.SQL(
                    "SELECT count(DISTINCT {col}) FROM {table} WHERE {col} = ANY(%s::text[]::{typ}[])"
                ).format(col=sql.Identifier(column), table=ident(plan.source.name), typ=sql.SQL(col.type)),
                ([v[0] for v in batch],),
            ).fetchone()
            leaked += int(row[0]) if row else 0
    return leaked
