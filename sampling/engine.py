"""plan and run: the sampler's library entry points (verify is in sampling.verify).

run() in short:
  1. source: one READ ONLY transaction at REPEATABLE READ (one snapshot for every table);
     target: one transaction with ``session_replication_role = replica`` (no triggers, no
     per-row foreign-key checks).
  2. check the configuration against both catalogs, find the tables outside the sample that
     reference it (``outside_references``) and EXPLAIN every selection (nothing written yet), then
     empty the target tables (one TRUNCATE; DELETE for those that ``prune`` keeps references to);
     every lock wait is bounded by ``lock_timeout``;
  3. first pass, with the target's plain secondary indexes dropped meanwhile: per table,
     ``COPY (SELECT anonymised ...) TO STDOUT`` on the source streamed into ``COPY ... FROM
     STDIN`` on the target (binary where the types allow) — its selection, and the rows that
     loaded rows reference through ``include`` links; helper source connections on the same
     snapshot read other tables meanwhile (sampling.reads);
  4. parents: repeat until nothing is missing — find references whose parent is not loaded
     (anti-join on the target; after the first pass only along cycles), fetch those parents from
     the source by key in bounded batches (include); then nullify / drop, cascading drops;
  5. rebuild the plain secondary indexes dropped for the load (sampling.deferred_indexes); prune
     (or have emptied) the outside rows that no longer resolve, validate every foreign key
     (anti-join), restart every sequence the replaced tables use past their values (ALTER SEQUENCE,
     transactional), ANALYZE, COMMIT.  Any error or a killed process rolls the target back to
     exactly what it was, sequences included.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.abc import Buffer

from sampling.catalog import (
    ForeignKey,
    OutsideReference,
    QualifiedName,
    Table,
    display,
    ident,
    outside_references,
    relation,
    sequence_users,
)
from sampling.config import SamplingConfig
from sampling.deferred_indexes import drop_secondary_indexes, rebuild_indexes
from sampling.errors import SamplingError
from sampling.model import Resolved, TablePlan
from sampling.reads import read_in_parallel
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
    snapshot_helpers,
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
            # No target: the source's own tables outside the sample (other schemas) stand in for it.
            replaced = {p.source.name for p in resolved.tables.values() if p.mode != "none"}
            outside = outside_references(src, replaced)
        else:
            with connect(target_url, "target", read_only=True) as tgt:
                resolved = resolve_databases(config, src, tgt)
                outside = outside_references(tgt, _touched_targets(resolved))
        prepare_source(src, config, anonymisation_key(config, resolved))
        queries = SourceQueries(resolved)
        rows: dict[str, TablePlanRow] = {}
        loaded = [
            *resolved.downward_order,
            *[n for n, p in sorted(resolved.tables.items()) if p.mode == "all"],
        ]
        for name in loaded:
            count = src.execute(queries.count_selected(name)).fetchone()
            label = display(resolved.tables[name].target.name)
            rows[label] = TablePlanRow(resolved.tables[name].mode, int(count[0]) if count else 0, 0)
        for name in resolved.include_only:
            rows[display(resolved.tables[name].target.name)] = TablePlanRow("sample", 0, 0)
        include_links: dict[QualifiedName, list[ForeignKey]] = {}
        for child in loaded:
            for link in resolved.tables[child].links:
                parent = resolved.tables.get(link.fk.referenced)
                if link.policy == "include" and parent is not None and parent.mode == "sample":
                    include_links.setdefault(link.fk.referenced, []).append(link.fk)
        for parent_name, fks in include_links.items():
            parent_plan = resolved.tables[parent_name]
            missing = src.execute(queries.count_missing_parents(parent_name, fks)).fetchone()
            rows[display(parent_plan.target.name)].parents_first_level = int(missing[0]) if missing else 0
        result = Plan(
            rows,
            list(resolved.unreached),
            list(resolved.sensitive_without_rule),
            list(resolved.cycle_breaks),
            [describe_link(ref.fk) for ref in outside],
        )
    if exact and target_url:
        for label, loaded_rows in run(config, source_url, target_url, dry_run=True).tables.items():
            rows[label].final = loaded_rows.rows
    return result


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
        outside = outside_references(tgt, _touched_targets(resolved))
        if outside and config.outside_references == "refuse":
            raise SamplingError(
                f"{config.source_file}: tables outside the sample reference tables the run replaces: "
                f"{', '.join(describe_link(ref.fk) for ref in outside)}. Their rows would dangle. Set "
                "outside_references: prune (keep their rows whose references still resolve) or empty, or add "
                "those tables to the sample."
            )
        key = anonymisation_key(config, resolved)
        prepare_source(src, config, key)
        _prepare_target(tgt)
        loader = _Loader(resolved, src, tgt, report, outside)
        with _lock_waits(config, src, tgt, resolved, outside):
            loader.prepare_queries()
            loader.truncate()
            deferred = drop_secondary_indexes(
                tgt, sorted(p.target.name for p in resolved.tables.values() if p.loads)
            )
            extra = min(config.source_connections, len(loader.downward)) - 1
            with snapshot_helpers(src, source_url, extra, config, key) as helpers:
                loader.load_downward(helpers)
            loader.resolve_parents()
            rebuild_indexes(tgt, deferred)
            loader.prune_outside()
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
            loader.outside_pruned,
            loader.outside_emptied,
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


#: Other sessions holding or waiting for a lock on any of the given relations or their partitions and
#: inheritance descendants (a lock on a partition or a child blocks the TRUNCATE of its parent).
_LOCK_HOLDERS_SQL = """
WITH RECURSIVE touched(oid) AS (
    SELECT to_regclass(name)::oid FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN touched t ON i.inhparent = t.oid
)
SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), coalesce(a.usename::text, '')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.pid <> pg_backend_pid() AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation IN (SELECT oid FROM touched)
ORDER BY 1
"""


@contextmanager
def _lock_waits(
    config: SamplingConfig,
    src: Connection,
    tgt: Connection,
    resolved: Resolved,
    outside: list[OutsideReference],
) -> Iterator[None]:
    """Wait at most ``lock_timeout`` for any lock; then stop, naming the sessions that hold them.

    Without it a developer's open transaction on a table the run empties makes the run wait at
    TRUNCATE forever, silently. Everything the run did is rolled back. The sessions named are those
    holding or awaiting a lock on anything the run touches on that side: its tables with their
    partitions and inheritance children, and on the target the outside tables and the sequences it
    restarts.
    """
    for conn in (src, tgt):
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (config.lock_timeout,))
    try:
        yield
    except psycopg.errors.LockNotAvailable:
        source_failed = src.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn, side = (src, "source") if source_failed else (tgt, "target")
        conn.rollback()
        if source_failed:
            names = [ident(p.source.name).as_string(conn) for p in resolved.tables.values()]
        else:
            tables = [p.target.name for p in resolved.tables.values()]
            tables += [name for ref in outside for name in (ref.table.name, ref.referenced.name)]
            names = [ident(name).as_string(conn) for name in tables]
            names += list(sequence_columns(conn, resolved))
        holders = [
            f"pid {pid} (application_name {app!r}, state {state!r}, user {user!r})"
            for pid, app, state, user in conn.execute(_LOCK_HOLDERS_SQL, (names,)).fetchall()
        ]
        blocking = "; ".join(holders) or "none left (they finished meanwhile)"
        first = holders[0].split()[1] if holders else "<pid>"
        raise SamplingError(
            f"the {side} database did not grant a lock within lock_timeout {config.lock_timeout}: other "
            f"sessions hold locks on the tables or sequences the run reads or replaces. Sessions holding "
            f"or awaiting them: {blocking}. Nothing was changed. Let those sessions finish (commit or roll "
            f"back; close idle transactions), or end them on the {side} database with SELECT "
            f"pg_terminate_backend({first}); then run again. To wait longer, raise lock_timeout in "
            f"{config.source_file}."
        ) from None


class _Loader:
    """The target-side steps of one run, sharing the two connections and the row counts."""

    def __init__(
        self,
        resolved: Resolved,
        src: Connection,
        tgt: Connection,
        report: ProgressCallback,
        outside: list[OutsideReference],
    ) -> None:
        self.resolved = resolved
        self.outside = outside
        self.rule = resolved.config.outside_references
        self.outside_pruned: dict[str, int] = {}
        self.outside_emptied: list[str] = []
        self.src = src
        self.tgt = tgt
        self.report = report
        self.queries = SourceQueries(resolved)
        #: The first pass's source queries by (table, step), in load order; filled by prepare_queries().
        self.downward: dict[tuple[QualifiedName, str], sql.Composed] = {}
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
        """Empty the replaced tables (and, by the ``empty`` rule, the outside tables referencing them).

        TRUNCATE refuses a table that a table not emptied with it references: under ``prune`` the
        tables outside tables reference (and, transitively, the tables those reference) are emptied
        with DELETE instead, which the replica role lets through without foreign-key checks.
        """
        # ONLY: a table's inheritance children are tables of their own, with their own copy mode.
        replaced = {p.target.name: p.target for p in self.resolved.tables.values() if p.mode != "none"}
        truncated = dict(replaced)
        if self.rule == "empty":
            for ref in self.outside:
                truncated[ref.table.name] = ref.table
            self.outside_emptied = sorted({display(ref.table.name) for ref in self.outside})
        deleted: dict[QualifiedName, Table] = {}
        if self.rule == "prune":
            pending = [ref.fk.referenced for ref in self.outside if ref.fk.referenced in replaced]
            while pending:
                name = pending.pop()
                if name not in deleted:
                    deleted[name] = replaced[name]
                    pending.extend(
                        fk.referenced for fk in replaced[name].foreign_keys if fk.referenced in replaced
                    )
            for name in deleted:
                del truncated[name]
        if truncated:
            emptied = sorted(truncated.values(), key=_name)
            self.tgt.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(relation(t) for t in emptied)))
        for table in sorted(deleted.values(), key=_name):
            self.tgt.execute(sql.SQL("DELETE FROM {}").format(relation(table)))

    def prune_outside(self) -> None:
        """``prune``: delete the outside rows whose references no longer resolve, cascading among them."""
        if self.rule != "prune":
            return
        changed = True
        while changed:
            changed = False
            for ref in self.outside:
                cur = self.tgt.execute(delete_dangling(ref.table, ref.referenced, ref.fk))
                if cur.rowcount > 0:
                    changed = True
                    label = display(ref.table.name)
                    self.outside_pruned[label] = self.outside_pruned.get(label, 0) + cur.rowcount

    def _stream(self, plan: TablePlan, select: sql.Composable, step: str) -> int:
        """COPY the rows of ``select`` (run on the source) into the plan's target table; returns the count."""
        with self.src.cursor() as scur, scur.copy(_copy_out(plan, select)) as out:
            return self._load(plan, out, step)

    def _load(self, plan: TablePlan, chunks: Iterable[Buffer], step: str, read_seconds: float = 0.0) -> int:
        """COPY ``chunks`` (COPY data in the plan's format) into the plan's target table; returns the count."""
        label = display(plan.target.name)
        fmt = sql.SQL("(FORMAT binary)" if plan.binary else "(FORMAT text)")
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
        step_count = self.step_counts.setdefault((label, step), TableCount())
        started = time.monotonic() - read_seconds
        written = 0
        with self.tgt.cursor() as tcur:
            with tcur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN {}").format(ident(plan.target.name), columns, fmt)
            ) as into:
                for chunk in chunks:
                    into.write(chunk)
                    written += 1
                    if written % 50_000 == 0:  # one chunk per row when streamed from the source
                        elapsed = step_count.seconds + time.monotonic() - started
                        self.report(Progress(label, step, step_count.rows + written, elapsed, done=False))
            rows = max(tcur.rowcount, 0)
        elapsed = time.monotonic() - started
        for count in (self.counts[label], step_count):
            count.rows += rows
            count.seconds += elapsed
        self.report(Progress(label, step, step_count.rows, step_count.seconds, done=True))
        return rows

    def prepare_queries(self) -> None:
        """Build and EXPLAIN every source query of the first pass: a bad ``where`` or rule fails before
        anything is written.  Per table its selection (step ``load``) and, where loaded rows of other
        tables reference rows outside it through ``include`` links, those rows (step ``include``)."""
        order = [
            *self.resolved.downward_order,
            *[n for n, p in sorted(self.resolved.tables.items()) if p.mode == "all"],
        ]
        steps = []
        for name in sorted(self.resolved.tables):
            parents = self.queries.parents_rows(name) if self.resolved.tables[name].mode == "sample" else None
            if parents is not None:
                steps.append(((name, "include"), parents))
        # The parents statements read the most tables: first, so that the helpers start them at once.
        steps += [((name, "load"), self.queries.downward_rows(name)) for name in order]
        # EXPLAIN the selections before the parents statements that contain them, so that an error
        # names the table whose selection is wrong.
        for (name, _step), query in sorted(steps, key=lambda item: item[0][1] == "include"):
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
        self.downward.update(steps)

    def load_downward(self, helpers: list[Connection]) -> None:
        """Every first-pass query into the target; ``helpers`` read some of them in parallel."""
        tables = self.resolved.tables

        def loaded(key: tuple[QualifiedName, str], rows: int) -> None:
            name, step = key
            if step == "include" and rows:
                label = display(tables[name].target.name)
                self.included[label] = self.included.get(label, 0) + rows

        read_in_parallel(
            list(self.downward),
            lambda key: _copy_out(tables[key[0]], self.downward[key]),
            helpers,
            lambda key: loaded(key, self._stream(tables[key[0]], self.downward[key], key[1])),
            lambda key, chunks, seconds: loaded(key, self._load(tables[key[0]], chunks, key[1], seconds)),
        )

    def resolve_parents(self) -> None:
        """Pull in parents (include) until nothing is missing, then nullify and drop, cascading."""
        tables = self.resolved.tables
        pending = set(self.loaded)
        # The first pass loaded every parent along the settled links; a table that grows after it
        # is checked again along all its links.
        skipped = self.queries.settled
        while pending:
            grown: set[QualifiedName] = set()
            for child in sorted(pending):
                for link in tables[child].links:
                    parent = tables.get(link.fk.referenced)
                    if (
                        link not in skipped
                        and link.policy == "include"
                        and parent is not None
                        and parent.mode == "sample"
                        and self._pull_parents(link.fk)
                    ):
                        grown.add(parent.source.name)
            pending, skipped = grown, set()
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
                    cur = self.tgt.execute(make(tables[child].target, parent.target, target_fk))
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
        query = missing_parent_keys(self.resolved.tables[fk.table].target, parent_plan.target, fk)
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
        """Every foreign key of the touched target tables resolves (the load skipped per-row checks),
        and so does every foreign key that reaches them from outside the sample."""
        problems = dangling_foreign_keys(self.tgt, self.resolved) + dangling_outside(self.tgt, self.outside)
        if problems:
            raise SamplingError(
                "foreign keys do not resolve in the target; nothing was committed:\n  "
                + "\n  ".join(problems)
            )

    def reset_sequences(self) -> None:
        """Restart every sequence a touched table's column uses past that column's largest value.

        ``ALTER SEQUENCE ... RESTART`` is transactional, unlike ``setval``: a dry run (``plan --exact``),
        a failure or a killed process leaves every sequence where it was.
        """
        for sequence, columns in sorted(sequence_columns(self.tgt, self.resolved).items()):
            bounds = sequence_bounds(self.tgt, sequence, columns)
            self.tgt.execute(
                sql.SQL("ALTER SEQUENCE {} RESTART WITH {}").format(
                    sql.SQL(sequence), sql.Literal(bounds.restart_value())
                )
            )

    def analyze(self) -> None:
        touched = [p.target.name for p in self.resolved.tables.values() if p.mode != "none"]
        for name in sorted(touched):
            self.tgt.execute(sql.SQL("ANALYZE {}").format(ident(name)))


