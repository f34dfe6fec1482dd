"""The configuration resolved against the source and target catalogs: what each table gets.

``resolve()`` checks everything that can be checked before a row moves (unknown names, drift,
policies that cannot work, target equal to source) and orders the tables so that a child's
selection can be written in terms of its parents' selections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sampling.catalog import Catalog, Column, ForeignKey, QualifiedName, Table, display
from sampling.config import ColumnRule, ParentPolicy, Root, SamplingConfig
from sampling.errors import ConfigError, SamplingError

#: Column names that suggest personal or secret data: contact details, names, credentials, keys.
SENSITIVE_NAME = re.compile(
    r"e_?mail|passw|pwd|token|secret|(^|_)ips?(_|$)|ip_?addr|cert|(^|_)pem(_|$)|phone|mobile|address"
    r"|(^|_)keys?(_|$)|api_?key|private|salt|ssn|iban|birth|otp|totp|passport|tax_?id|national_?id"
    r"|card_?number|credit_?card|postal|zip_?code"
    r"|(first|last|middle|given|family|full|sur|nick|display|real|maiden|user)_?name|(^|_)bio(graphy)?(_|$)"
    r"|about_?me",
    re.IGNORECASE,
)
#: A bare ``name`` is a person's name only in tables of people (a category's or a device's name is not).
PERSON_TABLE = re.compile(
    r"user|customer|staff|employee|member|person|people|contact|author|artist|client|patient|student"
    r"|profile|account",
    re.IGNORECASE,
)
#: Names that say personal whatever the column's type (a phone number or an SSN stored as a number, a
#: date of birth): birth date, phone, social security number, IBAN, card number, passport, tax or
#: national id. Anchored at the end, so ``phone_id``, ``phone_verified`` or ``passport_expires_at`` are not.
STRONG_PERSONAL_NAME = re.compile(
    r"(birth_?(date|day|year|place)|date_?of_?birth|(^|_)dob)$|phone(_?(number|no|nr))?$|(^|_)mobile$"
    r"|((^|_)ssn|social_?security(_?number)?)$|(^|_)iban$|card_?(number|no|num)$"
    r"|passport(_?(number|no|nr))?$|(tax|national)_?(id|number|no)$",
    re.IGNORECASE,
)
#: Type categories (pg_type.typcategory) that cannot hold what the names suggest: booleans
#: (``email_valid``), numbers (``address_id``), dates and times (``cert_expires_at``), intervals, enums.
NOT_PERSONAL_CATEGORIES = frozenset("BNDTE")
#: Key types whose values are identifiers only: numbers and uuids (a text key may be the e-mail itself).
IDENTIFIER_KEY_TYPES = frozenset({"uuid"})


def looks_personal(table: Table, column: Column, key_columns: set[str]) -> bool:
    """Whether ``column`` needs a rule (or ``keep``) before it is copied: judged by name *and* type.

    Columns that foreign keys use (or reference) are exempt when their type holds identifiers only
    (numbers, uuids): only ``keep`` keeps their links anyway. A text key (``username``, ``email``) is
    the personal value itself and needs a decision, which can only be ``keep``. A strong name
    (``STRONG_PERSONAL_NAME``: date of birth, phone, SSN…) needs one whatever the type, booleans aside.
    """
    identifier_key = column.name in key_columns and (
        column.category == "N" or column.type in IDENTIFIER_KEY_TYPES
    )
    if identifier_key or column.category == "B":
        return False
    if STRONG_PERSONAL_NAME.search(column.name):
        return True
    if column.category in NOT_PERSONAL_CATEGORIES:
        return False
    if column.name.lower() == "name":
        return bool(PERSON_TABLE.search(table.name[1]))
    return bool(SENSITIVE_NAME.search(column.name))


@dataclass(frozen=True)
class Link:
    """A foreign key or declared relation as the sampler uses it."""

    fk: ForeignKey
    policy: ParentPolicy
    #: Rows of the referencing table are taken because the referenced row is taken.
    follows: bool


@dataclass(frozen=True)
class TablePlan:
    logical: str
    source: Table
    target: Table
    mode: str  # sample | all | empty | none
    follow: str  # any | all
    root: Root | None
    cap_per: tuple[str, ...]
    cap_max: int | None
    rules: dict[str, ColumnRule]
    #: Columns copied: present in both, not generated on either side; in source order.
    columns: tuple[str, ...]
    binary: bool
    links: tuple[Link, ...]

    @property
    def loads(self) -> bool:
        return self.mode in ("sample", "all")


@dataclass(frozen=True)
class Resolved:
    config: SamplingConfig
    tables: dict[QualifiedName, TablePlan]  # keyed by source name
    #: Sample tables reached from the roots, parents before children.
    downward_order: tuple[QualifiedName, ...]
    #: Sample tables reached only by pulling parents in.
    include_only: tuple[QualifiedName, ...]
    unreached: tuple[str, ...]
    cycle_breaks: tuple[str, ...]
    sensitive_without_rule: tuple[str, ...]

    def plan_for(self, name: QualifiedName) -> TablePlan:
        return self.tables[name]

    def followed_links(self, name: QualifiedName) -> list[Link]:
        """Links along which ``name`` takes rows from its parents' selections (cycle edges removed)."""
        broken = set(self.cycle_breaks)
        reached = set(self.downward_order)
        table = self.tables[name]
        return [
            link
            for link in table.links
            if link.follows
            and link.fk.referenced in reached
            and link.fk.referenced != name
            and table.root is None
            and _edge_label(link) not in broken
        ]


