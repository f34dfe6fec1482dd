import pytest

pytestmark = pytest.mark.engine


def test_busybox_image_runs_a_command_on_the_engine(docker_client, busybox_image):
    output = docker_client.containers.run(busybox_image, ["sh", "-c", "echo hello from $(uname -s)"], remove=True)
    assert output.decode().strip() == "hello from Linux"
