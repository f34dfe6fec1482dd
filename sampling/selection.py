"""SQL that selects each table's rows on the source and repairs links on the target.

Source side (read-only): a table's *downward* selection is a subquery over its own rows —
roots by a seeded hash of the primary key, children by semi-joins on the selections of the
parents they follow.  Nothing is materialised on the source; PostgreSQL hashes the key sets.

Target side (inside the load transaction): anti-joins find references whose parent row is not
loaded yet; the sampler then pulls those parents (include), clears the reference (nullify) or
deletes the referencing row (drop).
"""

from __future__ import annotations

from psycopg import sql

from sampling.anonymise import rule_expression
from sampling.catalog import ForeignKey, QualifiedName, Table, display, relation
from sampling.model import Resolved, TablePlan

#: 2**52: a 13-hex-digit prefix of an md5 digest divided by it is uniform in [0, 1).
_UNIT = 4503599627370496


class SourceQueries:
    """Builds the SELECTs run on the source for one resolved configuration."""

    def __init__(self, resolved: Resolved) -> None:
        self.resolved = resolved
        self.seed = resolved.config.seed
        self._aliases = 0

    def _alias(self) -> str:
        self._aliases += 1
        return f"s{self._aliases}"

    def unit_hash(self, table: Table, alias: str) -> sql.Composed:
        """A number in [0, 1) fixed by (seed, row key): same seed and data, same sample, on any machine.

        md5 rather than hashtext*: its value does not depend on the server version or platform.
        """
        if len(table.primary_key) == 1:
            key: sql.Composable = sql.SQL("({})::text").format(sql.Identifier(alias, table.primary_key[0]))
        elif table.primary_key:
            key = sql.SQL("ROW({})::text").format(
                sql.SQL(", ").join(sql.Identifier(alias, c) for c in table.primary_key)
            )
        else:  # no primary key: the whole row is the key
            key = sql.SQL("{}::text").format(sql.Identifier(alias))
        return sql.SQL(
            "(('x' || substr(md5({seed} || ':' || {key}), 1, 13))::bit(52)::bigint::float8 / {unit})"
        ).format(seed=sql.Literal(str(self.seed)), key=key, unit=sql.Literal(_UNIT))

    def _predicate(self, plan: TablePlan, alias: str) -> sql.Composed:
        if plan.mode == "all":
            return sql.Composed([sql.SQL("true")])
        if plan.root is not None:
            parts: list[sql.Composable] = [
                sql.SQL("{} < {}").format(self.unit_hash(plan.source, alias), sql.Literal(plan.root.fraction))
            ]
            if plan.root.where:
                parts.append(sql.SQL("({})").format(sql.SQL(plan.root.where)))
            return sql.SQL(" AND ").join(parts)
        links = self.resolved.followed_links(plan.source.name)
        if not links:
            return sql.Composed([sql.SQL("false")])
        if plan.follow == "any":
            terms = [self._followed(link.fk, alias) for link in links]
            return sql.SQL("({})").format(sql.SQL(" OR ").join(terms))
        # all: every reference that is set is to a taken row, and at least one reference is set.
        # A NOT NULL reference is always set: a plain IN, which PostgreSQL turns into a hash semi-join.
        always = [link for link in links if self._always_set(plan, link.fk)]
        sometimes = [link for link in links if link not in always]
        every = [self._in_selection(link.fk, alias) for link in always] + [
            sql.SQL("(NOT {} OR {})").format(
                self._engaged(link.fk, alias), self._in_selection(link.fk, alias)
            )
            for link in sometimes
        ]
        if not always:
            some = [self._engaged(link.fk, alias) for link in sometimes]
            every.append(sql.SQL("({})").format(sql.SQL(" OR ").join(some)))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(every))

    @staticmethod
    def _always_set(plan: TablePlan, fk: ForeignKey) -> bool:
        return fk.when is None and all(
            (column := plan.source.column(name)) is not None and column.not_null for name in fk.columns
        )

    def _engaged(self, fk: ForeignKey, alias: str) -> sql.Composed:
        """The row's reference ``fk`` is set (and, for a declared relation, applies)."""
        parts: list[sql.Composable] = [
            sql.SQL("{} IS NOT NULL").format(sql.Identifier(alias, c)) for c in fk.columns
        ]
        if fk.when:
            parts.append(sql.SQL("({})").format(sql.SQL(fk.when)))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))

    def _followed(self, fk: ForeignKey, alias: str) -> sql.Composed:
        term = self._in_selection(fk, alias)
        if fk.when:
            return sql.SQL("(({}) AND {})").format(sql.SQL(fk.when), term)
        return term

    def _in_selection(self, fk: ForeignKey, alias: str) -> sql.Composed:
        inner = self._alias()
        return sql.SQL("({cols}) IN (SELECT {refs} FROM {sel} AS {inner})").format(
            cols=sql.SQL(", ").join(sql.Identifier(alias, c) for c in fk.columns),
            refs=sql.SQL(", ").join(sql.Identifier(inner, c) for c in fk.referenced_columns),
            sel=self.selection(fk.referenced),
            inner=sql.Identifier(inner),
        )

    def selection(self, name: QualifiedName) -> sql.Composed:
        """A subquery with every column of the rows of ``name`` the downward pass takes."""
        plan = self.resolved.plan_for(name)
        alias = self._alias()
        rows = sql.SQL("SELECT * FROM {table} AS {a} WHERE {pred}").format(
            table=relation(plan.source), a=sql.Identifier(alias), pred=self._predicate(plan, alias)
        )
        if plan.cap_max is None:
            return sql.SQL("({})").format(rows)
        # Deterministic cap: the rows with the smallest seeded hash in each group.
        ranked = self._alias()
        return sql.SQL(
            "(SELECT * FROM (SELECT {a}.*, row_number() OVER (PARTITION BY {per} ORDER BY {h}) AS __sampling_rank "
            "FROM {table} AS {a} WHERE {pred}) AS {r} WHERE __sampling_rank <= {n})"
        ).format(
            a=sql.Identifier(alias),
            per=sql.SQL(", ").join(sql.Identifier(alias, c) for c in plan.cap_per),
            h=self.unit_hash(plan.source, alias),
            table=relation(plan.source),
            pred=self._predicate(plan, alias),
            r=sql.Identifier(ranked),
            n=sql.Literal(plan.cap_max),
        )

    def output_columns(self, plan: TablePlan, alias: str) -> sql.Composed:
        """The copied columns, anonymised, in the order of ``plan.columns``."""
        exprs: list[sql.Composable] = []
        for name in plan.columns:
            column = plan.source.column(name)
            assert column is not None
            rule = plan.rules.get(name)
            if rule is None:
                exprs.append(sql.Composed([sql.Identifier(alias, name)]))
            else:
                where = f"{self.resolved.config.source_file}: tables.{plan.logical}.columns.{name}"
                exprs.append(
                    rule_expression(
                        rule,
                        column,
                        plan.source,
                        alias,
                        self.resolved.config.anonymisation.email_domain,
                        where,
                    )
                )
        return sql.SQL(", ").join(exprs)

    def downward_rows(self, name: QualifiedName) -> sql.Composed:
        """SELECT of the anonymised rows of ``name`` taken by roots and followed links."""
        plan = self.resolved.plan_for(name)
        return sql.SQL("SELECT {cols} FROM {sel} AS t").format(
            cols=self.output_columns(plan, "t"), sel=self.selection(name)
        )

    def rows_by_keys(
        self, name: QualifiedName, key_columns: tuple[str, ...], keys: list[tuple[str, ...]]
    ) -> sql.Composed:
        """SELECT of the anonymised rows of ``name`` whose ``key_columns`` (as text) are among ``keys``."""
        plan = self.resolved.plan_for(name)
        arrays = [
            sql.SQL("{}::text[]").format(sql.Literal([k[i] for k in keys])) for i in range(len(key_columns))
        ]
        names = [sql.Identifier(f"k{i}") for i in range(len(key_columns))]
        casts = []
        for i, col in enumerate(key_columns):
            column = plan.source.column(col)
            assert column is not None
            casts.append(sql.SQL("k.{}::{}").format(names[i], sql.SQL(column.type)))
        return sql.SQL(
            "SELECT {cols} FROM {table} AS t WHERE ({keycols}) IN (SELECT {casts} FROM unnest({arrays}) AS k({names}))"
        ).format(
            cols=self.output_columns(plan, "t"),
            table=relation(plan.source),
            keycols=sql.SQL(", ").join(sql.Identifier("t", c) for c in key_columns),
            casts=sql.SQL(", ").join(casts),
            arrays=sql.SQL(", ").join(arrays),
            names=sql.SQL(", ").join(names),
        )


