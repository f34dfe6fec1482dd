"""Column rules turned into SQL expressions that run inside the source query.

Raw personal data never leaves the source server: the SELECT that feeds COPY already carries
the replaced values. The key of keyed pseudonyms is put into the source session with
``set_config()`` as a bound parameter, so it appears in no query text and no server log line of
the COPY statements; the expressions read it with ``current_setting()``.

Keyed pseudonym: ``sha256(key || hex(sha256(key || '|' || value)))`` — a nested keyed hash (no
length extension), built from core functions because the source may not have pgcrypto and a
read-only source cannot get it.  Equal inputs give equal outputs in every table and run.
"""

from __future__ import annotations

from psycopg import sql

from sampling.catalog import Column, Table
from sampling.config import ColumnRule
from sampling.errors import ConfigError

#: Session setting that holds the anonymisation key on the source connection.
KEY_SETTING = "sampling.anonymisation_key"


def keyed_hash_hex(value: sql.Composable) -> sql.Composed:
    """64 hex digits, a keyed hash of ``value`` (any expression; cast to text)."""
    key = sql.SQL("current_setting({})").format(sql.Literal(KEY_SETTING))
    inner = sql.SQL("encode(sha256(convert_to({key} || '|' || ({value})::text, 'UTF8')), 'hex')").format(
        key=key, value=value
    )
    return sql.SQL("encode(sha256(convert_to({key} || {inner}, 'UTF8')), 'hex')").format(key=key, inner=inner)


def _ip(column: sql.Composable, style: str) -> sql.Composed:
    address = sql.SQL("({})::inet").format(column)
    if style == "truncate":
        # Keep the network (/24 for IPv4, /48 for IPv6): coarse geography survives, the host does not.
        return sql.SQL("host(network(set_masklen({a}, CASE family({a}) WHEN 4 THEN 24 ELSE 48 END)))").format(
            a=address
        )
    digest = keyed_hash_hex(sql.SQL("host({})").format(address))
    return sql.SQL(
        "CASE family({a}) WHEN 4 THEN '10.' || get_byte(decode({h}, 'hex'), 0) || '.' || "
        "get_byte(decode({h}, 'hex'), 1) || '.' || get_byte(decode({h}, 'hex'), 2) "
        "ELSE 'fd00:' || substr({h}, 1, 4) || ':' || substr({h}, 5, 4) || ':' || substr({h}, 9, 4) "
        "|| '::' || substr({h}, 13, 4) END"
    ).format(a=address, h=digest)


def rule_expression(
    rule: ColumnRule, column: Column, table: Table, alias: str, email_domain: str, where: str
) -> sql.Composed:
    """SQL computing the anonymised value of ``column`` of row ``alias``, typed like the column.

    NULL stays NULL for every rule (NULL means "not set" and says nothing personal); ``null``
    turns everything into NULL.
    """
    col = sql.Identifier(alias, column.name)
    typ = sql.SQL(column.type)
    if rule.rule == "keep":
        return sql.Composed([col])
    if rule.rule == "null":
        return sql.SQL("NULL::{}").format(typ)
    if rule.rule in ("constant", "password"):
        value: sql.Composable = sql.Literal(rule.value)
    elif rule.rule == "token":
        value = sql.SQL("NULL") if rule.value is None else sql.Literal(rule.value)
    elif rule.rule == "redact":
        value = (
            sql.Literal(rule.value)
            if rule.value is not None
            else sql.SQL("regexp_replace(({})::text, '[^[:space:]]', 'x', 'g')").format(col)
        )
    elif rule.rule == "pseudonym":
        value = sql.SQL("{} || left({}, 16)").format(sql.Literal(rule.prefix), keyed_hash_hex(col))
    elif rule.rule == "ip":
        value = _ip(col, rule.style or "truncate")
    elif rule.rule == "email":
        domain = sql.Literal("@" + email_domain)
        if (rule.style or "id") == "id":
            if len(table.primary_key) != 1:
                raise ConfigError(
                    f"{where}: rule email with style id needs a one-column primary key on the table; "
                    "use style: pseudonym"
                )
            key = sql.Identifier(alias, table.primary_key[0])
            value = sql.SQL("'user' || ({})::text || {}").format(key, domain)
        else:
            digest = keyed_hash_hex(sql.SQL("lower(({})::text)").format(col))
            value = sql.SQL("'user-' || left({}, 16) || {}").format(digest, domain)
    else:  # pragma: no cover - the config model only admits the rules above
        raise ConfigError(f"{where}: unknown rule {rule.rule!r}")
    return sql.SQL("CASE WHEN {col} IS NULL THEN NULL ELSE ({value})::{typ} END").format(
        col=col, value=value, typ=typ
    )
