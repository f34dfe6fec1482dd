"""Alert rules from stack outputs, proven with Prometheus's own promtool.

`promtool check rules` validates the generated file (PromQL and annotation templates);
`promtool test rules` replays synthetic exporter series written here from the same outputs
and shows every alert firing just above its threshold and silent just below it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.alerts import load_monitoring, render_alert_rules
from ops.errors import OpsError
from ops.monitoring import MonitoringOutput

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
STEPS = 30  # minutes of synthetic series; alerts are evaluated at minute 20 (5m window + 5m pending)
EVAL_TIME = "20m"
MARGIN = 0.01  # "just above" / "just below" = threshold x (1 +/- 1%)


@dataclass
class Case:
    """One alert and the series that put it just above and just below its threshold."""

    alertname: str
    expected_labels: dict[str, str]
    above: list[dict[str, str]]
    below: list[dict[str, str]]
    noise: list[dict[str, str]] = field(default_factory=list)  # far over threshold, but not ours


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def _gauge(value: float) -> str:
    return f"{value!r}x{STEPS}"


def _counter(per_second: float) -> str:
    return f"0+{per_second * 60!r}x{STEPS}"


def threshold_cases(monitoring: dict[str, Any]) -> list[Case]:
    """Cases for every alert the outputs call for, derived from the outputs, not from the rules."""
    environment = monitoring["environment"]
    production = environment == "production"
    ratio = monitoring["container_limit_alert_ratio"]
    cases = []
    for container in monitoring["containers"]:
        labels = {"name": container["name"]}
        expected = {
            **labels,
            "environment": environment,
            "severity": "warning",
            "service": container["service"],
        }
        noise_labels = {"name": "someone-else"}
        cpu = container["cpu_limit"] * ratio
        cases.append(
            Case(
                "ContainerCpuOverLimit",
                expected,
                above=[_series("container_cpu_usage_seconds_total", labels, _counter(cpu * (1 + MARGIN)))],
                below=[_series("container_cpu_usage_seconds_total", labels, _counter(cpu * (1 - MARGIN)))],
                noise=[_series("container_cpu_usage_seconds_total", noise_labels, _counter(64.0))],
            )
        )
        memory = container["memory_limit_bytes"] * ratio
        cases.append(
            Case(
                "ContainerMemoryOverLimit",
                expected,
                above=[_series("container_memory_working_set_bytes", labels, _gauge(memory * (1 + MARGIN)))],
                below=[_series("container_memory_working_set_bytes", labels, _gauge(memory * (1 - MARGIN)))],
                noise=[_series("container_memory_working_set_bytes", noise_labels, _gauge(1e15))],
            )
        )
        # An OOM kill at minute 15 (counter 0 -> 1) against none at all.
        cases.append(
            Case(
                "ContainerOomKilled",
                expected,
                above=[_series("container_oom_events_total", labels, f"0x15 1x{STEPS - 15}")],
                below=[_series("container_oom_events_total", labels, f"0x{STEPS}")],
                noise=[_series("container_oom_events_total", noise_labels, f"0+1x{STEPS}")],
            )
        )

    database = monitoring["database"]
    limit = database["max_connections"] * database["connections_alert_ratio"]

    def connections(count: int, env: str = environment) -> list[dict[str, str]]:
        # postgres_exporter reports one series per database and state; the rule sums them.
        first = count // 2
        return [
            _series(
                "pg_stat_activity_count",
                {"environment": env, "datname": "makapix", "state": "active"},
                _gauge(first),
            ),
            _series(
                "pg_stat_activity_count",
                {"environment": env, "datname": "makapix", "state": "idle"},
                _gauge(count - first),
            ),
        ]

    cases.append(
        Case(
            "DatabaseConnectionsHigh",
            {
                "environment": environment,
                "severity": "critical" if production else "warning",
                "container": database["container"],
            },
            above=connections(int(limit) + 1),
            below=connections(int(limit) - 1 if limit == int(limit) else int(limit)),
            noise=connections(100_000, env="elsewhere"),
        )
    )

    vault = monitoring["vault"]
    size = 1e12
    filesystem = {
        "device": "/dev/sdb1",
        "fstype": "ext4",
        "mountpoint": vault["mountpoint"],
        "instance": "host:9100",
        "job": "node",
    }

    def filesystem_used(used_ratio: float, labels: dict[str, str] = filesystem) -> list[dict[str, str]]:
        return [
            _series("node_filesystem_size_bytes", labels, _gauge(size)),
            _series("node_filesystem_avail_bytes", labels, _gauge(size * (1 - used_ratio))),
        ]

    disk = vault["disk_alert_ratio"]
    cases.append(
        Case(
            "VaultDiskUsageHigh",
            {
                **filesystem,
                "environment": environment,
                "severity": "critical" if production else "warning",
                "vault_path": vault["host_path"],
            },
            above=filesystem_used(disk * (1 + MARGIN)),
            below=filesystem_used(disk * (1 - MARGIN)),
            noise=filesystem_used(0.999, {**filesystem, "mountpoint": "/elsewhere", "device": "/dev/sdc1"}),
        )
    )

    api = monitoring["api"]
    threshold = api["latency_p99_threshold_seconds"]
    # Buckets at t/2, t, 2t: 98.9% of requests within t puts p99 at 1.09 t (interpolated inside
    # (t, 2t]); 99.1% within t puts it at 0.9945 t.
    bound = threshold if threshold is not None else 0.5

    def requests(within_threshold: int, host: str) -> list[dict[str, str]]:
        labels = {"server": "srv0", "handler": "reverse_proxy", "code": "200", "method": "GET", "host": host}
        cumulative = {bound / 2: 900, bound: within_threshold, bound * 2: 1000, "+Inf": 1000}
        return [
            _series(
                "caddy_http_request_duration_seconds_bucket", {**labels, "le": str(le)}, _counter(count / 60)
            )
            for le, count in cumulative.items()
        ]

    slow_elsewhere = requests(100, "elsewhere.example")
    if threshold is not None:
        cases.append(
            Case(
                "ApiLatencyP99High",
                {"environment": environment, "severity": "critical", "host": api["domain"]},
                above=requests(989, api["domain"]),
                below=requests(991, api["domain"]),
                noise=slow_elsewhere,
            )
        )
    else:
        # Development has no latency alert at all: even a very slow dev api stays silent.
        cases.append(
            Case("ApiLatencyP99High", {}, above=[], below=requests(100, api["domain"]), noise=slow_elsewhere)
        )
    cases += isolation_audit_cases(monitoring)
    return cases


def isolation_audit_cases(monitoring: dict[str, Any]) -> list[Case]:
    """`python -m ops audit --textfile` series as node_exporter's textfile collector exposes them."""
    scrape = {"instance": "host:9100", "job": "node"}
    project = monitoring["project"]

    def findings(count: int, name: str = project) -> list[dict[str, str]]:
        return [
            _series(
                "isolation_audit_findings",
                {**scrape, "project": name, "kind": "shared-network"},
                _gauge(count),
            ),
            _series("isolation_audit_findings", {**scrape, "project": name, "kind": "shared-secret"}, "0x30"),
        ]

    def audit_ran(up: int, seconds_ago: int) -> list[dict[str, str]]:
        # promtool's clock starts at 0; the timestamp series follows it (minus the age of the last run).
        return [
            _series("isolation_audit_up", scrape, _gauge(up)),
            _series("isolation_audit_last_run_timestamp_seconds", scrape, f"{-seconds_ago}+60x{STEPS}"),
        ]

    noise = findings(5, name="someone-else")
    if monitoring["environment"] != "production":
        # Host-wide: only production's rule file alerts, so a finding never alerts twice.
        return [Case("IsolationAuditFinding", {}, above=[], below=findings(3), noise=noise)]
    labels = {"environment": "production"}
    stale = 3600
    return [
        Case(
            "IsolationAuditFinding",
            {**labels, "severity": "critical", "project": project, "kind": "shared-network"},
            above=findings(1),
            below=findings(0),
            noise=noise,
        ),
        Case(
            "IsolationAuditNotRunning",
            {**labels, "severity": "warning"},
            above=audit_ran(0, 60),
            below=audit_ran(1, 60),
        ),
        Case(
            "IsolationAuditNotRunning",
            {**labels, "severity": "warning"},
            above=audit_ran(1, stale + 120),
            below=audit_ran(1, stale - 120),
        ),
        Case(
            "IsolationAuditNotRunning",
            {**labels, "severity": "warning"},
            above=[{"series": "other_metric", "values": "1x30"}],
            below=audit_ran(1, 0),
        ),
    ]


