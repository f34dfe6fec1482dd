"""SQL that selects each table's rows on the source and repairs links on the target.

Source side (read-only): a table's *downward* selection is a query over its own rows — roots by
a seeded hash of the primary key, children by semi-joins on the selected keys of the parents they
follow.  Each statement computes every ancestor's selection once, as a MATERIALIZED CTE that all
its children read (``Statement``): the foreign-key graph is never unfolded into a tree, so a
statement's size and work grow linearly with the tables above it.  Nothing is written on the
source (it may be a read-only role or a standby); PostgreSQL hashes the key sets.

Target side (inside the load transaction): anti-joins find references whose parent row is not
loaded yet; the sampler then pulls those parents (include), clears the reference (nullify) or
deletes the referencing row (drop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from psycopg import sql

from sampling.anonymise import rule_expression
from sampling.catalog import ForeignKey, QualifiedName, Table, display, relation
from sampling.model import Link, Resolved, TablePlan

#: 2**52: a 13-hex-digit prefix of an md5 digest divided by it is uniform in [0, 1).
_UNIT = 4503599627370496


class _KeySet:
    """One table's selected rows as a CTE of one statement: written once, read by every child."""

    def __init__(self, cte: sql.Identifier, body: Callable[[sql.Composable], sql.Composed]) -> None:
        self.cte = cte
        self.body = body  # the SELECT, given its select list
        self.columns: dict[str, None] = {}  # an ordered set: the columns some reader of this CTE needs
        self.feeds: list[_KeySet] = []  # CTEs this one's body reads with its own select list


class Statement:
    """The CTEs one source statement needs: each table's selection at most once, parents first.

    A child reads its parent's selected keys from the parent's CTE (``MATERIALIZED``: computed
    once per statement however many children read it), so a statement holds one CTE per ancestor
    and its size and work grow with the number of tables, not with the paths between them.
    """

    def __init__(self, queries: SourceQueries) -> None:
        self.queries = queries
        # In creation order, which puts every CTE after the CTEs its body reads.
        self.key_sets: dict[tuple[str, QualifiedName], _KeySet] = {}

    def key_set(self, name: QualifiedName, columns: Iterable[str]) -> sql.Identifier:
        """The CTE holding ``columns`` of the selected rows of ``name`` (created with its parents' on first use)."""
        entry = self.key_sets.get(("sel", name))
        if entry is None:
            plan = self.queries.resolved.plan_for(name)
            # Building the body creates the parents' CTEs first, so they come before this one.
            entry = self._add("sel", name, self.queries.selected_rows(plan, self.queries.alias(), self))
        entry.columns.update(dict.fromkeys(columns))
        return entry.cte

    def final_set(self, name: QualifiedName, columns: Iterable[str]) -> sql.Identifier:
        """The CTE holding ``columns`` of the rows of ``name`` the run loads: its selection and the
        rows that loaded rows of other tables reference through ``include`` links (``upward``)."""
        links = self.queries.upward.get(name, [])
        if not links:
            return self.key_set(name, columns)
        entry = self.key_sets.get(("all", name))
        if entry is None:
            self.key_set(name, ())
            selected = self.key_sets[("sel", name)]
            alias = self.queries.alias()
            referenced = self.queries.referenced(name, alias, self)
            table = self.queries.table(name)

            def body(cols: sql.Composable) -> sql.Composed:
                return sql.SQL(
                    "SELECT {cols} FROM {sel} UNION ALL SELECT {cols} FROM {table} AS {a} WHERE {refs}"
                ).format(cols=cols, sel=selected.cte, table=table, a=sql.Identifier(alias), refs=referenced)

            entry = self._add("all", name, body)
            entry.feeds.append(selected)
        entry.columns.update(dict.fromkeys(columns))
        return entry.cte

    def _add(self, kind: str, name: QualifiedName, body: Callable[[sql.Composable], sql.Composed]) -> _KeySet:
        entry = _KeySet(sql.Identifier(f"{kind}_{len(self.key_sets) + 1}_{name[1]}"[:63]), body)
        self.key_sets[(kind, name)] = entry
        return entry

    def render(self, main: sql.Composable) -> sql.Composed:
        """``WITH <every CTE> main``, or ``main`` alone when it reads no selection."""
        if not self.key_sets:
            return sql.Composed([main])
        for entry in reversed(self.key_sets.values()):
            for fed in entry.feeds:
                fed.columns.update(entry.columns)
        ctes = []
        for entry in self.key_sets.values():
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in entry.columns)
            ctes.append(sql.SQL("{} AS MATERIALIZED ({})").format(entry.cte, entry.body(columns)))
        return sql.SQL("WITH {} {}").format(sql.SQL(", ").join(ctes), main)


