"""The MQTT broker each stack declares: exact properties under Pulumi's mocks, then the very files it
uploads, run by a real Mosquitto with real certificates.

For the second part the tls: resources are answered by ``OpensslPki`` (real keys and certificates made
with ``openssl`` from exactly the inputs the program gives pulumi-tls), so the CA, server and client
certificates, the uploaded files and the api's environment are the program's own.  Isolation is tested
by delivery: Mosquitto acknowledges a forbidden subscription and then delivers nothing, so every
"receives nothing" comes with a positive control on the same broker.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from pulumi.runtime import rpc

from components.mqtt import PLAIN_PORT, TLS_PORT
from components.parsing import ConfigurationError, parse_environment
from components.placement import stack_placement
from tools.desired_state import RenderError, Rendering, Secret, render

if TYPE_CHECKING:  # fixtures' types only
    from tests.components.conftest import KeyPair, MosquittoHarness, MqttClient

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
PROJECT_DIR = Path(__file__).resolve().parents[2]

MakeClient = Callable[..., "MqttClient"]


def broker(rendering: Rendering, stack: str) -> Any:
    return rendering.get(CONTAINER, f"makapix-{stack}-mqtt-container")


def uploads(rendering: Rendering, stack: str) -> dict[str, dict[str, Any]]:
    return {upload["file"]: upload for upload in broker(rendering, stack).plain_inputs()["uploads"]}


def envs(rendering: Rendering, stack: str, service: str) -> dict[str, str]:
    entries = rendering.get(CONTAINER, f"makapix-{stack}-{service}-container").plain_inputs()["envs"]
    return dict(entry.split("=", 1) for entry in entries)


# --- what each stack declares (mocks) ---------------------------------------------------------------


@pytest.mark.parametrize(("stack", "public_port"), [("prod", 8883), ("dev", 8884)])
def test_each_environment_runs_its_own_broker(stack: str, public_port: int, render_stack: Any) -> None:
    rendering = render_stack(stack)
    container = broker(rendering, stack)
    inputs = container.plain_inputs()
    assert inputs["name"] == f"makapix-{stack}-mqtt"
    assert inputs["image"] == "eclipse-mosquitto:2.0.20"
    assert inputs["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    assert inputs["ports"] == [{"internal": 8883, "external": public_port}]
    # The public port is forwarded only from a non-internal network (moby/moby#36174): the broker
    # also joins its environment's "published" bridge, without an alias (services use "mqtt" inside).
    assert inputs["networksAdvanced"] == [
        {"name": f"makapix-{stack}-internal", "aliases": ["mqtt"]},
        {"name": f"makapix-{stack}-published"},
    ]
    assert inputs["volumes"] == [
        {"volumeName": f"makapix-{stack}_mqtt_data", "containerPath": "/mosquitto/data"}
    ]
    assert (inputs["cpus"], inputs["memory"]) == (("0.5", 256) if stack == "prod" else ("0.25", 128))
    volume = rendering.get(VOLUME, f"makapix-{stack}-mqtt-data")
    assert volume.options["protect"] is True and volume.options["retain_on_delete"] is True
    assert container.options["delete_before_replace"] is True


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_uploaded_files_are_readable_by_mosquitto_and_secret_in_state(stack: str, render_stack: Any) -> None:
    rendering = render_stack(stack)
    container = broker(rendering, stack)
    files = uploads(rendering, stack)
    assert sorted(files) == [
        "/mosquitto/certs/ca.crt",
        "/mosquitto/certs/server.crt",
        "/mosquitto/certs/server.key",
        "/mosquitto/config/acl",
        "/mosquitto/config/mosquitto.conf",
    ]
    assert {upload["permissions"] for upload in files.values()} == {"0444"}
    assert (
        files["/mosquitto/certs/server.key"]["content"]
        == f"mock-privateKeyPem-makapix-{stack}-mqtt-server-key"
    )
    assert files["/mosquitto/certs/ca.crt"]["content"] == f"mock-certPem-makapix-{stack}-mqtt-ca"
    prefix = "makapix" if stack == "prod" else "makapix-dev"
    assert f"pattern readwrite {prefix}/#" in files["/mosquitto/config/acl"]["content"]
    # The key makes the whole uploads input secret, so the state keeps it encrypted.
    assert isinstance(container.inputs["uploads"], Secret)


def test_certificates_per_environment_with_the_right_names_and_uses(render_stack: Any) -> None:
    dev = render_stack("dev")
    ca = dev.get(SELF_SIGNED, "makapix-dev-mqtt-ca").plain_inputs()
    assert ca["isCaCertificate"] is True
    assert ca["subject"]["commonName"] == "makapix-dev MQTT CA"
    assert ca["allowedUses"] == ["cert_signing", "crl_signing"]
    server = dev.get(CERT_REQUEST, "makapix-dev-mqtt-server-request").plain_inputs()
    assert server["dnsNames"] == ["makapix-dev-mqtt", "mqtt", "development.makapix.club"]
    client = dev.get(CERT_REQUEST, "makapix-dev-mqtt-client-request").plain_inputs()
    assert client["subject"]["commonName"] == "makapix-dev-api"
    for role, uses in (
        ("server", ["server_auth", "digital_signature", "key_encipherment"]),
        ("client", ["client_auth", "digital_signature"]),
    ):
        signed = dev.get(SIGNED, f"makapix-dev-mqtt-{role}-cert").plain_inputs()
        assert signed["allowedUses"] == uses
        assert signed["caCertPem"] == "mock-certPem-makapix-dev-mqtt-ca"
        assert signed["validityPeriodHours"] == 397 * 24 and signed["earlyRenewalHours"] == 30 * 24
    prod_client = render_stack("prod").get(CERT_REQUEST, "makapix-prod-mqtt-client-request").plain_inputs()
    assert prod_client["subject"]["commonName"] == "makapix-api"
    public = render_stack("dev", mqtt={"public_host": "mqtt-dev.makapix.club"})
    assert public.get(CERT_REQUEST, "makapix-dev-mqtt-server-request").plain_inputs()["dnsNames"][-1] == (
        "mqtt-dev.makapix.club"
    )


def test_api_and_workers_get_their_certificate_as_secrets_web_gets_none(render_stack: Any) -> None:
    dev = render_stack("dev")
    for service in ("api", "worker"):
        env = envs(dev, "dev", service)
        assert (env["MQTT_HOST"], env["MQTT_PORT"], env["MQTT_TLS_ENABLED"]) == ("mqtt", "8883", "true")
        assert (env["MQTT_TOPIC_PREFIX"], env["MQTT_USERNAME"], env["MQTT_PUBLIC_PORT"]) == (
            "makapix-dev",
            "makapix-dev-api",
            "8884",
        )
        assert env["MQTT_CLIENT_KEY"] == "mock-privateKeyPem-makapix-dev-mqtt-client-key"
        assert env["MQTT_CLIENT_CERT"] == "mock-certPem-makapix-dev-mqtt-client-cert"
        assert env["MQTT_CA_CERT"] == "mock-certPem-makapix-dev-mqtt-ca"
        assert isinstance(dev.get(CONTAINER, f"makapix-dev-{service}-container").inputs["envs"], Secret)
    assert not {"MQTT_CLIENT_KEY", "MQTT_CLIENT_CERT", "MQTT_PASSWORD"} & set(envs(dev, "dev", "web"))


def test_exports_tell_endpoint_and_prefix_never_a_key(render_stack: Any) -> None:
    for stack, endpoint, prefix in (
        ("prod", "mqtts://makapix.club:8883", "makapix"),
        ("dev", "mqtts://development.makapix.club:8884", "makapix-dev"),
    ):
        facts = render_stack(stack).outputs["mqtt"]
        assert facts["endpoint"] == endpoint and facts["topic_prefix"] == prefix
        assert facts["internal_endpoint"] == "mqtts://mqtt:8883"
        assert facts["container"] == f"makapix-{stack}-mqtt"
        outputs = json.dumps(render_stack(stack).outputs, default=repr)
        assert "privateKeyPem" not in outputs and "PRIVATE KEY" not in outputs


def test_a_changed_file_or_certificate_replaces_the_broker(render_stack: Any) -> None:
    """Uploads are written only when the container is created: a change must replace it."""
    before = broker(render_stack("dev"), "dev").options["replacement_trigger"]
    renamed = render_stack("dev", mqtt={"topic_prefix": "makapix-dev2"})
    assert "makapix-dev2/#" in uploads(renamed, "dev")["/mosquitto/config/acl"]["content"]
    assert broker(renamed, "dev").options["replacement_trigger"] != before
    reissued = render(
        "dev",
        PROJECT_DIR,
        resource_state=lambda args: (
            {"certPem": "a re-issued certificate"} if args.name == "makapix-dev-mqtt-server-cert" else None
        ),
    )
    assert broker(reissued, "dev").options["replacement_trigger"] != before
    # Settings that do not reach the files keep the container.
    limits = render_stack("dev", resources={"mqtt": {"cpus": 0.5, "memory": "256M"}})
    assert broker(limits, "dev").options["replacement_trigger"] == before


def test_prod_and_dev_brokers_share_nothing(render_stack: Any) -> None:
    prod, dev = broker(render_stack("prod"), "prod"), broker(render_stack("dev"), "dev")
    for key in ("name", "ports", "networksAdvanced", "volumes"):
        assert prod.plain_inputs()[key] != dev.plain_inputs()[key], key
    assert (
        uploads(render_stack("prod"), "prod")["/mosquitto/certs/ca.crt"]["content"]
        != (uploads(render_stack("dev"), "dev")["/mosquitto/certs/ca.crt"]["content"])
    )


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_the_isolation_fingerprint_lists_what_the_broker_occupies(stack: str, render_stack: Any) -> None:
    rendering = render_stack(stack)
    fingerprint = rendering.outputs["isolation_fingerprint"]
    inputs = broker(rendering, stack).plain_inputs()
    assert inputs["name"] in fingerprint["containers"]
    assert inputs["volumes"][0]["volumeName"] in fingerprint["volumes"]
    assert inputs["ports"][0]["external"] in fingerprint["host_ports"]
    assert fingerprint["mqtt"] == {
        "mode": "dedicated",
        "topic_prefix": rendering.outputs["mqtt"]["topic_prefix"],
        "username": rendering.outputs["mqtt"]["username"],
    }


# --- shared mode (mocks) --------------------------------------------------------------------------

SHARED = {"mqtt": {"mode": "shared"}}


def shared_dev(**references: Any) -> Rendering:
    return render(
        "dev",
        PROJECT_DIR,
        extra_config={**SHARED, "isolation": {"peer_stack": None}},
        references={"prod": references},
    )


def test_production_runs_the_shared_broker_with_an_account_per_environment(render_stack: Any) -> None:
    prod = render_stack("prod", **SHARED)
    inputs = broker(prod, "prod").plain_inputs()
    assert inputs["name"] == "makapix-shared-mqtt"
    # It meets each environment on that environment's own data network, never on one shared by both.
    assert inputs["networksAdvanced"] == [
        {"name": "makapix-prod-data", "aliases": []},
        {"name": "makapix-dev-data", "aliases": []},
        {"name": "makapix-prod-published"},
    ]
    assert inputs["volumes"][0]["volumeName"] == "makapix-shared_mqtt_data"
    assert inputs["ports"] == [{"internal": 8883, "external": 8883}]
    files = uploads(prod, "prod")
    assert files["/mosquitto/config/acl"]["content"].split("\n\n")[1:] == [
        "user makapix-api\ntopic readwrite makapix/#",
        "user makapix-dev-api\ntopic readwrite makapix-dev/#\n",
    ]
    passwords = files["/mosquitto/config/passwords"]["content"]
    assert [line.split(":")[0] for line in passwords.splitlines()] == ["makapix-api", "makapix-dev-api"]
    assert "mock-secret" not in passwords  # hashes only
    assert prod.outputs["shared_mqtt_passwords"] == Secret(
        {"dev": "mock-secret-makapix-prod-mqtt-dev-password"}
    )
    assert prod.outputs["mqtt"]["guests"] == {
        "dev": {"username": "makapix-dev-api", "topic_prefix": "makapix-dev"}
    }
    env = envs(prod, "prod", "api")
    assert (env["MQTT_HOST"], env["MQTT_PORT"], env["MQTT_TLS_ENABLED"]) == (
        "makapix-shared-mqtt",
        "1883",
        "false",
    )
    assert env["MQTT_PASSWORD"] == "mock-secret-makapix-prod-mqtt-prod-password"


def test_development_in_shared_mode_declares_no_broker_and_reads_its_password() -> None:
    guests = {"dev": {"username": "makapix-dev-api", "topic_prefix": "makapix-dev"}}
    dev = shared_dev(shared_mqtt_passwords={"dev": "dev-password-from-prod"}, mqtt={"guests": guests})
    assert not [c for c in dev.of_type(CONTAINER) if "mqtt" in c.name]
    assert not [r for r in dev.resources if r.type.startswith("tls:")]
    env = envs(dev, "dev", "api")
    assert (env["MQTT_HOST"], env["MQTT_PASSWORD"]) == ("makapix-shared-mqtt", "dev-password-from-prod")
    assert dev.outputs["mqtt"]["broker_stack"] == "prod" and "endpoint" not in dev.outputs["mqtt"]
    settings = parse_environment({"environment": "development", **_required(), **SHARED}, "test", "makapix")
    assert 8884 not in stack_placement(settings).host_ports


def test_development_refuses_a_broker_stack_that_does_not_know_it() -> None:
    with pytest.raises(RenderError) as missing:
        shared_dev(shared_mqtt_passwords={"staging": "x"})
    assert "stack 'prod'" in str(missing.value) and "makapix:mqtt.guests.dev" in str(missing.value)
    with pytest.raises(RenderError) as different:
        shared_dev(
            shared_mqtt_passwords={"dev": "secret-value-7"},
            mqtt={"guests": {"dev": {"username": "someone-else", "topic_prefix": "makapix-dev"}}},
        )
    assert "as user 'someone-else'" in str(different.value) and "makapix:mqtt.username" in str(
        different.value
    )
    assert "secret-value-7" not in str(different.value)


def _required() -> dict[str, Any]:
    return {
        "domain": {"root": "development.makapix.club"},
        "vault": {"host_path": "/mnt/vault-dev"},
        "email": {"from_address": "noreply@example.org"},
    }


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        (
            {"guests": {"dev": {"username": "makapix-api", "topic_prefix": "makapix-dev"}}},
            "makapix:mqtt: guests.dev.username 'makapix-api' is this environment's own username",
        ),
        (
            {
                "guests": {
                    "dev": {"username": "a", "topic_prefix": "p"},
                    "qa": {"username": "b", "topic_prefix": "p"},
                }
            },
            "guests share a topic_prefix",
        ),
        (
            {"certificate_validity_days": 3000, "ca_validity_days": 1000},
            "a certificate cannot outlive its CA",
        ),
        ({"renew_days": 397}, "every run would replace the certificates"),
        ({"public_host": "not a host"}, "makapix:mqtt.public_host: 'not a host' is not a DNS name"),
    ],
)
def test_bad_mqtt_settings_name_the_key(mqtt: dict[str, Any], message: str) -> None:
    values = {"environment": "production", **_required(), "mqtt": mqtt}
    with pytest.raises(ConfigurationError) as error:
        parse_environment(values, "Pulumi.prod.yaml", "makapix")
    assert "Pulumi.prod.yaml" in str(error.value) and message in str(error.value)


# --- the uploaded files, run by a real Mosquitto with real certificates ------------------------------


def _plain(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class OpensslPki:
    """Answers pulumi-tls resources with real PEMs made by openssl from the program's own inputs."""

    USES: ClassVar[dict[str, str]] = {"server_auth": "serverAuth", "client_auth": "clientAuth"}

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0

    def __call__(self, args: Any) -> dict[str, Any] | None:
        inputs = _plain(dict(args.inputs))
        if args.typ == "tls:index/privateKey:PrivateKey":
            assert (inputs["algorithm"], inputs["ecdsaCurve"]) == ("ECDSA", "P256")
            return {
                "privateKeyPem": self.openssl(
                    "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"
                )
            }
        if args.typ == SELF_SIGNED:
            assert inputs["isCaCertificate"] is True
            key = self.file(inputs["privateKeyPem"])
            return {
                "certPem": self.openssl(
                    "req", "-x509", "-new", "-key", key, "-subj", f"/CN={inputs['subject']['commonName']}",
                    "-days", str(int(inputs["validityPeriodHours"]) // 24),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                )
            }  # fmt: skip
        if args.typ == CERT_REQUEST:
            dns = ",".join(f"DNS:{name}" for name in inputs.get("dnsNames") or [])
            names = ["-addext", f"subjectAltName={dns}"] if dns else []
            key = self.file(inputs["privateKeyPem"])
            subject = f"/CN={inputs['subject']['commonName']}"
            return {"certRequestPem": self.openssl("req", "-new", "-key", key, "-subj", subject, *names)}
        if args.typ == SIGNED:
            extensions = self.file(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature"
                + (",keyEncipherment" if "key_encipherment" in inputs["allowedUses"] else "")
                + "\nextendedKeyUsage="
                + ",".join(self.USES[use] for use in inputs["allowedUses"] if use in self.USES)
                + "\n"
            )
            return {
                "certPem": self.openssl(
                    "x509", "-req", "-in", self.file(inputs["certRequestPem"]),
                    "-CA", self.file(inputs["caCertPem"]), "-CAkey", self.file(inputs["caPrivateKeyPem"]),
                    "-set_serial", str(1000 + self.count), "-days", str(int(inputs["validityPeriodHours"]) // 24),
                    "-copy_extensions", "copy", "-extfile", extensions,
                )
            }  # fmt: skip
        return None

    def file(self, text: str) -> str:
        self.count += 1
        path = self.workdir / f"pki-{self.count}"
        path.write_text(text)
        return str(path)

    def openssl(self, *arguments: str) -> str:
        done = subprocess.run(
            ["openssl", *arguments], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def real_renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendering]:
    """prod and dev (dedicated) and prod (shared), each with real certificates."""
    pki = OpensslPki(tmp_path_factory.mktemp("pulumi-tls"))
    return {
        "prod": render("prod", PROJECT_DIR, resource_state=pki),
        "dev": render("dev", PROJECT_DIR, resource_state=pki),
        "shared": render("prod", PROJECT_DIR, extra_config=SHARED, resource_state=pki),
    }


@pytest.fixture
def container_root() -> Iterator[Callable[[str], Path]]:
    """container_root(name) -> a directory standing in for a container's filesystem root.

    Traversable by every user, as a container's root is, so that Mosquitto can read its files
    after it has dropped root (pytest's own temp dirs are private to root).
    """
    made: list[Path] = []

    def make(name: str) -> Path:
        root = Path(tempfile.mkdtemp(prefix=f"mqtt-{name}-"))
        root.chmod(0o755)
        made.append(root)
        return root

    try:
        yield make
    finally:
        for root in made:
            shutil.rmtree(root, ignore_errors=True)


def mosquitto_uid() -> int:
    if os.geteuid() != 0:
        pytest.skip(
            "needs root: the test proves Mosquitto reads the files after dropping root to 'mosquitto'"
        )
    try:
        return pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        pytest.fail("the Debian mosquitto package's user 'mosquitto' is missing (apt-get install mosquitto)")


def start_from_uploads(
    mosquitto: MosquittoHarness,
    rendering: Rendering,
    stack: str,
    root: Path,
    ports: dict[int, int],
    key_mode: str | None = None,
) -> None:
    """Write the container's uploads under ``root`` as Docker does (owner root, the upload's mode), then run
    Mosquitto as root with the uploaded mosquitto.conf.  Two edits only, both asserted: container paths
    live under ``root``, and each listener (container port -> ``ports``) binds a free port on 127.0.0.1.
    """
    for path, upload in uploads(rendering, stack).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(upload["content"])
        mode = key_mode if key_mode and path.endswith(".key") else upload["permissions"]
        target.chmod(int(mode, 8))
    data = root / "mosquitto" / "data"
    data.mkdir()
    os.chown(data, mosquitto_uid(), -1)  # the image's data volume belongs to mosquitto
    config_dir = root / "mosquitto" / "config"
    conf = (config_dir / "mosquitto.conf").read_text()
    assert "\nuser mosquitto\n" in conf
    listeners = [line.split()[1] for line in conf.splitlines() if line.startswith("listener ")]
    assert sorted(map(int, listeners)) == sorted(ports), listeners
    for inside, outside in ports.items():
        conf = conf.replace(f"\nlistener {inside}\n", f"\nlistener {outside} 127.0.0.1\n")
    conf = conf.replace(" /mosquitto/", f" {root}/mosquitto/")
    mosquitto.start(config_dir, conf, {}, list(ports.values()))


def client_pair(rendering: Rendering, stack: str, workdir: Path) -> tuple[Path, KeyPair]:
    """The CA certificate and client key pair the stack gives its api, as files."""
    from tests.components.conftest import KeyPair

    env = envs(rendering, stack, "api")
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for variable in ("MQTT_CA_CERT", "MQTT_CLIENT_CERT", "MQTT_CLIENT_KEY"):
        paths[variable] = workdir / variable.lower()
        paths[variable].write_text(env[variable])
        paths[variable].chmod(0o600)
    return paths["MQTT_CA_CERT"], KeyPair(paths["MQTT_CLIENT_CERT"], paths["MQTT_CLIENT_KEY"])


def test_server_certificate_is_valid_for_its_names_under_its_own_ca(
    real_renders: dict[str, Rendering], tmp_path: Path
) -> None:
    for stack, host in (("dev", "development.makapix.club"), ("prod", "makapix.club")):
        files = uploads(real_renders[stack], stack)
        ca, cert = tmp_path / f"{stack}-ca.crt", tmp_path / f"{stack}-server.crt"
        ca.write_text(files["/mosquitto/certs/ca.crt"]["content"])
        cert.write_text(files["/mosquitto/certs/server.crt"]["content"])
        for name in (host, "mqtt", f"makapix-{stack}-mqtt"):
            check = [
                "openssl",
                "verify",
                "-CAfile",
                str(ca),
                "-purpose",
                "sslserver",
                "-verify_hostname",
                name,
            ]
            done = subprocess.run([*check, str(cert)], capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
    other_ca = tmp_path / "prod-ca.crt"
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(other_ca), str(tmp_path / "dev-server.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0  # dev's server certificate means nothing under prod's CA


def test_dedicated_brokers_run_the_uploaded_files_and_keep_the_environments_apart(
    real_renders: dict[str, Rendering],
    mosquitto: MosquittoHarness,
    mqtt_client: MakeClient,
    unused_port: Callable[[], int],
    container_root: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    ports = {"prod": unused_port(), "dev": unused_port()}
    for stack in ports:
        start_from_uploads(
            mosquitto, real_renders[stack], stack, container_root(stack), {TLS_PORT: ports[stack]}
        )
    dev_ca, dev_pair = client_pair(real_renders["dev"], "dev", tmp_path / "dev-api")
    prod_ca, prod_pair = client_pair(real_renders["prod"], "prod", tmp_path / "prod-api")

    def client(name: str, stack: str, ca: Path, pair: KeyPair | None) -> MqttClient:
        return mqtt_client(name, ports[stack], ca=ca, cert=pair, insecure=True)

    dev = client("dev-api", "dev", dev_ca, dev_pair)
    assert dev.connects()
    assert client("prod-api", "prod", prod_ca, prod_pair).connects()
    assert not client("prod-cert-at-dev", "dev", dev_ca, prod_pair).connects()
    assert not client("dev-cert-at-prod", "prod", prod_ca, dev_pair).connects()
    assert not client("no-cert-at-dev", "dev", dev_ca, None).connects()

    # On its own broker the dev client reaches only makapix-dev/#; prod's traffic is on another broker.
    prod = client("prod-api-2", "prod", prod_ca, prod_pair)
    assert_dev_receives_no_prod_message(prod, dev)


def assert_dev_receives_no_prod_message(prod: MqttClient, dev: MqttClient) -> None:
    """By delivery (Mosquitto grants a forbidden subscription, then delivers nothing): dev on ``#`` and
    on ``makapix/#`` gets only its own message; its publish to a prod topic never reaches prod."""
    prod_listener = prod.subscribe("makapix/#")
    dev_everything = dev.subscribe("#")
    dev_on_prod_prefix = dev.subscribe("makapix/#")
    assert prod.publish("makapix/posts/new", "prod-message").returncode == 0
    dev.publish("makapix/posts/new", "dev-writes-a-prod-topic")  # acknowledged, then dropped
    assert dev.publish("makapix-dev/posts/new", "dev-message").returncode == 0
    assert prod_listener.messages() == ["makapix/posts/new prod-message"]
    assert dev_everything.messages() == ["makapix-dev/posts/new dev-message"]
    assert dev_on_prod_prefix.messages() == []


def test_a_root_only_key_stops_the_broker_so_the_upload_mode_matters(
    real_renders: dict[str, Rendering],
    mosquitto: MosquittoHarness,
    unused_port: Callable[[], int],
    container_root: Callable[[str], Path],
) -> None:
    """Mosquitto drops root before it reads the key: with mode 0400 (root's) instead of 0444 it cannot."""
    with pytest.raises(AssertionError) as stopped:
        start_from_uploads(
            mosquitto,
            real_renders["dev"],
            "dev",
            container_root("dev-0400"),
            {TLS_PORT: unused_port()},
            "0400",
        )
    assert "server.key" in str(stopped.value) or "Permission denied" in str(stopped.value)


def test_shared_broker_runs_the_uploaded_files_and_confines_each_account(
    real_renders: dict[str, Rendering],
    mosquitto: MosquittoHarness,
    mqtt_client: MakeClient,
    unused_port: Callable[[], int],
    container_root: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    rendering = real_renders["shared"]
    port, plain_port = unused_port(), unused_port()
    start_from_uploads(
        mosquitto, rendering, "prod", container_root("shared"), {TLS_PORT: port, PLAIN_PORT: plain_port}
    )
    ca = tmp_path / "shared-ca.crt"
    ca.write_text(uploads(rendering, "prod")["/mosquitto/certs/ca.crt"]["content"])
    prod_password = envs(rendering, "prod", "api")["MQTT_PASSWORD"]
    dev_password = rendering.outputs["shared_mqtt_passwords"].value["dev"]

    def client(name: str, username: str, password: str) -> MqttClient:
        return mqtt_client(name, port, ca=ca, username=username, password=password, insecure=True)

    # The apis use the plain listener on the shared network; devices the TLS one.
    prod = mqtt_client("prod-api", plain_port, username="makapix-api", password=prod_password)
    dev = mqtt_client("dev-api", plain_port, username="makapix-dev-api", password=dev_password)
    assert client("dev-device", "makapix-dev-api", dev_password).connects()
    assert not client("dev-with-prod-password", "makapix-dev-api", prod_password).connects()
    assert not mqtt_client("anonymous", plain_port).connects()
    assert not mqtt_client("no-tls", port, username="makapix-dev-api", password=dev_password).connects()

    assert_dev_receives_no_prod_message(prod, dev)
