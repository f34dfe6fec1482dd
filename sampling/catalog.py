"""What the sampler knows about a database, read from its PostgreSQL catalog.

Only ordinary and partitioned tables count; a partition is folded into its partitioned root
(a foreign key declared on a partition belongs to the root table for the sampler). Tables that
belong to an extension (``pg_depend`` deptype 'e', e.g. PostGIS's ``spatial_ref_sys``) are not
application tables and are left out. A table with classic-inheritance children (``INHERITS``) is
read and written with ``ONLY`` (see ``relation``): its rows are its own, the children's are theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

QualifiedName = tuple[str, str]


def display(name: QualifiedName) -> str:
    """``schema.table`` as shown to people (and used as JSON keys)."""
    return f"{name[0]}.{name[1]}"


def ident(name: QualifiedName) -> sql.Identifier:
    return sql.Identifier(*name)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "character varying(50)" or "public.mood"
    category: str  # pg_type.typcategory of the (domain's base) type: S string, N numeric, A array...
    not_null: bool
    has_default: bool
    generated: bool  # GENERATED ALWAYS AS (...) STORED/VIRTUAL: never copied
    identity: bool
    #: Binary COPY of this type carries no server-specific OID (built-in types, enums, arrays of built-ins).
    binary_portable: bool
    #: The sequence that fills the column, schema-qualified and quoted: serial / identity (owned), or the
    #: sequence of a DEFAULT that is exactly ``nextval('s')`` (not necessarily owned, perhaps shared).
    #: Integer columns only: a sequence used inside another expression (``'INV-' || nextval('s')``)
    #: fills no column the sampler can compare with it, and is left alone.
    sequence: str | None


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: QualifiedName
    columns: tuple[str, ...]
    referenced: QualifiedName
    referenced_columns: tuple[str, ...]
    #: SQL condition on the referencing row under which the link applies (declared polymorphic relations).
    when: str | None = None
    declared: bool = False  # from the configuration's ``relations``, not a constraint

    @property
    def key(self) -> str:
        """How the configuration names this foreign key: its columns, comma-separated."""
        return ",".join(self.columns)


@dataclass(frozen=True)
class Table:
    name: QualifiedName
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    partitioned: bool
    foreign_keys: tuple[ForeignKey, ...] = field(default=())
    #: Classic inheritance (INHERITS): other tables inherit from this one, so a plain scan would include
    #: their rows and a plain TRUNCATE would empty them.
    inherited: bool = False

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def copied_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.generated)


def relation(table: Table) -> sql.Composable:
    """The table in FROM / TRUNCATE / UPDATE / DELETE: ``ONLY`` when it has inheritance children.

    Never ``ONLY`` for a partitioned table: its rows live in its partitions.
    """
    if table.inherited and not table.partitioned:
        return sql.SQL("ONLY {}").format(ident(table.name))
    return ident(table.name)


@dataclass(frozen=True)
class Catalog:
    tables: dict[QualifiedName, Table]

    def get(self, name: QualifiedName) -> Table | None:
        return self.tables.get(name)


#: The application tables: not a partition, not a member of an extension.
_APPLICATION_TABLE = """c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s) AND left(c.relname, length(%(prefix)s)) = %(prefix)s
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid
                  AND e.deptype = 'e')"""

_TABLES_SQL = f"""
SELECT n.nspname, c.relname, c.relkind = 'p',
       c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_APPLICATION_TABLE}
ORDER BY 1, 2
"""

# Which columns a sequence fills, for the sampler: integer columns (a domain's base type counts) that own
# it (serial, identity) or whose DEFAULT is nextval() of it and nothing else. Comparing the rendered
# default with format('nextval(%L::regclass)') is exact: both render the name in the same session.
_INTEGER_TYPES = "('int2'::regtype, 'int4'::regtype, 'int8'::regtype)"
_PLAIN_NEXTVAL = "pg_get_expr(ad.adbin, ad.adrelid) = format('nextval(%%L::regclass)', s.oid::regclass)"

# The sequence of a column: the one it owns, else the one its DEFAULT calls (pg_depend records the
# default expression's dependency on the sequence).
_COLUMNS_SQL = f"""
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       base.typcategory, a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> '',
       CASE WHEN base.typcategory = 'A' THEN base.typelem < 16384
            ELSE base.oid < 16384 OR base.typtype = 'e' END,
       CASE WHEN base.oid IN {_INTEGER_TYPES} THEN coalesce(
           pg_get_serial_sequence(format('%%I.%%I', n.nspname, c.relname), a.attname),
           (SELECT format('%%I.%%I', sn.nspname, s.relname)
            FROM pg_attrdef ad
            JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                            AND d.refclassid = 'pg_class'::regclass
            JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
            JOIN pg_namespace sn ON sn.oid = s.relnamespace
            WHERE ad.adrelid = c.oid AND ad.adnum = a.attnum AND {_PLAIN_NEXTVAL}))
       END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s) AND left(c.relname, length(%(prefix)s)) = %(prefix)s
