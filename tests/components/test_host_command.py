"""The secrets' way to a remote host command: an environment file on stdin, read by a real shell."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config import HostSettings
from components.host_command import environment_file, remote_script

KNOWN_HOSTS = "10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"
AWKWARD_VALUES = {
    "SAMPLING_SOURCE_URL": "postgresql://sampler:p'a\"ss w$rd`x`@127.0.0.1:55432/makapix",
    "EMPTY": "",
    "MULTILINE": "first line\nsecond; rm -rf /tmp/nothing\n",
    "GLOB": "*",
}


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_every_value_arrives_unchanged_and_nothing_is_executed(shell: str, tmp_path: object) -> None:
    host = HostSettings(ssh_host="10.0.0.5", ssh_known_hosts=KNOWN_HOSTS, checkout="/")
    script = remote_script(host, "env -0")
    shown = subprocess.run(
        [shell, "-c", script],
        input=environment_file(AWKWARD_VALUES),
        capture_output=True,
        text=True,
        check=True,
    )
    received = dict(entry.split("=", 1) for entry in shown.stdout.split("\0") if entry)
    for key, value in AWKWARD_VALUES.items():
        assert received[key] == value


def test_the_script_changes_to_the_checkout_before_running() -> None:
    host = HostSettings(ssh_host="10.0.0.5", ssh_known_hosts=KNOWN_HOSTS, checkout="/tmp")
    shown = subprocess.run(
        ["/bin/sh", "-c", remote_script(host, "pwd")], input="", capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "/tmp"


def test_a_failing_command_fails_the_script() -> None:
    host = HostSettings(ssh_host="10.0.0.5", ssh_known_hosts=KNOWN_HOSTS, checkout="/")
    result = subprocess.run(["/bin/sh", "-c", remote_script(host, "exit 3")], input="", check=False)
    assert result.returncode == 3


def test_one_deploy_key_for_both_stacks_is_no_collision_and_reaches_only_the_ssh_connection(
    tmp_path: Path,
) -> None:
    """The SSH key of host commands is the deployment's, not the application's: both stacks may share it."""
    from tools.desired_state import Secret, _redact, render

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "Pulumi.yaml").write_text(f"name: makapix\nruntime: python\nmain: {root}\n")
    for stack in ("prod", "dev"):
        document = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())
        document["config"]["makapix:host"] = {"ssh_host": "10.0.0.5", "ssh_known_hosts": KNOWN_HOSTS}
        document["config"]["makapix:host_ssh_private_key"] = {"secure": "v1:the-same-ciphertext"}
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    recorded = {
        stack: json.loads((root / "stack_references" / f"{stack}.json").read_text())
        for stack in ("prod", "dev")
    }
    prod = render("prod", tmp_path, references=recorded)
    assert "host_ssh_private_key" not in json.dumps(prod.outputs["isolation_fingerprint"])
    # The dev render runs its isolation check against this prod: it must find no collision.
    dev = render("dev", tmp_path, references={"prod": _redact(prod.outputs)})
    command = dev.get("command:remote:Command", "makapix-dev-sampling-command")
    assert isinstance(command.inputs["connection"], Secret) or isinstance(
        command.inputs["connection"]["privateKey"], Secret
    )
    for container in dev.of_type("docker:index/container:Container"):
        assert "placeholder-for-makapix-host_ssh_private_key" not in json.dumps(
            container.plain_inputs(), default=str
        )


def test_the_remote_connection_accepts_only_the_pinned_host_key(tmp_path: Path) -> None:
    from tools.desired_state import render

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "Pulumi.yaml").write_text(f"name: makapix\nruntime: python\nmain: {root}\n")
    document = yaml.safe_load((root / "Pulumi.prod.yaml").read_text())
    document["config"]["makapix:host"] = {"ssh_host": "10.0.0.5", "ssh_known_hosts": KNOWN_HOSTS}
    document["config"]["makapix:host_ssh_private_key"] = {"secure": "v1:key"}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    recorded = {
        stack: json.loads((root / "stack_references" / f"{stack}.json").read_text())
        for stack in ("prod", "dev")
    }
    prod = render("prod", tmp_path, references=recorded)
    commands = prod.of_type("command:remote:Command")
    assert commands
    for command in commands:
        assert command.plain_inputs()["connection"]["hostKey"] == KNOWN_HOSTS.split(" ", 1)[1]


def test_ssh_understands_the_pinning_options() -> None:
    """The options given to the Docker provider are valid for this OpenSSH (KnownHostsCommand: 8.5+)."""
    import shutil

    from components.known_hosts import parse_known_hosts_line, ssh_pinning_options

    if shutil.which("ssh") is None:
        pytest.skip("no ssh client here")
    key = parse_known_hosts_line(f"[10.0.0.5]:2222 {KNOWN_HOSTS.split(' ', 1)[1]}", "10.0.0.5", 2222)
    shown = subprocess.run(
        ["ssh", "-G", *ssh_pinning_options(key), "-p", "2222", "deploy@10.0.0.5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "stricthostkeychecking true" in shown
    assert f"knownhostscommand /bin/echo {key.line.lower()}" in shown
    assert "userknownhostsfile /dev/null" in shown