def _copy_out(plan: TablePlan, select: sql.Composable) -> sql.Composed:
    """``COPY (select) TO STDOUT`` in the format the plan's target load reads."""
    return sql.SQL("COPY ({}) TO STDOUT {}").format(
        select, sql.SQL("(FORMAT binary)" if plan.binary else "(FORMAT text)")
    )


def sequence_columns(tgt: Connection, resolved: Resolved) -> dict[str, list[tuple[QualifiedName, str]]]:
    """Sequences that fill a column of a table the run replaces, with every target column using them.

    A sequence may be shared (one ``DEFAULT nextval('s')`` on several tables, inherited defaults): it
    must go past the values of all its columns, found through pg_depend in the whole target database,
    including tables the configuration does not name (development-only tables, other schemas).
    """
    touched = {
        column.sequence
        for plan in resolved.tables.values()
        if plan.mode != "none"
        for column in plan.target.columns
        if column.sequence
    }
    return sequence_users(tgt, sorted(touched))


@dataclass(frozen=True)
class SequenceBounds:
    """A sequence's settings and the extreme values of the columns it fills (None: no value)."""

    sequence: str
    start: int
    increment: int
    minimum: int
    maximum: int
    largest: int | None
    smallest: int | None
    columns: tuple[str, ...]

    def restart_value(self) -> int:
        """The first value the sequence must hand out: past every value its columns hold."""
        if self.increment > 0:
            if self.largest is None:
                return self.start
            value = max(self.largest + 1, self.minimum)
            if value > self.maximum:
                raise SamplingError(
                    f"sequence {self.sequence} cannot go past {self.largest} ({', '.join(self.columns)}): its "
                    f"MAXVALUE is {self.maximum}; raise it with ALTER SEQUENCE ... MAXVALUE"
                )
            return value
        if self.smallest is None:
            return self.start
        value = min(self.smallest - 1, self.maximum)
        if value < self.minimum:
            raise SamplingError(
                f"sequence {self.sequence} cannot go below {self.smallest} ({', '.join(self.columns)}): its "
                f"MINVALUE is {self.minimum}; lower it with ALTER SEQUENCE ... MINVALUE"
            )
        return value

    def hands_out_a_used_value(self, next_value: int) -> bool:
        if self.increment > 0:
            return self.largest is not None and next_value <= self.largest
        return self.smallest is not None and next_value >= self.smallest


