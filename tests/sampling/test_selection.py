"""The source selection is linear in the foreign-key graph: a chain where table N references tables
N-1 and N-2 (a DAG whose paths double with every table) gives statements that name each table once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sampling import plan, run, verify
from sampling.catalog import Catalog, Column, ForeignKey, QualifiedName, Table
from sampling.config import parse_config
from sampling.model import resolve
from sampling.selection import SourceQueries, upward_links

Rows = Callable[[str, str], list[tuple[Any, ...]]]


def _column(name: str, not_null: bool) -> Column:
    return Column(name, "integer", "N", not_null, False, False, False, True, None)


def chain_catalog(tables: int) -> Catalog:
    """t1 .. tN; t<k> has ``a`` -> t<k-1> and (from t3 on) ``b`` -> t<k-2>, both nullable."""
    catalog: dict[QualifiedName, Table] = {}
    for k in range(1, tables + 1):
        name = ("public", f"t{k}")
        keys = tuple(
            ForeignKey(f"t{k}_{col}_fkey", name, (col,), ("public", f"t{k - back}"), ("id",))
            for col, back in (("a", 1), ("b", 2))
            if k - back >= 1
        )
        columns = (_column("id", True), _column("a", False), _column("b", False))
        catalog[name] = Table(name, columns, ("id",), False, keys)
    return Catalog(catalog)


def chain_config(follow: str) -> dict[str, Any]:
    return {"seed": 3, "roots": [{"table": "t1", "fraction": 0.5}], "tables": {"t1": {"follow": follow}}}


def last_statement(tables: int, follow: str = "any") -> str:
    catalog = chain_catalog(tables)
    resolved = resolve(parse_config(chain_config(follow)), catalog, catalog, same_database=False)
    query = SourceQueries(resolved).downward_rows(("public", f"t{tables}"))
    return query.as_string(None)


def test_a_statement_reads_each_table_once_and_grows_linearly() -> None:
    for follow in ("any", "all"):
        sizes = {}
        for tables in (10, 19, 38):
            statement = last_statement(tables, follow)
            # One scan per table above the last one, and the last one itself: the DAG is not unfolded.
            for k in range(1, tables + 1):
                assert statement.count(f'FROM "public"."t{k}" ') == 1, (follow, tables, k)
            sizes[tables] = len(statement)
        # Twice the tables, about twice the characters (names grow by a digit: a little more).
        assert sizes[38] / sizes[19] < 2.3 and sizes[19] / sizes[10] < 2.3, sizes


def test_a_capped_parent_a_partitioned_and_an_inherited_table_are_read_once() -> None:
    catalog = chain_catalog(4)
    tables = dict(catalog.tables)
    t2 = tables[("public", "t2")]
    tables[("public", "t2")] = Table(t2.name, t2.columns, t2.primary_key, True, t2.foreign_keys)
    t3 = tables[("public", "t3")]
    tables[("public", "t3")] = Table(
        t3.name, t3.columns, t3.primary_key, False, t3.foreign_keys, inherited=True
    )
    catalog = Catalog(tables)
    config = chain_config("any")
    config["tables"]["t3"] = {"cap": {"per": ["a"], "max": 2}}
    resolved = resolve(parse_config(config), catalog, catalog, same_database=False)
    statement = SourceQueries(resolved).downward_rows(("public", "t4")).as_string(None)
    assert statement.count('FROM "public"."t2" ') == 1  # partitioned: read whole, never ONLY
    assert 'FROM ONLY "public"."t2"' not in statement
    assert statement.count('FROM ONLY "public"."t3" ') == 1  # inheritance children: ONLY
    assert statement.count("row_number() OVER") == 1


def _chain_sql(tables: int) -> str:
    """The chain as DDL and data: 100 rows per table, references spread so samples mix."""
    parts = []
    for k in range(1, tables + 1):
        a = f" REFERENCES t{k - 1}" if k >= 2 else ""
        b = f" REFERENCES t{k - 2}" if k >= 3 else ""
        parts.append(f"CREATE TABLE t{k} (id int PRIMARY KEY, a int{a}, b int{b});")
    parts.append("SET session_replication_role = replica;")
    for k in range(1, tables + 1):
        a = "1 + (g * 7) % 100" if k >= 2 else "NULL::int"
        b = "1 + (g * 13) % 100" if k >= 3 else "NULL::int"
        parts.append(f"INSERT INTO t{k} SELECT g, {a}, {b} FROM generate_series(1, 100) g;")
    return "\n".join(parts)


def test_a_chain_of_19_tables_samples_as_the_old_semantics_say(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """Each table takes the rows whose a or b is a taken row (follow: any), worked out here in Python."""
    tables = 19
    source, target = make_database(), make_database()
    execute(source, _chain_sql(tables))
    execute(target, _chain_sql(tables).split("SET session_replication_role")[0])
    config = parse_config(
        {"seed": 3, "roots": [{"table": "t1", "fraction": 0.3}], "default_parent_policy": "drop"}
    )
    planned = plan(config, source, target)
    summary = run(config, source, target)

    taken = {1: {r[0] for r in rows(target, "SELECT id FROM t1")}}
    assert 10 <= len(taken[1]) <= 50  # 30% of 100
    for k in range(2, tables + 1):
        taken[k] = {
            g
            for g in range(1, 101)
            if 1 + (g * 7) % 100 in taken[k - 1] or (k >= 3 and 1 + (g * 13) % 100 in taken[k - 2])
        }
    for k in range(1, tables + 1):
        assert planned.tables[f"public.t{k}"].selected == len(taken[k]), k
    # drop: a row whose other reference is to an untaken row goes; what stays references taken rows.
    for k in range(2, tables + 1):
        loaded = {r[0] for r in rows(target, f"SELECT id FROM t{k}")}
        assert loaded <= taken[k]
    assert summary.total_rows > 0
    assert verify(config, source, target).ok


def test_statements_are_valid_sql_on_the_server(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """The capped and the follow-all forms parse and run (EXPLAIN is what run() checks first)."""
    source = make_database()
    execute(source, _chain_sql(6))
    catalog = chain_catalog(6)
    config = chain_config("all")
    config["tables"]["t4"] = {"cap": {"per": ["a"], "max": 1}, "follow": "all"}
    resolved = resolve(parse_config(config), catalog, catalog, same_database=False)
    queries = SourceQueries(resolved)
    for k in range(1, 7):
        name = ("public", f"t{k}")
        count = rows(source, queries.count_selected(name).as_string(None))[0][0]
        selected = rows(source, queries.downward_rows(name).as_string(None))
        assert len(selected) == count
    fk = resolved.tables[("public", "t5")].links[0].fk
    assert rows(source, queries.count_missing_parents(fk.referenced, [fk]).as_string(None))[0][0] >= 0


def test_parents_are_fetched_with_one_statement_per_table_linear_in_the_graph() -> None:
    """Rows referenced through include links come from the source with the selection: the statement
    for t1 reads every table's selection and every table's loaded rows once each."""
    sizes = {}
    for tables in (10, 19, 38):
        catalog = chain_catalog(tables)
        config = chain_config("any")
        config["roots"] = [{"table": f"t{tables}", "fraction": 0.5}]  # the sample starts at the bottom
        resolved = resolve(parse_config(config), catalog, catalog, same_database=False)
        statement = SourceQueries(resolved).parents_rows(("public", "t1"))
        assert statement is not None
        text = statement.as_string(None)
        for k in range(1, tables + 1):
            assert 1 <= text.count(f'FROM "public"."t{k}" ') <= 2, (tables, k)
        sizes[tables] = len(text)
    assert sizes[38] / sizes[19] < 2.3 and sizes[19] / sizes[10] < 2.3, sizes


def test_include_cycles_and_self_references_are_left_to_the_target_pass() -> None:
    catalog = chain_catalog(4)
    tables = dict(catalog.tables)
    t1 = tables[("public", "t1")]
    # t1.a -> t1 (a self-reference) and t1.b -> t2, which with t2.a -> t1 closes a cycle.
    keys = (
        ForeignKey("t1_a_fkey", t1.name, ("a",), t1.name, ("id",)),
        ForeignKey("t1_b_fkey", t1.name, ("b",), ("public", "t2"), ("id",)),
    )
    tables[t1.name] = Table(t1.name, t1.columns, t1.primary_key, False, keys)
    catalog = Catalog(tables)
    resolved = resolve(parse_config(chain_config("any")), catalog, catalog, same_database=False)
    upward = {
        parent[1]: sorted(link.fk.name for link in links)
        for parent, links in upward_links(resolved)[0].items()
    }
    assert upward == {"t1": ["t3_b_fkey"], "t2": ["t3_a_fkey", "t4_b_fkey"], "t3": ["t4_a_fkey"]}


def test_links_that_cannot_miss_a_parent_get_no_parents_statement() -> None:
    catalog = chain_catalog(3)

    def upward(follow: str) -> dict[str, list[str]]:
        config = chain_config(follow)
        config["tables"] = {"t2": {"follow": follow}, "t3": {"follow": follow}}
        resolved = resolve(parse_config(config), catalog, catalog, same_database=False)
        found = upward_links(resolved)[0]
        return {parent[1]: sorted(link.fk.name for link in links) for parent, links in found.items()}

    # follow all: a row is taken only when every set reference is to a taken row.
    assert upward("all") == {}
    # follow any: t3 taken for its t2 may reference an untaken t1 row; so t2 loads more than its
    # selection, and those t2 rows may reference untaken t1 rows too.
    assert upward("any") == {"t1": ["t2_a_fkey", "t3_b_fkey"], "t2": ["t3_a_fkey"]}
