"""The rendered Mosquitto files, run by real Mosquitto on loopback and probed with mosquitto_pub/sub.

Isolation is tested by delivery, not by return codes: Mosquitto acknowledges a forbidden
subscription (or publish) and then silently delivers nothing, so every "receives nothing" assertion
comes with a positive control on the same broker that does receive.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from components.mosquitto_files import (
    BrokerPaths,
    DedicatedBroker,
    MqttUser,
    SharedBroker,
    password_hash,
    render_dedicated,
    render_shared,
)

if TYPE_CHECKING:  # fixtures' types only
    from tests.components.conftest import CertificateAuthority, MosquittoHarness, MqttClient

PROD_PREFIX, DEV_PREFIX = "makapix", "makapix-dev"
PROD_USER, DEV_USER = "makapix-api", "makapix-dev-api"

MakeClient = Callable[..., "MqttClient"]
MakeCa = Callable[[str], "CertificateAuthority"]
Port = Callable[[], int]


def current_user() -> str:
    import getpass

    return getpass.getuser()  # Mosquitto started by root drops to this user; the test keeps it


def broker_paths(root: Path, ca: CertificateAuthority | None) -> BrokerPaths:
    """Temp-dir paths for one broker, with the CA certificate and a server key pair in certs/."""
    paths = BrokerPaths(
        config_dir=str(root / "config"), certs_dir=str(root / "certs"), data_dir=str(root / "data")
    )
    for directory in (paths.config_dir, paths.certs_dir, paths.data_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
    if ca is not None:
        server = ca.issue("localhost", server=True)
        shutil.copy(ca.cert, paths.cafile)
        shutil.copy(server.cert, paths.certfile)
        shutil.copy(server.key, paths.keyfile)
    return paths


@dataclass
class Side:
    """One environment's clients: a publisher/subscriber of its own, plus would-be intruders."""

    client: MqttClient
    intruders: list[MqttClient]


def assert_isolated(prod: Side, dev: Side) -> None:
    """Nothing crosses between the environments' prefixes, in either direction; own traffic flows."""
    prod_listener = prod.client.subscribe(f"{PROD_PREFIX}/#")
    prod_everything = prod.client.subscribe("#")
    dev_on_prod_prefix = dev.client.subscribe(f"{PROD_PREFIX}/#")
    dev_everything = dev.client.subscribe("#")

    assert prod.client.publish(f"{PROD_PREFIX}/posts/new", "prod-message").returncode == 0
    for intruder in [dev.client, *dev.intruders]:
        intruder.publish(f"{PROD_PREFIX}/posts/new", f"intrusion-by-{intruder.name}")  # refused or dropped
    for intruder in [prod.client, *prod.intruders]:
        intruder.publish(f"{DEV_PREFIX}/posts/new", f"intrusion-by-{intruder.name}")
    assert dev.client.publish(f"{DEV_PREFIX}/posts/new", "dev-message").returncode == 0

    assert prod_listener.messages() == [f"{PROD_PREFIX}/posts/new prod-message"]
    assert prod_everything.messages() == [f"{PROD_PREFIX}/posts/new prod-message"]
    assert dev_on_prod_prefix.messages() == []
    assert dev_everything.messages() == [f"{DEV_PREFIX}/posts/new dev-message"]


# --- dedicated mode: a broker per environment, mTLS ----------------------------------------------


@dataclass
class DedicatedPair:
    prod_port: int
    dev_port: int
    prod_ca: CertificateAuthority
    dev_ca: CertificateAuthority


@pytest.fixture
def dedicated_brokers(
    mosquitto: MosquittoHarness, certificate_authority: MakeCa, unused_port: Port, tmp_path: Path
) -> DedicatedPair:
    pair = DedicatedPair(
        unused_port(), unused_port(), certificate_authority("prod"), certificate_authority("dev")
    )
    for name, prefix, port, ca in (
        ("prod", PROD_PREFIX, pair.prod_port, pair.prod_ca),
        ("dev", DEV_PREFIX, pair.dev_port, pair.dev_ca),
    ):
        paths = broker_paths(tmp_path / name, ca)
        files = render_dedicated(
            DedicatedBroker(
                name, prefix, port=port, bind_address="127.0.0.1", paths=paths, run_as_user=current_user()
            )
        )
        assert files.passwords is None
        mosquitto.start(Path(paths.config_dir), files.mosquitto_conf, {"acl": files.acl}, [port])
    return pair


