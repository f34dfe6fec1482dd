"""verify: check a loaded target — foreign keys, sequences, and no source value in anonymised columns."""

from __future__ import annotations

from psycopg import sql

from sampling.catalog import display, ident, outside_references, relation
from sampling.config import SamplingConfig
from sampling.engine import (
    KEY_BATCH,
    SequenceBounds,
    dangling_foreign_keys,
    dangling_outside,
    sequence_bounds,
    sequence_columns,
)
from sampling.model import Resolved, TablePlan
from sampling.results import VerifyReport
from sampling.selection import count_dangling, describe_link
from sampling.session import Connection, connect, database_errors, resolve_databases


def verify(config: SamplingConfig, source_url: str, target_url: str) -> VerifyReport:
    """Check a loaded target: foreign keys, sequences, and that no source value of an anonymised column appears."""
    with (
        database_errors(source_url, target_url),
        connect(source_url, "source", read_only=True) as src,
        connect(target_url, "target", read_only=True) as tgt,
    ):
        resolved = resolve_databases(config, src, tgt)
        problems = dangling_foreign_keys(tgt, resolved)
        touched = {p.target.name for p in resolved.tables.values() if p.mode != "none"}
        outside = outside_references(tgt, touched)
        problems.extend(dangling_outside(tgt, outside))
        links = sum(len(p.target.foreign_keys) for p in resolved.tables.values()) + len(outside)
        warnings = []
        for plan in resolved.tables.values():
            for link in plan.links:
                parent = resolved.tables.get(link.fk.referenced)
                if link.fk.declared and parent is not None and plan.mode != "none":
                    row = tgt.execute(count_dangling(plan.target, parent.target, link.fk)).fetchone()
                    links += 1
                    if row and row[0]:
                        warnings.append(
                            f"declared relation {describe_link(link.fk)}: {row[0]} rows reference "
                            "missing rows"
                        )
        sequences = 0
        for sequence, used_by in sorted(sequence_columns(tgt, resolved).items()):
            sequences += 1
            problem = _sequence_problem(tgt, sequence_bounds(tgt, sequence, used_by))
            if problem:
                problems.append(problem)
        problems.extend(_duplicated_inherited_rows(tgt, resolved))
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


def _sequence_problem(tgt: Connection, bounds: SequenceBounds) -> str | None:
    row = tgt.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(bounds.sequence))
    ).fetchone()
    assert row is not None
    last_value, is_called = row
    next_value = last_value + bounds.increment if is_called else last_value
    if bounds.hands_out_a_used_value(next_value):
        held = bounds.largest if bounds.increment > 0 else bounds.smallest
        return (
            f"sequence {bounds.sequence} would hand out {next_value}, a value {', '.join(bounds.columns)} "
            f"already hold (up to {held}); run the sampler again, or ALTER SEQUENCE {bounds.sequence} "
            f"RESTART WITH {bounds.restart_value()}"
        )
    return None


_INHERITANCE_CHILDREN_SQL = """
SELECT n.nspname, c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = %s::regclass AND NOT c.relispartition ORDER BY 1, 2
"""


def _duplicated_inherited_rows(tgt: Connection, resolved: Resolved) -> list[str]:
    """Rows of a parent table (classic INHERITS) that are also rows of one of its descendants.

    A parent read without ONLY returns its descendants' rows too; loading that into the parent
    duplicates every one of them. Compared as whole rows (the parent's columns), not by key: a
    ``copy: none`` child keeps development's own rows, whose ids may well equal the parent's. Each
    child is read with its own descendants (no ONLY), so a grandchild's rows count too.
    """
    problems = []
    for plan in resolved.tables.values():
        parent = plan.target
        if plan.mode == "none" or not parent.inherited or parent.partitioned:
            continue
        columns = [c.name for c in parent.columns]
        for schema, name in tgt.execute(_INHERITANCE_CHILDREN_SQL, (ident(parent.name).as_string(tgt),)):
            child = (str(schema), str(name))
            # As text: NULLs compare equal, and so do types without an equality operator (json, point).
            row = tgt.execute(
                sql.SQL(
                    "SELECT count(*) FROM {parent} AS p WHERE EXISTS "
                    "(SELECT 1 FROM {child} AS c WHERE ROW({c})::text = ROW({p})::text)"
                ).format(
                    parent=relation(parent),
                    child=ident(child),
                    c=sql.SQL(", ").join(sql.Identifier("c", k) for k in columns),
                    p=sql.SQL(", ").join(sql.Identifier("p", k) for k in columns),
                )
            ).fetchone()
            if row and row[0]:
                problems.append(
                    f"{display(parent.name)}: {row[0]} rows are also rows of its inheritance child "
                    f"{display(child)} or of its descendants (the parent was read without ONLY); run the "
                    "sampler again"
                )
    return problems


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
