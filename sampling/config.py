"""The YAML configuration of a sampling run, validated by pydantic.

The reference of every key is docs/sampling.md; sampling/makapix.yaml is a complete example.
Table names in the configuration are *logical* names: the source table name without the
source prefix, optionally schema-qualified (``users`` or ``public.users``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cli_support.validation import problem_lines
from sampling.errors import ConfigError
from sampling.strict_yaml import YamlFileError, read_yaml_file

ParentPolicy = Literal["include", "nullify", "drop"]
#: What a run does with tables it does not replace whose foreign keys reference tables it replaces.
OutsideRule = Literal["prune", "empty", "refuse"]
RuleName = Literal["keep", "null", "constant", "email", "password", "ip", "token", "redact", "pseudonym"]

#: Rules whose output depends on the secret anonymisation key.
KEYED_RULES = frozenset({"pseudonym"})



def _matching(value: str, pattern: str, problem: str) -> str:
    """A PostgreSQL setting's value, checked against its accepted form before any connection is made."""
    if not re.fullmatch(pattern, value):
        raise ValueError(problem)
    return value

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Strict):
    """How one column is anonymised; applied as SQL inside the source query."""

    rule: RuleName
    #: constant / password / token: the value written (token without value writes NULL).
    value: str | None = None
    #: email: ``id`` (user<primary key>@domain) or ``pseudonym`` (keyed, equal inputs -> equal outputs).
    #: ip: ``pseudonym`` (keyed address in 10.0.0.0/8 or fd00::/8) or ``truncate`` (/24 and /48 networks).
    style: str | None = None
    #: pseudonym: text put before the keyed hash.
    prefix: str = ""

    @model_validator(mode="after")
    def _check(self) -> ColumnRule:
        styles = {"email": {"id", "pseudonym"}, "ip": {"pseudonym", "truncate"}}
        if self.style is not None and self.style not in styles.get(self.rule, set()):
            allowed = sorted(styles.get(self.rule, set())) or ["(none)"]
            raise ValueError(
                f"style {self.style!r} is not valid for rule {self.rule!r}; use one of {allowed}"
            )
        if self.rule in ("constant", "password") and self.value is None:
            raise ValueError(f"rule {self.rule!r} needs a 'value'")
        return self

    @property
    def keyed(self) -> bool:
        return self.rule in KEYED_RULES or (self.rule in ("email", "ip") and self.style == "pseudonym")


def _column_shorthand(value: Any) -> Any:
    """Allow ``email: keep`` as a short form of ``email: {rule: keep}``."""
    return {"rule": value} if isinstance(value, str) else value


class ForeignKeyOptions(_Strict):
    """Options for one foreign key (or declared relation) of a table, named by its columns."""

    #: What to do when the referenced row is not in the sample.
    policy: ParentPolicy | None = None
    #: Whether rows of this table are taken because the referenced row is taken (children follow).
    follow: bool = True


class Cap(_Strict):
    """At most ``max`` rows per distinct value of the ``per`` columns, chosen deterministically."""

    per: list[str] = Field(min_length=1)
    max: int = Field(gt=0)


class TableOptions(_Strict):
    #: sample: rows chosen by roots and foreign keys; all: whole table; empty: emptied, nothing loaded;
    #: none: left untouched in the target.
    copy_mode: Literal["sample", "all", "empty", "none"] = Field("sample", alias="copy")
    #: A child row is taken when ``any`` or ``all`` of its followed parents are taken.
    follow: Literal["any", "all"] = "any"
    columns: dict[str, Annotated[ColumnRule, Field()]] = Field(default_factory=dict)
    #: Keyed by the foreign key's columns, comma-separated in order: ``user_id`` or ``tenant_id,post_id``.
    foreign_keys: dict[str, ForeignKeyOptions] = Field(default_factory=dict)
    cap: Cap | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: _column_shorthand(rule) for name, rule in value.items()}
        return value


class Root(_Strict):
    table: str
    fraction: float = Field(gt=0, le=1)
    #: Optional SQL condition on the root table's columns (e.g. ``banned_until IS NULL``).
    where: str | None = None


class Relation(_Strict):
    """A link with no foreign-key constraint, e.g. a polymorphic ``target_type`` + ``target_id`` pair."""

    table: str
    columns: list[str] = Field(min_length=1)
    references: str
    referenced_columns: list[str] = Field(min_length=1)
    #: SQL condition on the referencing row that says the link applies (``target_type = 'post'``).
    when: str | None = None

    @model_validator(mode="after")
    def _same_length(self) -> Relation:
        if len(self.columns) != len(self.referenced_columns):
            raise ValueError("'columns' and 'referenced_columns' must have the same length")
        return self