def promtool_tests(rule_file: str, cases: list[Case], *, sabotage: bool = False) -> dict[str, Any]:
    """A promtool unit-test file: per case one test above (fires) and one below (silent).

    With ``sabotage`` the first "below" test wrongly expects its alert, to show the harness can fail.
    """
    tests = []
    for index, case in enumerate(cases):
        if case.above:
            tests.append(_promtool_test(case, case.above, [{"exp_labels": case.expected_labels}]))
        expect_below = [{"exp_labels": case.expected_labels}] if sabotage and index == 0 else []
        tests.append(_promtool_test(case, case.below, expect_below))
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def _promtool_test(
    case: Case, series: list[dict[str, str]], expected: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series + case.noise,
        "alert_rule_test": [{"eval_time": EVAL_TIME, "alertname": case.alertname, "exp_alerts": expected}],
    }


def _rules_without_annotations(rules_yaml: str) -> str:
    # Annotations carry {{ $value }}, rendered by Prometheus's own formatting; the threshold tests
    # compare labels only. test_annotations_render_on_the_real_file covers the annotations.
    document = yaml.safe_load(rules_yaml)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(document, sort_keys=False)


def run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *arguments], capture_output=True, text=True, check=False, timeout=120)


def write_rules_and_tests(
    directory: Path, monitoring: dict[str, Any], *, sabotage: bool = False
) -> tuple[Path, Path]:
    rules = render_alert_rules(MonitoringOutput.model_validate(monitoring))
    rule_file = directory / "rules.yml"
    rule_file.write_text(rules, encoding="utf-8")
    (directory / "rules-for-test.yml").write_text(_rules_without_annotations(rules), encoding="utf-8")
    test_file = directory / "rules_test.yml"
    document = promtool_tests("rules-for-test.yml", threshold_cases(monitoring), sabotage=sabotage)
    test_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return rule_file, test_file


