"""Prometheus alerting rules from a stack's ``monitoring`` output.

Input: the JSON printed by ``pulumi stack output --json [--show-secrets]`` (an object of
all outputs; without ``--show-secrets`` secret outputs read ``"[secret]"``, which is fine
because ``monitoring`` is a plain output).  Output: one Prometheus rule file.

The rules are written for the usual exporters, and rely on these labels:

- cAdvisor: ``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes`` and
  ``container_oom_events_total`` by container name label ``name``;
- postgres_exporter: ``pg_stat_activity_count``, scraped with the target label
  ``environment`` (production|development), since each environment runs its own exporter;
- node_exporter: ``node_filesystem_avail_bytes`` / ``node_filesystem_size_bytes`` by ``mountpoint``;
- Caddy: ``caddy_http_request_duration_seconds_bucket`` by ``host``, which Caddy adds only
  with the global option ``metrics { per_host }`` (its other labels are server, handler,
  code, method: none of them tells the environments apart).
- ``python -m ops audit --textfile`` through node_exporter's textfile collector:
  ``isolation_audit_findings`` by ``project`` and ``kind``, ``isolation_audit_up`` and
  ``isolation_audit_last_run_timestamp_seconds``.  The audit covers the whole host, so only
  production's rule file carries its alerts (a second copy would alert twice).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cli_support.validation import dotted, problem_lines
from ops.errors import OpsError
from ops.monitoring import OUTPUT_NAME, ContainerLimits, MonitoringOutput

# How long a condition must hold before the alert fires; short spikes are not incidents.
PENDING_FOR = "5m"
# Window of rate() over counters; must cover several scrapes at the usual 15-60 s interval.
RATE_WINDOW = "5m"
# Window in which an out-of-memory kill keeps its alert firing.
OOM_WINDOW = "10m"
# An isolation audit older than this has stopped running (it is meant to run every 15 minutes).
AUDIT_STALE_SECONDS = 3600

_Rule = dict[str, Any]


def load_monitoring(outputs_file: Path) -> MonitoringOutput:
    """Read ``pulumi stack output --json`` from ``outputs_file`` and validate its monitoring output."""
    try:
        text = outputs_file.read_text(encoding="utf-8")
    except OSError as error:
        raise OpsError(f"{outputs_file}: cannot read the stack outputs file: {error.strerror}") from error
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise OpsError(
            f"{outputs_file}: not JSON ({error.msg} at line {error.lineno}); "
            "write it with `pulumi stack output --json > FILE`"
        ) from error
    if not isinstance(outputs, dict):
        raise OpsError(
            f"{outputs_file}: expected a JSON object of stack outputs, got {type(outputs).__name__}"
        )
    if OUTPUT_NAME not in outputs:
        present = ", ".join(sorted(outputs)) or "none"
        raise OpsError(
            f"{outputs_file}: no key {OUTPUT_NAME!r} among the stack outputs (present: {present}); "
            "export it from the stack and run `pulumi up` first"
        )
    raw = outputs[OUTPUT_NAME]
    if raw == "[secret]":
        raise OpsError(
            f"{outputs_file}: key {OUTPUT_NAME!r} is a secret output; the stack must export it as plain "
            "output (or pass --show-secrets to `pulumi stack output`)"
        )
    try:
        return MonitoringOutput.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(problem_lines(error, key=lambda location: dotted((OUTPUT_NAME, *location))))
        raise OpsError(f"{outputs_file}: malformed key {OUTPUT_NAME!r}: {problems}") from error


def _string(value: str) -> str:
    """A PromQL string literal (JSON's escaping is a subset of PromQL's)."""
    return json.dumps(value)


def _number(value: float) -> str:
    """A PromQL number written without loss (an int as is, a float by its round-tripping repr)."""
    return str(value) if isinstance(value, int) else repr(value)


def _alert(
    name: str,
    expr: str,
    labels: dict[str, str],
    summary: str,
    description: str,
    pending_for: str = PENDING_FOR,
) -> _Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": pending_for,
        "labels": dict(labels),  # a copy each, or PyYAML writes anchors and aliases
        "annotations": {"summary": summary, "description": description},
    }


def _container_rules(monitoring: MonitoringOutput, container: ContainerLimits) -> list[_Rule]:
    ratio = monitoring.container_limit_alert_ratio
    labels = {
        "environment": monitoring.environment,
        "severity": "warning",
        "service": container.service,
    }
    selector = f"{{name={_string(container.name)}}}"
    cpu = (
        f"sum by (name) (rate(container_cpu_usage_seconds_total{selector}[{RATE_WINDOW}]))"
        f" / {_number(container.cpu_limit)} > {_number(ratio)}"
    )
    memory = (
        f"max by (name) (container_memory_working_set_bytes{selector})"
        f" / {_number(container.memory_limit_bytes)} > {_number(ratio)}"
    )
    # With Docker enforcing the limit, memory use cannot pass it: the kernel kills the process
    # instead. An OOM kill is therefore the one sure sign that a container wanted more than it
    # was allocated; it is an event, so it fires at once.
    oom_killed = f"increase(container_oom_events_total{selector}[{OOM_WINDOW}]) > 0"
    where = f"{monitoring.environment} container {container.name}"
    return [
        _alert(
            "ContainerCpuOverLimit",
            cpu,
            labels,
            f"{where} uses more than {ratio:.0%} of its CPU limit",
            f"CPU use is {{{{ $value | humanizePercentage }}}} of the {container.cpu_limit:g} cores allocated.",
        ),
        _alert(
            "ContainerMemoryOverLimit",
            memory,
            labels,
            f"{where} uses more than {ratio:.0%} of its memory limit",
            "Working set is {{ $value | humanizePercentage }} of the "
            f"{container.memory_limit_bytes} bytes allocated.",
        ),
        _alert(
            "ContainerOomKilled",
            oom_killed,
            labels,
            f"{where} was killed for using more than its memory limit",
            f"{{{{ $value | humanize }}}} out-of-memory kills in the last {OOM_WINDOW} "
            f"(limit {container.memory_limit_bytes} bytes).",
            pending_for="0m",
        ),
    ]


def _database_rule(monitoring: MonitoringOutput) -> _Rule:
    database = monitoring.database
    ratio = database.connections_alert_ratio
    expr = (
        f"sum(pg_stat_activity_count{{environment={_string(monitoring.environment)}}})"
        f" / {_number(database.max_connections)} > {_number(ratio)}"
    )
    return _alert(
        "DatabaseConnectionsHigh",
        expr,
        {
            "environment": monitoring.environment,
            "severity": "critical" if monitoring.environment == "production" else "warning",
            "container": database.container,
        },
        f"{monitoring.environment} database uses more than {ratio:.0%} of its connections",
        f"{{{{ $value | humanizePercentage }}}} of max_connections={database.max_connections} "
        f"are in use on {database.container}.",
    )


def _vault_rule(monitoring: MonitoringOutput) -> _Rule:
    vault = monitoring.vault
    selector = f"{{mountpoint={_string(vault.mountpoint)}}}"
    expr = (
        f"1 - node_filesystem_avail_bytes{selector} / node_filesystem_size_bytes{selector}"
        f" > {_number(vault.disk_alert_ratio)}"
    )
    return _alert(
        "VaultDiskUsageHigh",
        expr,
        {
            "environment": monitoring.environment,
            "severity": "critical" if monitoring.environment == "production" else "warning",
            "vault_path": vault.host_path,
        },
        f"{monitoring.environment} vault disk is more than {vault.disk_alert_ratio:.0%} full",
        f"The filesystem {vault.mountpoint} holding {vault.host_path} is "
        "{{ $value | humanizePercentage }} full.",
    )


def _latency_rule(monitoring: MonitoringOutput, threshold: float) -> _Rule:
    domain = monitoring.api.domain
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(caddy_http_request_duration_seconds_bucket"
        f"{{host={_string(domain)}}}[{RATE_WINDOW}]))) > {_number(threshold)}"
    )
    return _alert(
        "ApiLatencyP99High",
        expr,
        {"environment": monitoring.environment, "severity": "critical", "host": domain},
        f"{monitoring.environment} p99 request latency on {domain} is above {threshold * 1000:g} ms",
        "p99 latency is {{ $value | humanizeDuration }} over the last " + RATE_WINDOW + ".",
    )


def _isolation_audit_rules(monitoring: MonitoringOutput) -> list[_Rule]:
    project = _string(monitoring.project)
    findings = f"max by (project, kind) (isolation_audit_findings{{project={project}}}) > 0"
    not_running = (
        "max(isolation_audit_up) == 0"
        f" or time() - max(isolation_audit_last_run_timestamp_seconds) > {AUDIT_STALE_SECONDS}"
        " or absent(isolation_audit_last_run_timestamp_seconds)"
    )
    labels = {"environment": monitoring.environment}
    return [
        _alert(
            "IsolationAuditFinding",
            findings,
            {**labels, "severity": "critical"},
            f"{monitoring.project}: the running containers break environment isolation",
            "{{ $value }} finding(s) of kind {{ $labels.kind }}: run `python -m ops audit --project "
            f"{monitoring.project}` on the host for the containers, networks or paths and what to do.",
            pending_for="0m",
        ),
        _alert(
            "IsolationAuditNotRunning",
            not_running,
            {**labels, "severity": "warning"},
            "the isolation audit cannot read the Docker engine or has stopped running",
            "`python -m ops audit` last reported more than "
            f"{AUDIT_STALE_SECONDS // 60} minutes ago, or could not read the engine: check its timer and "
            "the engine (docs/operations.md, Isolation audit).",
        ),
    ]


def alert_rules(monitoring: MonitoringOutput) -> dict[str, Any]:
    """The Prometheus rule file (as a YAML-ready mapping) for one environment."""
    rules: list[_Rule] = []
    for container in monitoring.containers:
        rules.extend(_container_rules(monitoring, container))
    rules.append(_database_rule(monitoring))
    rules.append(_vault_rule(monitoring))
    threshold = monitoring.api.latency_p99_threshold_seconds
    if threshold is not None:
        rules.append(_latency_rule(monitoring, threshold))
    if monitoring.environment == "production":
        rules.extend(_isolation_audit_rules(monitoring))
    return {"groups": [{"name": f"{monitoring.project}-{monitoring.environment}", "rules": rules}]}


def render_alert_rules(monitoring: MonitoringOutput) -> str:
    """The rule file as YAML text, ready for ``promtool check rules`` and Prometheus ``rule_files``."""
    header = (
        f"# Generated by `python -m ops alerts` from the {monitoring.project} {monitoring.environment} "
        f"stack outputs (monitoring schema v{monitoring.schema_version}). Do not edit by hand.\n"
    )
    body = yaml.safe_dump(alert_rules(monitoring), sort_keys=False, allow_unicode=True, width=1000)
    return header + body
