"""The secrets' way to a remote host command: an environment file on stdin, read by a real shell."""

from __future__ import annotations

import subprocess

import pytest

from components.config import HostSettings
from components.host_command import environment_file, remote_script

AWKWARD_VALUES = {
    "SAMPLING_SOURCE_URL": "postgresql://sampler:p'a\"ss w$rd`x`@127.0.0.1:55432/makapix",
    "EMPTY": "",
    "MULTILINE": "first line\nsecond; rm -rf /tmp/nothing\n",
    "GLOB": "*",
}


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_every_value_arrives_unchanged_and_nothing_is_executed(shell: str, tmp_path: object) -> None:
    host = HostSettings(ssh_host="10.0.0.5", checkout="/")
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
    host = HostSettings(ssh_host="10.0.0.5", checkout="/tmp")
    shown = subprocess.run(
        ["/bin/sh", "-c", remote_script(host, "pwd")], input="", capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "/tmp"


def test_a_failing_command_fails_the_script() -> None:
    host = HostSettings(ssh_host="10.0.0.5", checkout="/")
    result = subprocess.run(["/bin/sh", "-c", remote_script(host, "exit 3")], input="", check=False)
    assert result.returncode == 3