def test_dedicated_brokers_keep_the_environments_apart(
    dedicated_brokers: DedicatedPair, mqtt_client: MakeClient
) -> None:
    brokers = dedicated_brokers
    prod = mqtt_client(
        "prod-api", brokers.prod_port, ca=brokers.prod_ca.cert, cert=brokers.prod_ca.issue(PROD_USER)
    )
    dev = mqtt_client(
        "dev-api", brokers.dev_port, ca=brokers.dev_ca.cert, cert=brokers.dev_ca.issue(DEV_USER)
    )
    # A development certificate that claims the production username, on its own broker.
    dev_impostor = mqtt_client(
        "dev-impostor", brokers.dev_port, ca=brokers.dev_ca.cert, cert=brokers.dev_ca.issue(PROD_USER)
    )
    # A development client pointed at the production broker.
    dev_at_prod = mqtt_client(
        "dev-at-prod", brokers.prod_port, ca=brokers.prod_ca.cert, cert=brokers.dev_ca.issue(DEV_USER)
    )
    assert dev_impostor.connects() and not dev_at_prod.connects()

    assert_isolated(Side(prod, []), Side(dev, [dev_impostor, dev_at_prod]))


def test_dedicated_broker_refuses_the_other_environments_certificate_and_no_certificate(
    dedicated_brokers: DedicatedPair, mqtt_client: MakeClient
) -> None:
    brokers = dedicated_brokers
    dev_ca, prod_ca = brokers.dev_ca, brokers.prod_ca
    assert mqtt_client("dev-own", brokers.dev_port, ca=dev_ca.cert, cert=dev_ca.issue(DEV_USER)).connects()
    assert mqtt_client(
        "prod-own", brokers.prod_port, ca=prod_ca.cert, cert=prod_ca.issue(PROD_USER)
    ).connects()

    prod_cert_at_dev = mqtt_client(
        "prod-at-dev", brokers.dev_port, ca=dev_ca.cert, cert=prod_ca.issue(PROD_USER)
    )
    no_cert_at_dev = mqtt_client("anonymous-at-dev", brokers.dev_port, ca=dev_ca.cert)
    no_cert_at_prod = mqtt_client("anonymous-at-prod", brokers.prod_port, ca=prod_ca.cert)
    password_at_dev = mqtt_client(
        "password-at-dev", brokers.dev_port, ca=dev_ca.cert, username=DEV_USER, password="not-a-certificate"
    )
    for refused in (prod_cert_at_dev, no_cert_at_dev, no_cert_at_prod, password_at_dev):
        assert not refused.connects(), refused.name


# --- shared mode: one broker, a user per environment ---------------------------------------------

PROD_PASSWORD, DEV_PASSWORD = "prod-test-password-7Hq2", "dev-test-password-Lx93"


@dataclass
class SharedRun:
    port: int
    tls_port: int
    ca: CertificateAuthority
    files_dir: Path


@pytest.fixture
def shared_broker(
    mosquitto: MosquittoHarness, certificate_authority: MakeCa, unused_port: Port, tmp_path: Path
) -> SharedRun:
    run = SharedRun(
        unused_port(), unused_port(), certificate_authority("shared"), tmp_path / "shared" / "config"
    )
    paths = broker_paths(tmp_path / "shared", run.ca)
    files = render_shared(
        SharedBroker(
            users=(
                MqttUser(PROD_USER, PROD_PASSWORD, PROD_PREFIX),
                MqttUser(DEV_USER, DEV_PASSWORD, DEV_PREFIX),
            ),
            port=run.port,
            tls_port=run.tls_port,
            bind_address="127.0.0.1",
            paths=paths,
            run_as_user=current_user(),
        )
    )
    assert files.passwords is not None
    mosquitto.start(
        run.files_dir,
        files.mosquitto_conf,
        {"acl": files.acl, "passwords": files.passwords},
        [run.port, run.tls_port],
    )
    return run