def upward_links(resolved: Resolved) -> tuple[dict[QualifiedName, list[Link]], set[Link]]:
    """Per sample table, the ``include`` links from loaded tables whose rows it must add, cycles left
    out; and the links that need nothing added (every parent they reference is selected).

    The run fetches a table's referenced parents with its selection, on the source
    (``SourceQueries.parents_rows``); the links left out (self-references, cycles of include
    links) are completed on the target afterwards, by the anti-join fixed point.
    """
    tables = resolved.tables
    edges: dict[QualifiedName, list[Link]] = {}  # child -> its include links to sample tables
    for name, plan in tables.items():
        if not plan.loads:
            continue
        for link in plan.links:
            parent = tables.get(link.fk.referenced)
            if (
                link.policy == "include"
                and parent is not None
                and parent.mode == "sample"
                and parent.source.name != name
            ):
                edges.setdefault(name, []).append(link)

    def reaches(start: QualifiedName, goal: QualifiedName) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for link in edges.get(todo.pop(), []):
                if link.fk.referenced == goal:
                    return True
                if link.fk.referenced not in seen:
                    seen.add(link.fk.referenced)
                    todo.append(link.fk.referenced)
        return False

    kept = [
        link
        for child, links in sorted(edges.items())
        for link in links
        if not reaches(link.fk.referenced, child)
    ]
    # A link along which no loaded row can reference an unselected parent needs no statement: the
    # child loads only its selection (nothing is added to it upward) and takes a row only when
    # that reference is to a selected parent or unset (follow: all, or the one link it follows).
    closed: set[Link] = set()
    changed = True
    while changed:
        changed = False
        targets = {link.fk.referenced for link in kept}
        for link in list(kept):
            child = link.fk.table
            followed = resolved.followed_links(child)
            if (
                link in followed
                and (tables[child].follow == "all" or len(followed) == 1)
                and child not in targets
            ):
                kept.remove(link)
                closed.add(link)
                changed = True
    upward: dict[QualifiedName, list[Link]] = {}
    for link in kept:
        upward.setdefault(link.fk.referenced, []).append(link)
    return upward, closed