def _edge_label(link: Link) -> str:
    return f"{display(link.fk.table)}({link.fk.key}) -> {display(link.fk.referenced)}"


def _find_table(catalog: Catalog, config: SamplingConfig, logical: str) -> QualifiedName | None:
    prefix = config.mapping.source_prefix
    if "." in logical:
        schema, name = logical.split(".", 1)
        candidates = [(schema, prefix + name)]
    else:
        candidates = [(schema, prefix + logical) for schema in config.schemas]
    found = [c for c in candidates if c in catalog.tables]
    return found[0] if len(found) == 1 else None


def logical_name(config: SamplingConfig, name: QualifiedName) -> str:
    bare = name[1][len(config.mapping.source_prefix) :]
    return bare if len(config.schemas) == 1 else f"{name[0]}.{bare}"


def target_name(config: SamplingConfig, name: QualifiedName) -> QualifiedName:
    schema = config.mapping.schemas.get(name[0], name[0])
    return schema, config.mapping.target_prefix + name[1][len(config.mapping.source_prefix) :]


def target_schemas(config: SamplingConfig) -> list[str]:
    return sorted({config.mapping.schemas.get(s, s) for s in config.schemas})


def resolve(config: SamplingConfig, source: Catalog, target: Catalog, same_database: bool) -> Resolved:
    """Check ``config`` against both catalogs and work out every table's treatment."""
    errors: list[str] = []  # mistakes in the configuration (exit 2)
    refusals: list[str] = []  # the databases do not allow the run (exit 1)
    where = config.source_file
    scope = f"schemas {config.schemas}" + (
        f" with prefix {config.mapping.source_prefix!r}" if config.mapping.source_prefix else ""
    )

    def lookup(key: str, logical: str) -> QualifiedName | None:
        found = _find_table(source, config, logical)
        if found is None:
            errors.append(f"{where}: {key}: no table {logical!r} in the source ({scope})")
        return found

    options = {}
    written: dict[QualifiedName, str] = {}  # how the configuration spells each table, for messages
    for logical, table_options in config.tables.items():
        found = lookup(f"tables.{logical}", logical)
        if found is not None:
            options[found] = table_options
            written[found] = logical
    roots: dict[QualifiedName, Root] = {}
    for i, root in enumerate(config.roots):
        found = lookup(f"roots[{i}].table", root.table)
        if found is not None:
            roots[found] = root
            if found in options and options[found].copy_mode != "sample":
                errors.append(
                    f"{where}: roots[{i}]: table {root.table!r} is a root but has copy: "
                    f"{options[found].copy_mode}"
                )

    declared: dict[QualifiedName, list[ForeignKey]] = {}
    for i, rel in enumerate(config.relations):
        child, referenced = (
            lookup(f"relations[{i}].table", rel.table),
            lookup(f"relations[{i}].references", rel.references),
        )
        if child is None or referenced is None:
            continue
        for key, cols, side in (
            ("columns", rel.columns, child),
            ("referenced_columns", rel.referenced_columns, referenced),
        ):
            for col in cols:
                if source.tables[side].column(col) is None:
                    errors.append(f"{where}: relations[{i}].{key}: no column {col!r} in {display(side)}")
        declared.setdefault(child, []).append(
            ForeignKey(
                f"relation {i}",
                child,
                tuple(rel.columns),
                referenced,
                tuple(rel.referenced_columns),
                when=rel.when,
                declared=True,
            )
        )

    key_columns: dict[QualifiedName, set[str]] = {}
    for table in source.tables.values():
        for fk in (*table.foreign_keys, *declared.get(table.name, [])):
            key_columns.setdefault(fk.table, set()).update(fk.columns)
            key_columns.setdefault(fk.referenced, set()).update(fk.referenced_columns)

    plans: dict[QualifiedName, TablePlan] = {}
    sensitive: list[str] = []
    for name, table in source.tables.items():
        opts = options.get(name)
        logical = logical_name(config, name)
        key = f"tables.{written.get(name, logical)}"
        mode = opts.copy_mode if opts else "sample"
        rules = dict(opts.columns) if opts else {}
        for col, rule in rules.items():
            if table.column(col) is None:
                errors.append(f"{where}: {key}.columns.{col}: no column {col!r} in {display(name)}")
            elif col in key_columns.get(name, set()) and rule.rule != "keep":
                errors.append(
                    f"{where}: {key}.columns.{col}: {col!r} is part of a foreign key or a key it "
                    f"references; rule {rule.rule!r} would break the links, use keep"
                )
        cap_per: tuple[str, ...] = tuple(opts.cap.per) if opts and opts.cap else ()
        for col in cap_per:
            if table.column(col) is None:
                errors.append(f"{where}: {key}.cap.per: no column {col!r} in {display(name)}")

        fks = (*table.foreign_keys, *declared.get(name, []))
        fk_options = dict(opts.foreign_keys) if opts else {}
        for fk_key in fk_options:
            if not any(fk.key == fk_key.replace(" ", "") for fk in fks):
                known = sorted(fk.key for fk in fks) or ["(none)"]
                errors.append(
                    f"{where}: {key}.foreign_keys.{fk_key}: {display(name)} has no foreign key on "
                    f"({fk_key}); its foreign keys are on {known}"
                )
        links = []
        for fk in fks:
            fk_opt = next((o for k, o in fk_options.items() if k.replace(" ", "") == fk.key), None)
            policy = (fk_opt.policy if fk_opt and fk_opt.policy else None) or config.default_parent_policy
            links.append(Link(fk, policy, fk_opt.follow if fk_opt else True))

        tname = target_name(config, name)
        ttable = target.get(tname)
        if ttable is None:
            if mode != "none":
                refusals.append(
                    f"target table {display(tname)} (for source {display(name)}) does not exist; "
                    f"the application's migrations must create it, or set {key}.copy: none"
                )
            continue
        if same_database and tname == name and mode != "none":
            refusals.append(
                f"refusing: target table {display(tname)} is the source table itself; "
                "use another database or a mapping (schemas / prefixes)"
            )
        columns, binary = _common_columns(table, ttable, same_database, refusals)
        if mode in ("sample", "all"):
            for copied in table.copied_columns:
                if (
                    copied.name in columns
                    and copied.name not in rules
                    and looks_personal(table, copied, key_columns.get(name, set()))
                ):
                    sensitive.append(f"{logical}.{copied.name}")
        plans[name] = TablePlan(
            logical,
            table,
            ttable,
            mode,
            opts.follow if opts else "any",
            roots.get(name),
            cap_per,
            opts.cap.max if opts and opts.cap else None,
            rules,
            columns,
            binary,
            tuple(links),
        )

    for plan in plans.values():
        if not plan.loads:
            continue
        for link in plan.links:
            parent = plans.get(link.fk.referenced)
            label = f"{where}: tables.{plan.logical}.foreign_keys.{link.fk.key}"
            if parent is None:
                if link.fk.referenced not in source.tables:
                    errors.append(
                        f"{label}: references {display(link.fk.referenced)}, outside {scope}; add its "
                        "schema to 'schemas'"
                    )
                continue
            if link.policy == "include" and parent.mode in ("none", "empty"):
                errors.append(
                    f"{label}: policy include, but {display(link.fk.referenced)} has copy: "
                    f"{parent.mode}; use nullify or drop"
                )
            if link.policy == "nullify":
                for col in link.fk.columns:
                    target_col = plan.target.column(col)
                    if target_col is not None and target_col.not_null:
                        errors.append(
                            f"{label}: policy nullify, but {display(plan.target.name)}.{col} is NOT NULL;"
                            " use include or drop"
                        )
    if errors:
        raise ConfigError("\n".join(errors))
    if refusals:
        raise SamplingError("\n".join(refusals))

    downward, breaks = _order_downward(plans, roots)
    include_only = _included_tables(plans, set(downward))
    reached = set(downward) | set(include_only)
    unreached = tuple(p.logical for n, p in sorted(plans.items()) if p.mode == "sample" and n not in reached)
    return Resolved(
        config, plans, tuple(downward), tuple(include_only), unreached, tuple(breaks), tuple(sensitive)
    )


