"""scripts/up on a fresh machine: what it installs, asks and says, decided with stand-ins on PATH.

Each test runs a copy of the script in a scratch project whose PATH holds only the basic tools it needs
plus stand-ins for pulumi, docker, curl, apt-get, sudo and id; every stand-in logs its arguments. The
scratch project has a stand-in ``.venv/bin/python``, so nothing is installed and nothing reaches a network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINNED = "3.272.0"
# What the script needs from the system besides the stand-ins.
BASICS = (
    "bash", "sh", "env", "dirname", "mkdir", "mktemp", "rm", "grep", "cat", "chmod", "uname", "python3",
)  # fmt: skip


def stand_in(path: Path, body: str = "") -> None:
    """A program that logs ``name args`` to $STAND_IN_LOG, then runs ``body``."""
    path.write_text(f'#!/bin/bash\necho "{path.name} $*" >>"$STAND_IN_LOG"\n{body}\n')
    path.chmod(0o755)


@dataclass
class Machine:
    project: Path
    bin: Path
    home: Path
    log: Path

    def run(self, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.project / "scripts" / "up"), *arguments],
            env={
                "PATH": str(self.bin),
                "HOME": str(self.home),
                "STAND_IN_LOG": str(self.log),
                "STAND_IN_BIN": str(self.bin),
                "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
            },
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def calls(self, program: str) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.split(" ", 1)[0] == program]

    def has(self, program: str, body: str = "") -> None:
        stand_in(self.bin / program, body)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    project, bin_dir, home = tmp_path / "project", tmp_path / "bin", tmp_path / "home"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "up", project / "scripts" / "up")
    (project / ".venv" / "bin").mkdir(parents=True)
    stand_in(project / ".venv" / "bin" / "python")
    bin_dir.mkdir()
    home.mkdir()
    for program in BASICS:
        found = shutil.which(program)
        assert found is not None, program
        (bin_dir / program).symlink_to(found)
    result = Machine(project, bin_dir, home, tmp_path / "calls.log")
    result.has("id", 'if [[ $1 == -u ]]; then echo 0; else exec /usr/bin/id "$@"; fi')
    return result


PULUMI = 'if [[ "$*" == "stack ls --json" ]]; then echo "[]"; fi'
# Pulumi's installer, as served by the curl stand-in: installs a pulumi stand-in into --install-root/bin.
INSTALLER = r"""#!/bin/sh
echo "installer $*" >>"$STAND_IN_LOG"
root=""
while [ $# -gt 0 ]; do
    if [ "$1" = "--install-root" ]; then root=$2; fi
    shift
done
mkdir -p "$root/bin"
printf '#!/bin/bash\necho "pulumi $*" >>"$STAND_IN_LOG"\nif [[ "$*" == "stack ls --json" ]]; then echo "[]"; fi\n' >"$root/bin/pulumi"
chmod 755 "$root/bin/pulumi"
"""


def curl_serving(tmp_path: Path) -> str:
    installer = tmp_path / "installer.sh"
    installer.write_text(INSTALLER)
    return f'out=""; while [[ $# -gt 0 ]]; do [[ $1 == --output ]] && out=$2; shift; done; /bin/cp {installer} "$out"'


def test_everything_present_installs_nothing_and_runs_pulumi_up(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    machine.has("docker")
    done = machine.run("dev", "--yes")
    assert done.returncode == 0, done.stderr
    assert machine.calls("pulumi")[-1] == "pulumi up --stack dev --yes"
    assert machine.calls("curl") == machine.calls("apt-get") == []
    assert "docs.docker.com" not in done.stderr and "install" not in done.stderr.lower()


def test_a_missing_pulumi_cli_is_installed_at_the_pinned_version_into_dot_pulumi(
    machine: Machine, tmp_path: Path
) -> None:
    machine.has("docker")
    machine.has("curl", curl_serving(tmp_path))
    done = machine.run("dev")
    assert done.returncode == 0, done.stderr
    assert machine.calls("curl") and "https://get.pulumi.com" in machine.calls("curl")[0]
    assert machine.calls("installer") == [
        f"installer --version {PINNED} --install-root {machine.home}/.pulumi --no-edit-path"
    ]
    assert (machine.home / ".pulumi" / "bin" / "pulumi").exists()
    assert machine.calls("pulumi")[-1] == "pulumi up --stack dev"
    # Installed once: the next run finds it in ~/.pulumi/bin.
    assert machine.run("dev").returncode == 0
    assert len(machine.calls("installer")) == 1


def test_an_unreachable_pulumi_download_says_what_to_install_and_what_works_without_it(
    machine: Machine,
) -> None:
    machine.has("docker")
    machine.has("curl", 'echo "curl: (6) Could not resolve host: get.pulumi.com" >&2; exit 6')
    done = machine.run("dev")
    assert done.returncode == 2
    error = " ".join(done.stderr.split())
    assert "cannot download Pulumi's installer from https://get.pulumi.com" in error
    assert f"Install the Pulumi CLI {PINNED} by hand" in error
    assert f"https://get.pulumi.com/releases/sdk/pulumi-v{PINNED}-linux-" in error
    assert "tar -xzf" in error and "~/.pulumi/bin" in error
    assert ".venv/bin/python -m tools.desired_state dev" in error
    # Docker is there: no word about installing it.
    assert "docs.docker.com" not in error and "Docker Engine" not in error
    assert machine.calls("pulumi") == []


def test_a_missing_docker_without_yes_or_a_terminal_is_not_installed(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    machine.has("apt-get")
    done = machine.run("dev")
    assert done.returncode == 2
    assert (
        "'scripts/up dev --yes' installs it from the distribution's packages (apt-get install docker.io"
        in (" ".join(done.stderr.split()))
    )
    assert machine.calls("apt-get") == [] and machine.calls("pulumi") == []


def test_a_missing_docker_is_installed_from_the_distribution_with_yes_as_root(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    # The package brings the docker client (a stand-in that answers `docker info`).
    machine.has(
        "apt-get",
        'if [[ $* == *install* ]]; then printf \'#!/bin/bash\\necho "docker $*" >>"$STAND_IN_LOG"\\n\' '
        '>"$STAND_IN_BIN/docker"; chmod 755 "$STAND_IN_BIN/docker"; fi',
    )
    done = machine.run("dev", "--yes")
    assert done.returncode == 0, done.stderr
    assert machine.calls("apt-get") == ["apt-get update -qq", "apt-get install -y -qq docker.io"]
    assert machine.calls("docker") == ["docker info"]
    assert machine.calls("pulumi")[-1] == "pulumi up --stack dev --yes"


def test_installing_docker_as_another_user_goes_through_sudo_or_is_refused(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    machine.has("apt-get")
    machine.has("id", "echo 1000")
    refused = machine.run("dev", "--yes")
    assert refused.returncode == 2
    assert "installing the Docker Engine needs root: run 'sudo scripts/up dev --yes'" in " ".join(
        refused.stderr.split()
    )
    assert machine.calls("apt-get") == []
    machine.has("sudo", '"$@"')
    machine.run("dev", "--yes")
    assert machine.calls("sudo")[0] == "sudo apt-get update -qq"


def test_an_unreachable_package_mirror_says_what_to_install_by_hand(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    machine.has("apt-get", 'echo "E: Failed to fetch http://deb.debian.org/..." >&2; exit 100')
    done = machine.run("dev", "--yes")
    assert done.returncode == 2
    error = " ".join(done.stderr.split())
    assert "'apt-get install docker.io' failed (no network to the package mirror?)" in error
    assert "Install the Docker Engine by hand" in error
    assert ".venv/bin/python -m tools.desired_state dev" in error
    assert machine.calls("pulumi") == []


def test_docker_installed_but_not_answering_is_told_to_start_it_not_to_install_it(machine: Machine) -> None:
    machine.has("pulumi", PULUMI)
    machine.has("docker", "exit 1")
    done = machine.run("dev")
    assert done.returncode == 2
    assert "the Docker Engine is installed but does not answer" in done.stderr
    assert "docs.docker.com" not in done.stderr and machine.calls("apt-get") == []


def test_the_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/test installs it as root)")
    checked = subprocess.run(
        ["shellcheck", str(ROOT / "scripts" / "up")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout
    assert os.access(ROOT / "scripts" / "up", os.X_OK)
