"""The MQTT broker of one environment (004 §7): Mosquitto, its rendered files and its certificates.

Dedicated mode (default, 004 §7 A): every environment runs its own Mosquitto, with its own CA
(pulumi-tls): a server certificate for the broker and a client certificate for the environment's api
and workers, whose CN is ``mqtt.username``.  The broker's only listener is mTLS, so a certificate of
the other environment's CA fails the handshake; the ACL confines every client to ``<prefix>/#``.

Shared mode (004 §7 B): one Mosquitto, declared by the production stack like the shared database:
a plain listener on each environment's own data network (``<project>-<env>-data``), a TLS
listener published on the host, a generated password per environment and an ACL confining each
account to its own prefix.  Production exports the other environments' passwords as one secret
output, ``shared_mqtt_passwords``; development reads its own through a StackReference and declares
no broker.

The files (``components/mosquitto_files.py``) reach the container as docker ``uploads``, which
pulumi-docker writes only when it creates the container: every file's content is hashed into the
container's replacement trigger, so a changed file replaces the container (and restarts the broker).

File permissions: Docker extracts uploads as root (uid 0) unless the container has a ``user``, and
Mosquitto, started as root by the image, switches to ``mosquitto`` (uid 1883) before it reads
the ACL, password, CA, certificate and key files.  So every uploaded file gets mode 0444: readable by
uid 1883 whoever owns it, writable by nobody.  The directories exist only inside the container,
where Mosquitto is the only process; reading them from outside takes root or the Docker socket on
the host, which can read the whole container anyway.  (The image's entrypoint also chowns
``/mosquitto`` to ``mosquitto`` when it starts as root; the design does not depend on that.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random
import pulumi_tls as tls

from components.config import MqttSettings, Resources
from components.container import (
    LOG_OPTIONS,
    container_options,
    healthcheck,
    labels,
    limit_args,
    port_args,
    replace_when_changed,
    server_networks,
)
from components.mosquitto_files import (
    BrokerFiles,
    BrokerPaths,
    DedicatedBroker,
    MqttUser,
    SharedBroker,
    render_dedicated,
    render_shared,
)
from components.placement import MQTT_TLS_PORT, ServerPlacement

# Inside the container: the mTLS (dedicated) or TLS (shared) listener, and the shared broker's plain one.
TLS_PORT = MQTT_TLS_PORT
PLAIN_PORT = 1883
# The app containers that talk to the broker; web never does, so it never gets MQTT credentials.
CLIENT_SERVICES = ("api", "worker")
# Read-only for everyone, see the module docstring.
UPLOAD_MODE = "0444"
PATHS = BrokerPaths()
CONF_FILE = f"{PATHS.config_dir}/mosquitto.conf"
SERVER_USES = ["server_auth", "digital_signature", "key_encipherment"]
CLIENT_USES = ["client_auth", "digital_signature"]


def client_sources(placement: ServerPlacement, mqtt: MqttSettings) -> dict[str, str]:
    """The plain MQTT settings an app container can get (004 §7, §9), by ``application.variables`` source."""
    own = placement.role == "own"
    return {
        "mqtt.host": placement.host,
        "mqtt.port": str(TLS_PORT if own else PLAIN_PORT),
        "mqtt.tls_enabled": "true" if own else "false",
        "mqtt.public_port": str(mqtt.public_port),
        "mqtt.topic_prefix": mqtt.topic_prefix,
        "mqtt.username": mqtt.username,
    }


def broker_uploads(
    files: pulumi.Output[BrokerFiles], pems: dict[str, pulumi.Output[str]], with_passwords: bool
) -> list[docker.ContainerUploadArgs]:
    """The docker uploads of the broker: rendered files and PEMs, each mode 0444; secrets stay secret.

    ``pems`` maps ``ca.crt``/``server.crt``/``server.key`` to their PEM text; ``with_passwords``:
    shared mode, whose password file is uploaded as a secret.
    """
    conf = files.apply(lambda f: f.mosquitto_conf)
    acl = files.apply(lambda f: f.acl)
    uploads = [_upload(CONF_FILE, conf), _upload(PATHS.acl_file, acl)]
    if with_passwords:
        uploads.append(_upload(PATHS.password_file, pulumi.Output.secret(files.apply(lambda f: f.passwords))))
    uploads += [
        _upload(PATHS.cafile, pems["ca.crt"]),
        _upload(PATHS.certfile, pems["server.crt"]),
        _upload(PATHS.keyfile, pulumi.Output.secret(pems["server.key"])),
    ]
    return uploads


def _upload(path: str, content: pulumi.Input[str | None]) -> docker.ContainerUploadArgs:
    return docker.ContainerUploadArgs(file=path, content=content, permissions=UPLOAD_MODE)


def files_digest(*contents: str | None) -> str:
    """A short digest of the uploaded files' contents (the key is covered by its certificate)."""
    digest = hashlib.sha256()
    for content in contents:
        digest.update(hashlib.sha256((content or "").encode()).digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class MqttBrokerArgs:
    placement: ServerPlacement
    mqtt: MqttSettings
    image: str
    resources: Resources
    # Who the broker belongs to: the CA's organisation and name, and the account of a guest.
    project: str
    environment_name: str
    # The host name devices connect to (mqtt.public_host or domain.root).
    public_host: str
    # The placement's networks as inputs (``EnvironmentNetworks.attach``), and its published network.
    networks: list[pulumi.Input[str]]
    published_network: pulumi.Input[str] | None = None


def mqtt_broker(name: str, args: MqttBrokerArgs, opts: pulumi.ResourceOptions | None = None) -> MqttBroker:
    """The broker component for the placement's role: own, shared (its owner) or an account on it."""
    broker_types: dict[str, type[MqttBroker]] = {
        "own": DedicatedMqttBroker,
        "shared-owner": SharedMqttBroker,
        "shared-guest": SharedMqttAccount,
    }
    return broker_types[args.placement.role](name, args, opts)


class MqttBroker(pulumi.ComponentResource):
    """The environment's Mosquitto (or its account on the shared one) and what its clients need."""

    container: docker.Container | None
    volume: docker.Volume | None
    ca_certificate: pulumi.Output[str] | None
    # Shared broker, its owner: the other environments' passwords, by environment name.
    guest_passwords: dict[str, pulumi.Output[str]]
    facts: dict[str, Any]
    # The plain settings its clients get, by ``application.variables`` source (``client_sources``).
    client_sources: dict[str, str]

    def __init__(self, name: str, args: MqttBrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # One Pulumi type for every mode: switching modes replaces children, never the component's URN.
        super().__init__("makapix:environment:MqttBroker", name, None, opts)
        self._name = name
        self._args = args
        self.container = None
        self.volume = None
        self.ca_certificate = None
        self.guest_passwords = {}
        self._client_secrets: dict[str, pulumi.Output[str]] = {}
        mqtt, host = args.mqtt, args.placement.container
        self.client_sources = client_sources(args.placement, mqtt)
        shared = args.placement.role != "own"
        self.facts = {
            "mode": mqtt.mode,
            "container": host,
            "topic_prefix": mqtt.topic_prefix,
            "username": mqtt.username,
            "internal_endpoint": f"mqtt://{host}:{PLAIN_PORT}" if shared else f"mqtts://{args.placement.host}:{TLS_PORT}",
            "endpoint": f"mqtts://{args.public_host}:{mqtt.public_port}",
        }

    def secret_environment(self, service: str) -> dict[str, pulumi.Output[str]]:
        """The MQTT credentials of one app service: certificate and key, or password; none for web."""
        return dict(self._client_secrets) if service in CLIENT_SERVICES else {}

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)


class _BrokerServer(MqttBroker):
    """A broker this stack runs: its CA, server certificate, files, volume and container."""

    def _declare_server(self) -> None:
        args, name = self._args, self._name
        mqtt, placement = args.mqtt, args.placement
        assert placement.volume is not None, "a broker this stack runs has a volume"
        ca_key = self._private_key(f"{name}-ca-key")
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"{args.project}-{args.environment_name} MQTT CA", organization=args.project
            ),
            allowed_uses=["cert_signing", "crl_signing"],
            validity_period_hours=mqtt.ca_validity_days * 24,
            early_renewal_hours=mqtt.renew_days * 24,
            opts=self._child(),
        )
        self.ca_certificate = ca.cert_pem
        self.facts["ca_certificate"] = ca.cert_pem
        host = placement.container
        server_key, server_cert = self._issue(
            "server", host, [host, "mqtt", args.public_host], SERVER_USES, ca_key, ca
        )
        pems = {"ca.crt": ca.cert_pem, "server.crt": server_cert, "server.key": server_key}
        files = self._files(ca_key, ca)

        self.volume = docker.Volume(
            f"{name}-data",
            name=placement.volume,
            # Retained messages and persistent sessions outlive the container.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        check = ["CMD-SHELL", f"netstat -ltn | grep -q ':{TLS_PORT} '"]
        digest = pulumi.Output.all(
            files.apply(lambda f: [f.mosquitto_conf, f.acl, f.passwords]), ca.cert_pem, server_cert
        ).apply(lambda parts: files_digest(*parts[0], parts[1], parts[2]))
        # A digest of a hash file and certificates reveals no secret; the trigger must stay readable.
        trigger = pulumi.Output.unsecret(
            digest.apply(lambda files_hash: replace_when_changed(healthcheck=check, files=files_hash))
        )
        self.container = docker.Container(
            f"{name}-container",
            name=host,
            image=args.image,
            command=["mosquitto", "-c", CONF_FILE],
            uploads=broker_uploads(files, pems, with_passwords=placement.role == "shared-owner"),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=PATHS.data_dir)],
            networks_advanced=server_networks(placement, args.networks, args.published_network),
            ports=port_args(placement),
            healthcheck=healthcheck(check),
            labels=labels(placement.labels),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            **limit_args(args.resources),
            opts=container_options(self, trigger),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})

    def _files(self, ca_key: tls.PrivateKey, ca: tls.SelfSignedCert) -> pulumi.Output[BrokerFiles]:
        raise NotImplementedError

    def _private_key(self, name: str) -> tls.PrivateKey:
        # P-256: small and fast on the players' microcontrollers, supported by every TLS stack.
        return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=self._child())

    def _issue(
        self,
        role: str,
        common_name: str,
        dns_names: Sequence[str],
        uses: list[str],
        ca_key: tls.PrivateKey,
        ca: tls.SelfSignedCert,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A key and a certificate signed by the environment's CA: (secret key PEM, certificate PEM)."""
        mqtt = self._args.mqtt
        key = self._private_key(f"{self._name}-{role}-key")
        request = tls.CertRequest(
            f"{self._name}-{role}-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=self._args.project),
            dns_names=list(dns_names) or None,
            opts=self._child(),
        )
        cert = tls.LocallySignedCert(
            f"{self._name}-{role}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            allowed_uses=uses,
            validity_period_hours=mqtt.certificate_validity_days * 24,
            early_renewal_hours=mqtt.renew_days * 24,
            opts=self._child(),
        )
        # pulumi-tls marks the key secret in its own state; this keeps it secret wherever it is passed.
        return pulumi.Output.secret(key.private_key_pem), cert.cert_pem


class DedicatedMqttBroker(_BrokerServer):
    """004 §7 A: the environment's own Mosquitto, mTLS only, its own CA and client certificate."""

    def __init__(self, name: str, args: MqttBrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        self._declare_server()

    def _files(self, ca_key: tls.PrivateKey, ca: tls.SelfSignedCert) -> pulumi.Output[BrokerFiles]:
        mqtt = self._args.mqtt
        # The api's and workers' certificate: its CN is their username on the broker.
        client_key, client_cert = self._issue("client", mqtt.username, [], CLIENT_USES, ca_key, ca)
        self._client_secrets = {
            "MQTT_CA_CERT": ca.cert_pem,
            "MQTT_CLIENT_CERT": client_cert,
            "MQTT_CLIENT_KEY": client_key,
        }
        return pulumi.Output.from_input(
            render_dedicated(DedicatedBroker(self._args.environment_name, mqtt.topic_prefix, port=TLS_PORT))
        )


class SharedMqttBroker(_BrokerServer):
    """004 §7 B, the owner (production): one Mosquitto, a password account per environment."""

    def __init__(self, name: str, args: MqttBrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        self._declare_server()

    def _password(self, account: str) -> pulumi.Output[str]:
        generated = random.RandomPassword(
            f"{self._name}-{account}-password",
            length=32,
            special=False,  # one line, no character Mosquitto's password file or a URL would trip on
            opts=self._child(),
        )
        return pulumi.Output.secret(generated.result)

    def _files(self, ca_key: tls.PrivateKey, ca: tls.SelfSignedCert) -> pulumi.Output[BrokerFiles]:
        """Its own account and one per guest environment."""
        mqtt = self._args.mqtt
        own = self._password(self._args.environment_name)
        self._client_secrets = {"MQTT_PASSWORD": own}
        self.guest_passwords = {guest: self._password(guest) for guest in sorted(mqtt.guests)}
        self.facts["guests"] = {
            guest: {"username": account.username, "topic_prefix": account.topic_prefix}
            for guest, account in sorted(mqtt.guests.items())
        }
        accounts = [(mqtt.username, mqtt.topic_prefix)] + [
            (mqtt.guests[guest].username, mqtt.guests[guest].topic_prefix) for guest in self.guest_passwords
        ]

        def render(passwords: list[str]) -> BrokerFiles:
            users = tuple(
                MqttUser(username, password, prefix)
                for (username, prefix), password in zip(accounts, passwords, strict=True)
            )
            return render_shared(SharedBroker(users=users, port=PLAIN_PORT, tls_port=TLS_PORT))

        files = pulumi.Output.all(own, *self.guest_passwords.values()).apply(render)
        # mosquitto.conf and the ACL hold no password (render_shared writes hashes to the password file
        # only); unsecret keeps them readable in previews. The password file stays secret.
        return pulumi.Output.unsecret(files)


class SharedMqttAccount(MqttBroker):
    """004 §7 B, a guest (development): its password from the stack that runs the broker, no container."""

    def __init__(self, name: str, args: MqttBrokerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        mqtt, environment_name = args.mqtt, args.environment_name
        broker = pulumi.StackReference(f"{name}-broker", stack_name=mqtt.broker_stack, opts=self._child())
        namespace = pulumi.get_project()  # the stack file's key prefix, for error messages
        where = (
            f"stack {mqtt.broker_stack!r} (the shared MQTT broker, {namespace}:mqtt.broker_stack of this stack)"
        )

        def own_password(passwords: Any) -> str:
            if not isinstance(passwords, dict) or environment_name not in passwords:
                raise ValueError(
                    f"{where} has no account for environment {environment_name!r}: add {namespace}:mqtt.guests."
                    f"{environment_name} (username {mqtt.username!r}, topic_prefix {mqtt.topic_prefix!r}) "
                    "to that stack, run `pulumi up` there, then here"
                )
            return str(passwords[environment_name])

        def same_account(facts: Any) -> None:
            account = (facts or {}).get("guests", {}).get(environment_name)
            if account and (account["username"], account["topic_prefix"]) != (
                mqtt.username,
                mqtt.topic_prefix,
            ):
                raise ValueError(
                    f"{where} knows environment {environment_name!r} as user {account['username']!r} with prefix "
                    f"{account['topic_prefix']!r}, but this stack says {mqtt.username!r} / {mqtt.topic_prefix!r}"
                    f": make {namespace}:mqtt.username and .topic_prefix equal in both stacks"
                )

        password: pulumi.Output[str] = pulumi.Output.secret(
            broker.require_output("shared_mqtt_passwords").apply(own_password)
        )
        checked = pulumi.Output.all(password, broker.get_output("mqtt").apply(same_account))
        self._client_secrets = {"MQTT_PASSWORD": pulumi.Output.secret(checked.apply(lambda both: both[0]))}
        self.facts["broker_stack"] = mqtt.broker_stack
        del self.facts["endpoint"]  # devices use the endpoint the broker's stack exports
        self.register_outputs({"container": args.placement.container})