def _common_columns(
    source: Table, target: Table, same_database: bool, errors: list[str]
) -> tuple[tuple[str, ...], bool]:
    """The columns both sides have (drift-tolerant) and whether binary COPY is safe for them."""
    columns: list[str] = []
    binary = True
    for col in source.copied_columns:
        tcol = target.column(col.name)
        if tcol is None or tcol.generated:
            continue
        if tcol.type != col.type:
            if tcol.category != col.category:
                errors.append(
                    f"type mismatch: {display(source.name)}.{col.name} is {col.type} in the source but "
                    f"{tcol.type} in the target {display(target.name)}; migrate one side first"
                )
                continue
            binary = False  # e.g. varchar(50) -> text: text COPY lets the target convert
        if not same_database and not col.binary_portable:
            binary = False
        columns.append(col.name)
    for tcol in target.columns:
        if (
            source.column(tcol.name) is None
            and tcol.not_null
            and not (tcol.has_default or tcol.identity or tcol.generated)
        ):
            errors.append(
                f"schema drift: target column {display(target.name)}.{tcol.name} is NOT NULL without a "
                "default and the source has no such column; give it a default in the migration"
            )
    return tuple(columns), binary


def _order_downward(
    plans: dict[QualifiedName, TablePlan], roots: dict[QualifiedName, Root]
) -> tuple[list[QualifiedName], list[str]]:
    """Sample tables reached from the roots through followed links, parents first; edges cut to break cycles."""
    reached = {n for n in roots if n in plans}
    edges: dict[QualifiedName, list[Link]] = {}
    changed = True
    while changed:
        changed = False
        for name, plan in plans.items():
            if plan.mode != "sample" or plan.root is not None:
                continue
            links = [
                link
                for link in plan.links
                if link.follows and link.fk.referenced in reached and link.fk.referenced != name
            ]
            edges[name] = links
            if links and name not in reached:
                reached.add(name)
                changed = True
    breaks: list[str] = []
    while True:
        cycle = _find_cycle(
            {n: [link for link in edges.get(n, []) if _edge_label(link) not in breaks] for n in reached}
        )
        if not cycle:
            break
        nullable = [link for link in cycle if _nullable(plans[link.fk.table].source, link.fk.columns)]
        candidates = nullable or cycle
        breaks.append(max(_edge_label(link) for link in candidates))
    order: list[QualifiedName] = []
    done: set[QualifiedName] = set()

    def visit(name: QualifiedName) -> None:
        if name in done:
            return
        done.add(name)
        for link in edges.get(name, []):
            if _edge_label(link) not in breaks:
                visit(link.fk.referenced)
        order.append(name)

    for name in sorted(reached):
        visit(name)
    return order, breaks


