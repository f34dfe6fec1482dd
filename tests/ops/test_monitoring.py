"""The monitoring output schema: what it accepts, what it refuses, and its defaults (004 §12)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ops.monitoring import MonitoringOutput, monitoring_json_schema


def test_both_sample_outputs_validate_and_round_trip_through_json(
    production_monitoring: dict[str, Any], development_monitoring: dict[str, Any]
) -> None:
    for raw in (production_monitoring, development_monitoring):
        model = MonitoringOutput.model_validate(raw)
        again = MonitoringOutput.model_validate(json.loads(json.dumps(model.model_dump(mode="json"))))
        assert again == model


def test_thresholds_default_to_004_section_12(development_monitoring: dict[str, Any]) -> None:
    raw = copy.deepcopy(development_monitoring)
    del raw["database"]["connections_alert_ratio"]
    del raw["vault"]["disk_alert_ratio"]
    del raw["vault"]["mountpoint"]
    del raw["container_limit_alert_ratio"]
    model = MonitoringOutput.model_validate(raw)
    assert model.database.connections_alert_ratio == 0.8
    assert model.vault.disk_alert_ratio == 0.8
    assert model.vault.mountpoint == "/"
    assert model.container_limit_alert_ratio == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["api"].update(latency_p99_threshold_seconds=None), "required for production"),
        (lambda m: m.update(sampling={"users": 1}), "sampling is development only"),
        (lambda m: m["containers"].append(dict(m["containers"][0])), "duplicate container names"),
        (lambda m: m["database"].update(max_connections=0), "greater than 0"),
        (lambda m: m["database"].update(connections_alert_ratio=1.5), "less than or equal to 1"),
        (lambda m: m["vault"].update(mountpoint="/var"), "does not contain vault.host_path"),
        (lambda m: m.update(environment="staging"), "'production' or 'development'"),
        (lambda m: m.update(schema_version=2), "Input should be 1"),
        (lambda m: m["database"].update(max_conections=10), "Extra inputs are not permitted"),
        (lambda m: m["containers"][0].pop("memory_limit_bytes"), "Field required"),
    ],
)
def test_production_output_refuses(production_monitoring: dict[str, Any], change: Any, message: str) -> None:
    raw = copy.deepcopy(production_monitoring)
    change(raw)
    with pytest.raises(ValidationError, match=message):
        MonitoringOutput.model_validate(raw)


def test_development_refuses_a_latency_threshold(development_monitoring: dict[str, Any]) -> None:
    raw = copy.deepcopy(development_monitoring)
    raw["api"]["latency_p99_threshold_seconds"] = 0.5
    with pytest.raises(ValidationError, match="production only"):
        MonitoringOutput.model_validate(raw)


def test_committed_json_schema_is_the_models_schema() -> None:
    # The schema is a contract with monitoring: a change to the model must be a conscious one.
    committed = json.loads((Path(__file__).parents[2] / "ops" / "monitoring.schema.json").read_text("utf-8"))
    assert committed == monitoring_json_schema(), (
        "ops/monitoring.py changed the monitoring output schema: if only optional fields were added, "
        "regenerate with `python -m ops schema > ops/monitoring.schema.json`; if a field was renamed, "
        "removed or made required, bump SCHEMA_VERSION too"
    )


def test_schema_command_prints_the_schema() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "ops", "schema"], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(printed) == monitoring_json_schema()