def dangling(child: Table, parent: Table, fk: ForeignKey) -> sql.Composed:
    """Condition on row ``c`` of ``child``: its reference ``fk`` is set but no row of ``parent`` matches."""
    not_null = [sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in fk.columns]
    match = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(col))
        for col, r in zip(fk.columns, fk.referenced_columns, strict=True)
    )
    parts = [
        *not_null,
        sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(relation(parent), match),
    ]
    if fk.when:
        parts.append(sql.SQL("({})").format(sql.SQL(fk.when)))
    return sql.SQL(" AND ").join(parts)


def missing_parent_keys(child: Table, parent: Table, fk: ForeignKey) -> sql.Composed:
    """Distinct referenced keys (as text) that rows of ``child`` hold and ``parent`` lacks."""
    return sql.SQL("SELECT DISTINCT {cols} FROM {child} AS c WHERE {cond}").format(
        cols=sql.SQL(", ").join(sql.SQL("c.{}::text").format(sql.Identifier(col)) for col in fk.columns),
        child=relation(child),
        cond=dangling(child, parent, fk),
    )


def nullify_dangling(child: Table, parent: Table, fk: ForeignKey) -> sql.Composed:
    return sql.SQL("UPDATE {child} AS c SET {sets} WHERE {cond}").format(
        child=relation(child),
        sets=sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(col)) for col in fk.columns),
        cond=dangling(child, parent, fk),
    )


def delete_dangling(child: Table, parent: Table, fk: ForeignKey) -> sql.Composed:
    return sql.SQL("DELETE FROM {child} AS c WHERE {cond}").format(
        child=relation(child), cond=dangling(child, parent, fk)
    )


def count_dangling(child: Table, parent: Table, fk: ForeignKey) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {child} AS c WHERE {cond}").format(
        child=relation(child), cond=dangling(child, parent, fk)
    )


def describe_link(fk: ForeignKey) -> str:
    return f"{display(fk.table)}({fk.key}) -> {display(fk.referenced)}({','.join(fk.referenced_columns)})"