def test_shared_broker_keeps_the_environments_apart(
    shared_broker: SharedRun, mqtt_client: MakeClient
) -> None:
    port = shared_broker.port
    prod = mqtt_client("prod-api", port, username=PROD_USER, password=PROD_PASSWORD)
    dev = mqtt_client("dev-api", port, username=DEV_USER, password=DEV_PASSWORD)
    assert_isolated(Side(prod, []), Side(dev, []))


def test_shared_broker_refuses_wrong_password_and_anonymous_clients(
    shared_broker: SharedRun, mqtt_client: MakeClient
) -> None:
    port = shared_broker.port
    assert mqtt_client("dev-ok", port, username=DEV_USER, password=DEV_PASSWORD).connects()
    assert not mqtt_client("dev-wrong", port, username=DEV_USER, password=PROD_PASSWORD).connects()
    assert not mqtt_client("prod-wrong", port, username=PROD_USER, password=DEV_PASSWORD).connects()
    assert not mqtt_client("nobody", port, username="intruder", password=DEV_PASSWORD).connects()
    assert not mqtt_client("anonymous", port).connects()


def test_shared_broker_tls_listener_takes_passwords_inside_tls(
    shared_broker: SharedRun, mqtt_client: MakeClient
) -> None:
    run = shared_broker
    assert mqtt_client(
        "dev-tls", run.tls_port, ca=run.ca.cert, username=DEV_USER, password=DEV_PASSWORD
    ).connects()
    assert not mqtt_client(
        "dev-plain-on-tls", run.tls_port, username=DEV_USER, password=DEV_PASSWORD
    ).connects()
    assert not mqtt_client(
        "dev-tls-wrong", run.tls_port, ca=run.ca.cert, username=DEV_USER, password="wrong"
    ).connects()


def test_shared_files_hold_no_plaintext_password_and_rerender_identically(shared_broker: SharedRun) -> None:
    written = "".join(path.read_text() for path in shared_broker.files_dir.iterdir() if path.suffix != ".log")
    assert PROD_PASSWORD not in written and DEV_PASSWORD not in written
    assert written.count("$7$") == 2

    def render(dev_password: str) -> str | None:
        return render_shared(
            SharedBroker(
                users=(
                    MqttUser(PROD_USER, PROD_PASSWORD, PROD_PREFIX),
                    MqttUser(DEV_USER, dev_password, DEV_PREFIX),
                )
            )
        ).passwords

    assert render(DEV_PASSWORD) == render(DEV_PASSWORD)
    assert render(DEV_PASSWORD) != render(DEV_PASSWORD + "x")
    assert DEV_PASSWORD not in repr(MqttUser(DEV_USER, DEV_PASSWORD, DEV_PREFIX))


def test_password_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    _, kind, iterations, salt, digest = password_hash("alice", "secret").split("$")
    assert kind == "7" and int(iterations) >= 101 and len(base64.b64decode(salt)) == 12
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", base64.b64decode(salt), int(iterations))
    assert base64.b64decode(digest) == expected
    assert password_hash("bob", "secret").split("$")[3] != salt  # same password, another user: another salt


# --- bad settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DedicatedBroker("dev", "makapix/dev"), "topic_prefix 'makapix/dev' must be one topic level"),
        (lambda: DedicatedBroker("dev", "#"), "dedicated broker 'dev': topic_prefix '#'"),
        (lambda: DedicatedBroker("dev", "makapix-dev", port=0), "port 0 is not a TCP port"),
        (lambda: SharedBroker(users=()), "give at least one user"),
        (
            lambda: SharedBroker(users=(MqttUser("a", "pw", "makapix"), MqttUser("b", "pw2", "makapix"))),
            "every user needs its own topic_prefix",
        ),
        (
            lambda: SharedBroker(users=(MqttUser("a", "pw", "makapix"), MqttUser("a", "pw2", "makapix-dev"))),
            "every user needs its own username",
        ),
        (lambda: SharedBroker(users=(MqttUser("a:b", "pw", "makapix"),)), "username 'a:b' must match"),
        (
            lambda: SharedBroker(users=(MqttUser("a", "", "makapix"),)),
            "user 'a' needs a non-empty one-line password",
        ),
        (lambda: SharedBroker(users=(MqttUser("a", "pw", "makapix"),), port=None), "give port or tls_port"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_them(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)
    assert "pw2" not in str(error.value)