def _nullable(table: Table, columns: tuple[str, ...]) -> bool:
    return all((col := table.column(name)) is not None and not col.not_null for name in columns)


def _find_cycle(graph: dict[QualifiedName, list[Link]]) -> list[Link]:
    """One cycle of links (child -> parent) in ``graph``, or [] when it has none."""
    state: dict[QualifiedName, int] = {}
    stack: list[Link] = []

    def dfs(node: QualifiedName) -> list[Link]:
        state[node] = 1
        for link in graph.get(node, []):
            nxt = link.fk.referenced
            if nxt not in graph:
                continue
            stack.append(link)
            if state.get(nxt) == 1:
                start = next(i for i, l_ in enumerate(stack) if l_.fk.table == nxt)
                return stack[start:]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
            stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return []


def _included_tables(
    plans: dict[QualifiedName, TablePlan], downward: set[QualifiedName]
) -> list[QualifiedName]:
    """Sample tables not reached downward that get rows because loaded rows reference them (include)."""
    has_rows = set(downward) | {n for n, p in plans.items() if p.mode == "all"}
    extra: list[QualifiedName] = []
    changed = True
    while changed:
        changed = False
        for name in sorted(has_rows):
            for link in plans[name].links:
                parent = link.fk.referenced
                if (
                    link.policy == "include"
                    and parent in plans
                    and plans[parent].mode == "sample"
                    and parent not in has_rows
                ):
                    has_rows.add(parent)
                    extra.append(parent)
                    changed = True
    return extra
