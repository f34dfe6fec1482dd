"""Secondary indexes of the target tables, dropped for the load and rebuilt before COMMIT.

Inside the load transaction the target tables are already truncated and locked (ACCESS
EXCLUSIVE), so nobody sees them without these indexes; building an index once over the loaded
rows costs a fraction of maintaining it row by row during COPY (about half the load time on the
benchmark's schema).  A rollback, an error or a killed process restores every index as it was.

Only plain indexes are deferred: not unique ones (they enforce something during the load), none
that backs a constraint (primary keys, unique and exclusion constraints, the unique index a
foreign key references), none that marks the table's CLUSTER or REPLICA IDENTITY, none with a
comment or outside the default tablespace (``pg_get_indexdef`` does not carry those), none of a
partitioned table, and only on tables the target role owns.
"""

from __future__ import annotations

from psycopg import sql

from sampling.catalog import QualifiedName
from sampling.session import Connection

_DEFERRABLE_SQL = """
SELECT format('%%I.%%I', n.nspname, ic.relname), pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE (tn.nspname, t.relname) IN (SELECT s, r FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS u(s, r))
  AND t.relkind = 'r' AND ic.relkind = 'i' AND ic.reltablespace = 0
  AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
  AND NOT i.indisclustered AND NOT i.indisreplident
  AND i.indisvalid AND i.indisready AND i.indislive
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass)
  AND pg_has_role(t.relowner, 'USAGE')
ORDER BY 1
"""


def drop_secondary_indexes(tgt: Connection, tables: list[QualifiedName]) -> list[str]:
    """Drop the deferrable indexes of ``tables``; returns the statements that recreate them."""
    if not tables:
        return []
    found = tgt.execute(
        _DEFERRABLE_SQL, {"schemas": [s for s, _ in tables], "tables": [t for _, t in tables]}
    ).fetchall()
    for name, _definition in found:
        tgt.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))  # format('%I.%I'): quoted
    return [str(definition) for _name, definition in found]


def rebuild_indexes(tgt: Connection, definitions: list[str]) -> None:
    """Recreate the indexes ``drop_secondary_indexes`` dropped, from their own definitions."""
    for definition in definitions:
        tgt.execute(sql.SQL(definition))  # pg_get_indexdef() of the target: a complete statement
