"""plan and run: the sampler's library entry points (verify is in sampling.verify).

run() in short:
  1. source: one READ ONLY transaction at REPEATABLE READ (one snapshot for every table);
     target: one transaction with ``session_replication_role = replica`` (no triggers, no
     per-row foreign-key checks).
  2. check the configuration against both catalogs and EXPLAIN every selection (nothing
     written yet), then TRUNCATE the target tables in one statement;
  3. downward pass: per table, ``COPY (SELECT anonymised ...) TO STDOUT`` on the source streamed
     into ``COPY ... FROM STDIN`` on the target (binary where the types allow);
  4. parents: repeat until nothing is missing — find references whose parent is not loaded
     (anti-join on the target), fetch those parents from the source by key in bounded batches
     (include); then nullify / drop, cascading drops;
  5. validate every foreign key (anti-join), move sequences past the copied values, ANALYZE,
     COMMIT.  Any error or a killed process rolls the target back to exactly what it was.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from sampling.catalog import ForeignKey, QualifiedName, display, ident
from sampling.config import SamplingConfig
from sampling.errors import SamplingError
from sampling.model import Resolved, TablePlan
from sampling.results import Plan, Progress, ProgressCallback, RunSummary, TableCount, TablePlanRow
from sampling.selection import (
    SourceQueries,
    count_dangling,
    delete_dangling,
    describe_link,
    missing_parent_keys,
    nullify_dangling,
)
from sampling.session import (
    Connection,
    anonymisation_key,
    connect,
    database_errors,
    prepare_source,
    resolve_databases,
)

#: Keys fetched from the target and sent back to the source per round trip (bounds client memory).
KEY_BATCH = 50_000


def _fraction(config: SamplingConfig) -> float | dict[str, float]:
    if len(config.roots) == 1:
        return config.roots[0].fraction
    return {root.table: root.fraction for root in config.roots}


def plan(
    config: SamplingConfig, source_url: str, target_url: str | None = None, *, exact: bool = False
) -> Plan:
    """Rows per table and first-level growth from ``include`` parents; writes nothing anywhere.

    ``exact=True`` also gives each table's final row count by loading the sample into the target
    inside a transaction that is rolled back (the target's tables are locked meanwhile).
    """
    if exact and not target_url:
        raise SamplingError("an exact plan needs a target database: it loads the sample and rolls it back")
    with database_errors(source_url, target_url), connect(source_url, "source", read_only=True) as src:
        if target_url is None:
            resolved = resolve_databases(config, src, None)
        else:
            with connect(target_url, "target", read_only=True) as tgt:
                resolved = resolve_databases(config, src, tgt)
        prepare_source(src, config, anonymisation_key(config, resolved))
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
        database_errors(source_url, target_url),
        connect(source_url, "source", read_only=True) as src,
        connect(target_url, "target") as tgt,
    ):
        resolved = resolve_databases(config, src, tgt)
        _refuse_unsafe(resolved)
        prepare_source(src, config, anonymisation_key(config, resolved))
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
            except psycopg.errors.InsufficientPrivilege as error:
                # Valid SQL the source role may not read: say so, not "not valid SQL".
                role = self.src.info.user
                raise SamplingError(
                    f"the source role {role!r} may not read what the selection of table "
                    f"{self.resolved.tables[name].logical} needs: {str(error).strip()}; grant it SELECT on the "
                    f"source's tables (`python -m sampling grant-reader --role {role}` as the owner, or "
                    f"GRANT SELECT ON ALL TABLES IN SCHEMA ... TO {role})"
                ) from None
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
        problems = dangling_foreign_keys(self.tgt, self.resolved)
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


def dangling_foreign_keys(tgt: Connection, resolved: Resolved) -> list[str]:
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