def sequence_bounds(
    conn: Connection, sequence: str, columns: list[tuple[QualifiedName, str]]
) -> SequenceBounds:
    """Read ``sequence``'s settings and the extreme value of the ``columns`` it fills: the largest for
    an ascending sequence, the smallest for a descending one (one index lookup each on a key column)."""
    settings = conn.execute(
        "SELECT seqstart, seqincrement, seqmin, seqmax FROM pg_sequence WHERE seqrelid = %s::regclass",
        (sequence,),
    ).fetchone()
    assert settings is not None
    start, increment, minimum, maximum = (int(v) for v in settings)
    ascending = increment > 0
    aggregate = sql.SQL("max" if ascending else "min")
    extremes = sql.SQL(", ").join(
        sql.SQL("(SELECT {}({})::bigint FROM {})").format(aggregate, sql.Identifier(column), ident(table))
        for table, column in columns
    )
    row = conn.execute(
        sql.SQL("SELECT {}({})").format(sql.SQL("greatest" if ascending else "least"), extremes)
    ).fetchone()
    extreme = None if row is None or row[0] is None else int(row[0])
    return SequenceBounds(
        sequence,
        start,
        increment,
        minimum,
        maximum,
        extreme if ascending else None,
        None if ascending else extreme,
        tuple(f"{display(table)}.{column}" for table, column in columns),
    )


def dangling_outside(tgt: Connection, outside: list[OutsideReference]) -> list[str]:
    """Foreign keys from tables outside the sample that some row violates."""
    problems = []
    for ref in outside:
        row = tgt.execute(count_dangling(ref.table, ref.referenced, ref.fk)).fetchone()
        if row and row[0]:
            problems.append(
                f"{describe_link(ref.fk)} ({ref.fk.name}, a table outside the sample): {row[0]} rows "
                "reference missing rows"
            )
    return problems


def _name(table: Table) -> QualifiedName:
    return table.name


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
            parent = target_tables.get(fk.referenced) or Table(fk.referenced, (), (), False)
            row = tgt.execute(count_dangling(table, parent, fk)).fetchone()
            if row and row[0]:
                problems.append(f"{describe_link(fk)} ({fk.name}): {row[0]} rows reference missing rows")
    return problems