class Mapping(_Strict):
    """How source table names become target table names."""

    source_prefix: str = ""
    target_prefix: str = ""
    #: source schema -> target schema; schemas not listed keep their name.
    schemas: dict[str, str] = Field(default_factory=dict)


class Anonymisation(_Strict):
    #: NAME of the environment variable that holds the key of keyed pseudonyms (never the key itself).
    key_env: str = "SAMPLING_ANONYMISATION_KEY"
    #: Domain of generated e-mail addresses.
    email_domain: str = "example.invalid"


class VaultOptions(_Strict):
    """How ``python -m sampling stack-run`` finds the sampled posts' vault files (docs/vault.md)."""

    #: False: the application keeps no per-post files to copy (ClippyFront); stack-run copies none.
    enabled: bool = True
    #: Posts table in the target as ``sampling.vault`` names it; default: the target name of ``posts``.
    posts_table: str | None = None
    template: str = "{storage_shard}/{storage_key}.{format}"
    #: Also copy this variant of each file when production has it ('' disables).
    variant_suffix: str = "_upscaled.webp"
    #: Remove development files that are no longer in the sample.
    prune: bool = True


class SamplingConfig(_Strict):
    seed: int = 0
    #: Source schemas whose tables take part.
    schemas: list[str] = Field(default_factory=lambda: ["public"], min_length=1)
    roots: list[Root] = Field(min_length=1)
    tables: dict[str, TableOptions] = Field(default_factory=dict)
    relations: list[Relation] = Field(default_factory=list)
    mapping: Mapping = Field(default_factory=Mapping)
    anonymisation: Anonymisation = Field(default_factory=Anonymisation)
    #: Policy of foreign keys the configuration does not mention.
    default_parent_policy: ParentPolicy = "include"
    #: Tables outside the sample (only in the target, in a schema not listed, ``copy: none``) whose foreign
    #: keys reference a replaced table: ``prune`` keeps their rows whose references still resolve and
    #: deletes the others; ``empty`` empties them; ``refuse`` stops before writing. Same transaction.
    outside_references: OutsideRule = "prune"
    #: The vault files copied after a stack's sampling run (``python -m sampling stack-run``).
    vault: VaultOptions = Field(default_factory=VaultOptions)
    #: work_mem of the source session: the hashed key sets of semi-joins must fit in it.
    source_work_mem: str = "256MB"
    #: statement_timeout of the source session: a runaway statement on production ends (``0``: none).
    source_statement_timeout: str = "30min"
    #: Source connections reading at once, all on one exported snapshot (1: the main one only).
    source_connections: int = Field(4, ge=1, le=16)
    #: How long a run waits for a lock on either database before it stops and names the sessions
    #: that hold it (e.g. a developer's open transaction on a table the run empties).
    lock_timeout: str = "30s"
    #: Where the configuration came from, for error messages.
    source_file: str = "<config>"

    @field_validator("source_work_mem")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _matching(value, r"\d+\s*(kB|MB|GB)", "must look like '256MB' (units kB, MB or GB)")

    @field_validator("source_statement_timeout")
    @classmethod
    def _statement_timeout(cls, value: str) -> str:
        return _matching(
            value, r"0|\d+\s*(ms|s|min|h)", "must look like '30min' (units ms, s, min or h), or 0 for no limit"
        )

    @field_validator("lock_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _matching(
            value, r"[1-9]\d*\s*(ms|s|min)", "must look like '30s' (a positive number with unit ms, s or min)"
        )


def _format_validation_error(path: str, error: ValidationError) -> str:
    return "\n".join([f"{path}: invalid sampling configuration:", *(f"  {line}" for line in problem_lines(error))])


def parse_config(data: Any, source_file: str = "<config>") -> SamplingConfig:
    """Validate already-parsed YAML data; errors name ``source_file``, the key and the value."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source_file}: the configuration must be a YAML mapping, not {type(data).__name__}"
        )
    try:
        return SamplingConfig.model_validate({**data, "source_file": source_file})
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source_file, error)) from None


def load_config(path: str | Path) -> SamplingConfig:
    """Read and validate a YAML sampling configuration."""
    path = Path(path)
    try:
        data = read_yaml_file(path)
    except YamlFileError as error:
        raise ConfigError(str(error)) from None
    return parse_config(data, str(path))


def with_overrides(
    config: SamplingConfig, *, seed: int | None = None, fraction: float | None = None
) -> SamplingConfig:
    """``config`` with another seed and/or every root's fraction replaced (validated again)."""
    data = config.model_dump(by_alias=True)
    if seed is not None:
        data["seed"] = seed
    if fraction is not None:
        for root in data["roots"]:
            root["fraction"] = fraction
    return parse_config(data, config.source_file)