class SourceQueries:
    """Builds the SELECTs run on the source for one resolved configuration."""

    def __init__(self, resolved: Resolved) -> None:
        self.resolved = resolved
        self.seed = resolved.config.seed
        self.upward, closed = upward_links(resolved)
        #: Links whose referenced rows the first pass loads in full (``parents_rows``, or nothing to add):
        #: the target's first round of anti-joins can skip them.
        self.settled = closed | {
            link
            for parent, links in self.upward.items()
            if resolved.plan_for(parent).source.primary_key
            for link in links
        }
        self._aliases = 0

    def table(self, name: QualifiedName) -> sql.Composable:
        """``name`` in FROM: ``ONLY`` when it has inheritance children, so a parent's scan never
        brings its children's rows (``catalog.relation``)."""
        return relation(self.resolved.plan_for(name).source)

    def referenced(self, name: QualifiedName, alias: str, statement: Statement) -> sql.Composed:
        """Row ``alias`` of ``name`` is referenced, through an upward link, by a row the run loads."""
        terms = []
        for link in self.upward[name]:
            fk = link.fk
            child_plan = self.resolved.plan_for(fk.table)
            # A declared relation's ``when`` may read any column of the child.
            wanted = [c.name for c in child_plan.source.columns] if fk.when else list(fk.columns)
            inner = self.alias()
            terms.append(
                sql.SQL("({cols}) IN (SELECT {refs} FROM {rows} AS {i} WHERE {engaged})").format(
                    cols=sql.SQL(", ").join(sql.Identifier(alias, c) for c in fk.referenced_columns),
                    refs=sql.SQL(", ").join(sql.Identifier(inner, c) for c in fk.columns),
                    rows=statement.final_set(fk.table, wanted),
                    i=sql.Identifier(inner),
                    engaged=self._engaged(fk, inner),
                )
            )
        return sql.SQL("({})").format(sql.SQL(" OR ").join(terms))

    def parents_rows(self, name: QualifiedName) -> sql.Composed | None:
        """SELECT of the anonymised rows of ``name`` that loaded rows reference through upward links,
        outside its own selection; None when it has no such link or no primary key to tell them by."""
        plan = self.resolved.plan_for(name)
        if not self.upward.get(name) or not plan.source.primary_key:
            return None
        statement = Statement(self)
        key = plan.source.primary_key
        selected = statement.key_set(name, key)
        return statement.render(
            sql.SQL(
                "SELECT {cols} FROM {table} AS t WHERE {refs} AND NOT EXISTS (SELECT 1 FROM {sel} AS s WHERE {same})"
            ).format(
                cols=self.output_columns(plan, "t"),
                table=self.table(name),
                refs=self.referenced(name, "t", statement),
                sel=selected,
                same=sql.SQL(" AND ").join(sql.SQL("s.{c} = t.{c}").format(c=sql.Identifier(c)) for c in key),
            )
        )

    def alias(self) -> str:
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

    def _predicate(self, plan: TablePlan, alias: str, statement: Statement) -> sql.Composed:
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
            terms = [self._followed(link.fk, alias, statement) for link in links]
            return sql.SQL("({})").format(sql.SQL(" OR ").join(terms))
        # all: every reference that is set is to a taken row, and at least one reference is set.
        # A NOT NULL reference is always set: a plain IN, which PostgreSQL turns into a hash semi-join.
        always = [link for link in links if self._always_set(plan, link.fk)]
        sometimes = [link for link in links if link not in always]
        every = [self._in_selection(link.fk, alias, statement) for link in always] + [
            sql.SQL("(NOT {} OR {})").format(
                self._engaged(link.fk, alias), self._in_selection(link.fk, alias, statement)
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

    def _followed(self, fk: ForeignKey, alias: str, statement: Statement) -> sql.Composed:
        term = self._in_selection(fk, alias, statement)
        if fk.when:
            return sql.SQL("(({}) AND {})").format(sql.SQL(fk.when), term)
        return term

    def _in_selection(self, fk: ForeignKey, alias: str, statement: Statement) -> sql.Composed:
        """The row's reference ``fk`` points at a selected row of the parent (read from the parent's CTE)."""
        inner = self.alias()
        return sql.SQL("({cols}) IN (SELECT {refs} FROM {keys} AS {inner})").format(
            cols=sql.SQL(", ").join(sql.Identifier(alias, c) for c in fk.columns),
            refs=sql.SQL(", ").join(sql.Identifier(inner, c) for c in fk.referenced_columns),
            keys=statement.key_set(fk.referenced, fk.referenced_columns),
            inner=sql.Identifier(inner),
        )

    def selected_rows(
        self, plan: TablePlan, alias: str, statement: Statement
    ) -> Callable[[sql.Composable], sql.Composed]:
        """``SELECT <list> FROM`` the rows of ``plan`` the downward pass takes, for a select list over ``alias``.

        Parents' selections become CTEs of ``statement``.  A table with inheritance children is
        read ``FROM ONLY`` (``table()``).
        """
        table = self.table(plan.source.name)
        if plan.cap_max is None:
            predicate = self._predicate(plan, alias, statement)
            return lambda columns: sql.SQL("SELECT {cols} FROM {table} AS {a} WHERE {pred}").format(
                cols=columns, table=table, a=sql.Identifier(alias), pred=predicate
            )
        # Deterministic cap: the rows with the smallest seeded hash in each group.  The outer
        # query names the ranked rows ``alias`` again, so the select list reads the same.
        inner = self.alias()
        ranked = sql.SQL(
            "(SELECT {i}.*, row_number() OVER (PARTITION BY {per} ORDER BY {h}) AS __sampling_rank "
            "FROM {table} AS {i} WHERE {pred})"
        ).format(
            i=sql.Identifier(inner),
            per=sql.SQL(", ").join(sql.Identifier(inner, c) for c in plan.cap_per),
            h=self.unit_hash(plan.source, inner),
            table=table,
            pred=self._predicate(plan, inner, statement),
        )
        return lambda columns: sql.SQL(
            "SELECT {cols} FROM {ranked} AS {a} WHERE __sampling_rank <= {n}"
        ).format(cols=columns, ranked=ranked, a=sql.Identifier(alias), n=sql.Literal(plan.cap_max))

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
        statement = Statement(self)
        rows = self.selected_rows(plan, "t", statement)
        return statement.render(rows(self.output_columns(plan, "t")))

    def count_selected(self, name: QualifiedName) -> sql.Composed:
        """SELECT count(*) of the rows of ``name`` the downward pass takes."""
        statement = Statement(self)
        rows = self.selected_rows(self.resolved.plan_for(name), "t", statement)
        return statement.render(sql.SQL("SELECT count(*) FROM ({}) AS n").format(rows(sql.SQL("1"))))

    def count_missing_parents(self, parent: QualifiedName, fks: list[ForeignKey]) -> sql.Composed:
        """SELECT count(*) of the rows of ``parent`` that downward rows reference (through any of
        ``fks``) but the parent's own downward rows lack: each row once, however many keys point at it."""
        statement = Statement(self)
        referenced = sorted({c for fk in fks for c in fk.referenced_columns})
        taken = statement.key_set(parent, referenced)

        def same_key(alias: str, fk: ForeignKey, columns: tuple[str, ...]) -> sql.Composed:
            return sql.SQL(" AND ").join(
                sql.SQL("{} = p.{}").format(sql.Identifier(alias, c), sql.Identifier(r))
                for c, r in zip(columns, fk.referenced_columns, strict=True)
            )

        terms = []
        for fk in fks:
            child_plan = self.resolved.plan_for(fk.table)
            # Every column when a declared relation's ``when`` may read any of them.
            wanted = [c.name for c in child_plan.source.columns] if fk.when else list(fk.columns)
            when = sql.SQL(" AND ({})").format(sql.SQL(fk.when)) if fk.when else sql.SQL("")
            terms.append(
                sql.SQL(
                    "(EXISTS (SELECT 1 FROM {child} AS c WHERE {referenced}{when}) "
                    "AND NOT EXISTS (SELECT 1 FROM {taken} AS d WHERE {taken_match}))"
                ).format(
                    child=statement.key_set(fk.table, wanted),
                    referenced=same_key("c", fk, fk.columns),
                    when=when,
                    taken=taken,
                    taken_match=same_key("d", fk, fk.referenced_columns),
                )
            )
        return statement.render(
            sql.SQL("SELECT count(*) FROM {parent} AS p WHERE {terms}").format(
                parent=self.table(parent), terms=sql.SQL(" OR ").join(terms)
            )
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