ORDER BY n.nspname, c.relname, a.attnum
"""

# Foreign keys of tables and of partitions (mapped to their partitioned root); clones that
# PostgreSQL makes for each partition of a partitioned table's key (conparentid <> 0) are skipped.
_KEYS_SQL = """
WITH keys AS (
    SELECT con.conname, con.contype, con.conkey, con.confkey, con.conrelid, con.confrelid,
           coalesce(pg_partition_root(con.conrelid), con.conrelid) AS table_oid,
           coalesce(pg_partition_root(con.confrelid), con.confrelid) AS referenced_oid
    FROM pg_constraint con
    WHERE con.contype IN ('f', 'p') AND con.conparentid = 0
)
SELECT k.contype, k.conname, tn.nspname, t.relname,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num ORDER BY u.ord),
       rn.nspname, r.relname,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num ORDER BY u.ord)
FROM keys k
JOIN pg_class t ON t.oid = k.table_oid JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_class r ON r.oid = k.referenced_oid LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE tn.nspname = ANY(%(schemas)s) AND left(t.relname, length(%(prefix)s)) = %(prefix)s
ORDER BY tn.nspname, t.relname, k.conname
"""


def _names(value: object) -> list[str]:
    assert isinstance(value, list)
    return [str(v) for v in value]


def read_catalog(conn: psycopg.Connection[tuple[object, ...]], schemas: list[str], prefix: str) -> Catalog:
    """Tables, columns, primary keys and foreign keys of ``schemas`` whose names start with ``prefix``."""
    params = {"schemas": schemas, "prefix": prefix}
    partitioned: dict[QualifiedName, bool] = {}
    inherited: set[QualifiedName] = set()
    for schema, table, is_partitioned, has_children in conn.execute(_TABLES_SQL, params).fetchall():
        partitioned[(str(schema), str(table))] = bool(is_partitioned)
        if has_children:
            inherited.add((str(schema), str(table)))
    columns: dict[QualifiedName, list[Column]] = {name: [] for name in partitioned}
    for row in conn.execute(_COLUMNS_SQL, params).fetchall():
        schema, table, *rest = row
        name = (str(schema), str(table))
        if name in columns:
            col, typ, cat, notnull, hasdef, gen, ident_, portable, seq = rest
            columns[name].append(
                Column(
                    str(col),
                    str(typ),
                    str(cat),
                    bool(notnull),
                    bool(hasdef),
                    bool(gen),
                    bool(ident_),
                    bool(portable),
                    None if seq is None else str(seq),
                )
            )
    primary: dict[QualifiedName, tuple[str, ...]] = {}
    foreign: dict[QualifiedName, dict[tuple[object, ...], ForeignKey]] = {name: {} for name in partitioned}
    for kind, conname, schema, table, cols, rschema, rtable, rcols in conn.execute(_KEYS_SQL, params):
        name = (str(schema), str(table))
        if name not in partitioned:
            continue
        if kind == "p":
            primary[name] = tuple(_names(cols))
            continue
        fk = ForeignKey(
            str(conname), name, tuple(_names(cols)), (str(rschema), str(rtable)), tuple(_names(rcols))
        )
        # A key declared on every partition separately is one link for the sampler.
        foreign[name].setdefault((fk.columns, fk.referenced, fk.referenced_columns), fk)
    tables = {
        name: Table(
            name,
            tuple(columns[name]),
            primary.get(name, ()),
            partitioned[name],
            tuple(foreign[name].values()),
            name in inherited,
        )
        for name in partitioned
    }
    return Catalog(tables)


# Every column of the database a sequence fills (by the rule of _INTEGER_TYPES / _PLAIN_NEXTVAL), not
# only the configured tables': a development-only table or another schema may share the sequence. A
# partition's column is counted as its partitioned root's (the root's scan covers it).
_SEQUENCE_USERS_SQL = f"""
SELECT DISTINCT q.name, rn.nspname, r.relname, a.attname
FROM unnest(%(sequences)s::text[]) AS q(name)
JOIN pg_class s ON s.oid = to_regclass(q.name) AND s.relkind = 'S'
JOIN LATERAL (
    SELECT ad.adrelid AS relid, ad.adnum AS attnum
    FROM pg_depend d JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid AND {_PLAIN_NEXTVAL}
    UNION
    SELECT d.refobjid, d.refobjsubid
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
) used ON true
JOIN pg_class c ON c.oid = used.relid AND c.relkind IN ('r', 'p')
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = used.attnum AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END IN {_INTEGER_TYPES}
ORDER BY 1, 2, 3, 4
"""


def sequence_users(
    conn: psycopg.Connection[tuple[object, ...]], sequences: list[str]
) -> dict[str, list[tuple[QualifiedName, str]]]:
    """Every (table, column) of the database each of ``sequences`` fills, whatever the configuration says."""
    users: dict[str, list[tuple[QualifiedName, str]]] = {name: [] for name in sequences}
    for name, schema, table, column in conn.execute(_SEQUENCE_USERS_SQL, {"sequences": sequences}):
        users[str(name)].append(((str(schema), str(table)), str(column)))
    return users


@dataclass(frozen=True)
class OutsideReference:
    """A foreign key of a table the run does not replace, to a table it replaces (or to another such table).

    Examples: a development-only table a migration added, a table of a schema left out of ``schemas``,
    a ``copy: none`` table. Its tables carry names and flags only (no columns).
    """

    fk: ForeignKey
    table: Table
    referenced: Table


# Every foreign key of the database, partitions mapped to their roots (as in _KEYS_SQL), with what
# relation() needs to address both tables.
_ALL_FOREIGN_KEYS_SQL = """
WITH keys AS (
    SELECT con.conname, con.conkey, con.confkey, con.conrelid, con.confrelid,
           coalesce(pg_partition_root(con.conrelid), con.conrelid) AS table_oid,
           coalesce(pg_partition_root(con.confrelid), con.confrelid) AS referenced_oid
    FROM pg_constraint con
    WHERE con.contype = 'f' AND con.conparentid = 0
)
SELECT k.conname, tn.nspname, t.relname, t.relkind = 'p',
       EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = t.oid) AND t.relkind = 'r',
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num ORDER BY u.ord),
       rn.nspname, r.relname, r.relkind = 'p',
       EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = r.oid) AND r.relkind = 'r',
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num ORDER BY u.ord)
FROM keys k
JOIN pg_class t ON t.oid = k.table_oid JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_class r ON r.oid = k.referenced_oid JOIN pg_namespace rn ON rn.oid = r.relnamespace
ORDER BY 2, 3, 1
"""


def outside_references(
    conn: psycopg.Connection[tuple[object, ...]], replaced: set[QualifiedName]
) -> list[OutsideReference]:
    """Foreign keys that reach the ``replaced`` tables from tables the run leaves alone, transitively.

    Such a table makes TRUNCATE fail, and its rows would dangle once the rows they reference are
    gone; the tables referencing *it* are affected in turn.
    """
    every: dict[tuple[object, ...], OutsideReference] = {}
    for conname, ts, tn, tp, ti, cols, rs, rn, rp, ri, rcols in conn.execute(_ALL_FOREIGN_KEYS_SQL):
        table = Table((str(ts), str(tn)), (), (), bool(tp), (), bool(ti))
        referenced = Table((str(rs), str(rn)), (), (), bool(rp), (), bool(ri))
        fk = ForeignKey(str(conname), table.name, tuple(_names(cols)), referenced.name, tuple(_names(rcols)))
        every.setdefault(
            (fk.table, fk.columns, fk.referenced, fk.referenced_columns),
            OutsideReference(fk, table, referenced),
        )
    reached = set(replaced)
    found: dict[tuple[object, ...], OutsideReference] = {}
    changed = True
    while changed:
        changed = False
        for key, ref in every.items():
            if key not in found and ref.fk.referenced in reached and ref.fk.table not in replaced:
                found[key] = ref
                changed = True
                reached.add(ref.fk.table)
    return sorted(found.values(), key=lambda ref: (ref.fk.table, ref.fk.columns, ref.fk.referenced))


def server_identity(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[str, int, str]:
    """(postmaster start time, backend pid, database): lets the sampler tell if two connections share a server."""
    row = conn.execute(
        "SELECT pg_postmaster_start_time()::text, pg_backend_pid(), current_database()"
    ).fetchone()
    assert row is not None
    return str(row[0]), int(str(row[1])), str(row[2])


def sees_backend(conn: psycopg.Connection[tuple[object, ...]], identity: tuple[str, int, str]) -> bool:
    """Whether ``conn`` is on the same server as the backend described by ``identity``."""
    start, pid, _database = identity
    row = conn.execute(
        "SELECT pg_postmaster_start_time()::text = %s AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)",
        (start, pid),
    ).fetchone()
    return bool(row and row[0])
