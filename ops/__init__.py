"""Operations tools for the two environments (see docs/operations.md).

- :mod:`ops.monitoring` — the ``monitoring`` stack output schema (pydantic);
- :mod:`ops.alerts` — Prometheus alerting rules from a stack's outputs;
- :mod:`ops.backup` — ``pg_dump -Fc`` backups with retention, and all-or-nothing restore;
- :mod:`ops.audit` — the read-only isolation audit of the running Docker engine;
- :mod:`ops.pgenv` — connection URLs to libpq environment variables;
- :mod:`ops.cli` — the command line over them (``python -m ops``, the ``makapix-ops`` script).
"""