@pytest.fixture(params=["production", "development"])
def monitoring(request: pytest.FixtureRequest) -> dict[str, Any]:
    fixture: dict[str, Any] = request.getfixturevalue(f"{request.param}_monitoring")
    return fixture


def test_promtool_check_rules_accepts_the_generated_file(monitoring: dict[str, Any], tmp_path: Path) -> None:
    rule_file, _ = write_rules_and_tests(tmp_path, monitoring)
    checked = run_promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Per container 3; database and vault; production: latency and the two isolation audit alerts.
    alerts = len(monitoring["containers"]) * 3 + 2 + 3 * (monitoring["environment"] == "production")
    assert f"SUCCESS: {alerts} rules found" in checked.stdout


def test_each_alert_fires_just_above_its_threshold_and_not_just_below(
    monitoring: dict[str, Any], tmp_path: Path
) -> None:
    _, test_file = write_rules_and_tests(tmp_path, monitoring)
    tested = run_promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_a_wrong_expectation_makes_promtool_fail(monitoring: dict[str, Any], tmp_path: Path) -> None:
    _, test_file = write_rules_and_tests(tmp_path, monitoring, sabotage=True)
    tested = run_promtool("test", "rules", str(test_file))
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


def test_a_changed_threshold_moves_where_the_alert_fires(
    production_monitoring: dict[str, Any], tmp_path: Path
) -> None:
    # Series made for max_connections=100 (81 connections) must not fire once the pool is 200.
    cases = [
        case for case in threshold_cases(production_monitoring) if case.alertname == "DatabaseConnectionsHigh"
    ]
    production_monitoring["database"]["max_connections"] = 200
    rules = render_alert_rules(MonitoringOutput.model_validate(production_monitoring))
    (tmp_path / "rules.yml").write_text(_rules_without_annotations(rules), encoding="utf-8")
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(promtool_tests("rules.yml", cases)), encoding="utf-8")
    tested = run_promtool("test", "rules", str(test_file))
    assert tested.returncode != 0, tested.stdout


