"""The monitoring output each stack exports is read by `python -m ops alerts` and accepted by promtool."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.monitoring import MonitoringOutput

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_stack_monitoring_output_becomes_valid_alert_rules(stack, render_stack, tmp_path):
    outputs = render_stack(stack).outputs
    monitoring = MonitoringOutput.model_validate(outputs["monitoring"])
    names = {container.name for container in monitoring.containers}
    assert {f"makapix-{stack}-api", f"makapix-{stack}-db", f"makapix-{stack}-worker"} <= names
    api = next(c for c in monitoring.containers if c.name == f"makapix-{stack}-api")
    assert api.memory_limit_bytes == (512 if stack == "dev" else 2048) * 2**20
    assert monitoring.database.max_connections == (50 if stack == "dev" else 100)
    assert monitoring.api.latency_p99_threshold_seconds == (None if stack == "dev" else 0.5)

    # What `pulumi stack output --json` would print, secrets hidden.
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps({"monitoring": outputs["monitoring"], "database_url": "[secret]"}))
    rules_file = tmp_path / "rules.yml"
    subprocess.run(
        [sys.executable, "-m", "ops", "alerts", str(outputs_file), "--output", str(rules_file)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    checked = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    assert f"makapix-{stack}-api" in rules_file.read_text()