def test_annotations_render_on_the_real_file(production_monitoring: dict[str, Any], tmp_path: Path) -> None:
    rule_file, _ = write_rules_and_tests(tmp_path, production_monitoring)
    case = next(c for c in threshold_cases(production_monitoring) if c.alertname == "DatabaseConnectionsHigh")
    expected = {
        "exp_labels": case.expected_labels,
        "exp_annotations": {
            "summary": "production database uses more than 80% of its connections",
            "description": "81% of max_connections=100 are in use on makapix-prod-db.",
        },
    }
    document = {
        "rule_files": [rule_file.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": case.above,
                "alert_rule_test": [
                    {"eval_time": EVAL_TIME, "alertname": case.alertname, "exp_alerts": [expected]}
                ],
            }
        ],
    }
    test_file = tmp_path / "annotations_test.yml"
    test_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    tested = run_promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_development_has_no_latency_rule_and_production_one(
    production_monitoring: dict[str, Any], development_monitoring: dict[str, Any]
) -> None:
    def alert_names(raw: dict[str, Any]) -> set[str]:
        document = yaml.safe_load(render_alert_rules(MonitoringOutput.model_validate(raw)))
        return {rule["alert"] for group in document["groups"] for rule in group["rules"]}

    assert "ApiLatencyP99High" in alert_names(production_monitoring)
    assert "ApiLatencyP99High" not in alert_names(development_monitoring)


# --- reading the outputs file -------------------------------------------------------------


def test_reads_outputs_with_other_secret_outputs(
    production_monitoring: dict[str, Any], write_outputs: Callable[[dict[str, Any]], Path]
) -> None:
    loaded = load_monitoring(write_outputs(production_monitoring))
    assert loaded.environment == "production"
    assert loaded.database.max_connections == 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the stack outputs file"),
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object of stack outputs"),
        (json.dumps({"other": 1}), "no key 'monitoring' among the stack outputs \\(present: other\\)"),
        (json.dumps({"monitoring": "[secret]"}), "is a secret output"),
        (
            json.dumps({"monitoring": {"project": "makapix", "environment": "production"}}),
            "malformed key 'monitoring': monitoring.containers: required key is missing",
        ),
    ],
)
def test_bad_outputs_file_gives_a_clear_error_naming_file_and_key(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(OpsError, match=message) as raised:
        load_monitoring(path)
    assert str(path) in str(raised.value)


def test_nested_malformed_field_is_named_by_its_path(
    production_monitoring: dict[str, Any], write_outputs: Callable[[dict[str, Any]], Path]
) -> None:
    production_monitoring["containers"][1]["cpu_limit"] = "lots"
    with pytest.raises(OpsError, match=r"monitoring\.containers\.1\.cpu_limit"):
        load_monitoring(write_outputs(production_monitoring))


def test_cli_writes_the_rules_file_and_refuses_bad_input(
    production_monitoring: dict[str, Any], write_outputs: Callable[[dict[str, Any]], Path], tmp_path: Path
) -> None:
    outputs = write_outputs(production_monitoring)
    target = tmp_path / "makapix-production.rules.yml"
    done = subprocess.run(
        [sys.executable, "-m", "ops", "alerts", str(outputs), "--output", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert run_promtool("check", "rules", str(target)).returncode == 0
    printed = subprocess.run(
        [sys.executable, "-m", "ops", "alerts", str(outputs)], capture_output=True, text=True, check=False
    )
    assert printed.stdout == target.read_text(encoding="utf-8")

    outputs.write_text(json.dumps({"monitoring": {}}), encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "ops", "alerts", str(outputs), "--output", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert str(outputs) in refused.stderr and "monitoring" in refused.stderr
    assert run_promtool("check", "rules", str(target)).returncode == 0  # the previous file is untouched
