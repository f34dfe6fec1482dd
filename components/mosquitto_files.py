"""mosquitto.conf, ACL and password files for the MQTT broker(s), in Mosquitto's own formats (004 §7).

Two modes:

* dedicated (004 §7 A, default): one broker per environment.  Its only listener is mTLS: a client must
  present a certificate signed by the environment's own CA, and the certificate's CN becomes its
  username.  The ACL confines every client of that broker to ``<prefix>/#``.  A certificate from the
  other environment's CA fails the TLS handshake, so prod and dev cannot reach each other's broker.
* shared (004 §7 B): one broker, a username and password per environment, and an ACL that confines
  each user to its own prefix (``makapix/#`` and ``makapix-dev/#`` do not overlap: MQTT wildcards
  match whole topic levels).

Mosquitto denies everything an ACL file does not grant, including reading: a forbidden subscription
(e.g. ``#``) is acknowledged but no message outside the client's prefix is ever delivered to it.

The functions are pure: plain settings in, file texts out; the caller (components/mqtt.py) puts them
into the container.  Paths are settings so that tests can run the same text on the host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+$")

# mosquitto_passwd writes PBKDF2-SHA512 as "$7$<iterations>$<base64 salt>$<base64 hash>" with a
# 12-byte salt; Mosquitto reads the iteration count from the file, so any count works.
PBKDF2_ITERATIONS = 1000
_SALT_BYTES = 12


@dataclass(frozen=True)
class BrokerPaths:
    """Where the files live inside the broker's container (the eclipse-mosquitto image's layout).

    Mosquitto started as root drops to ``run_as_user`` BEFORE it reads the ACL, password, CA,
    certificate and key files, so all of them must be readable by that user (checked with 2.0.11:
    a root-only 0600 key or ACL stops the broker with "Permission denied").
    """

    config_dir: str = "/mosquitto/config"  # mosquitto.conf, acl, passwords
    certs_dir: str = "/mosquitto/certs"  # ca.crt, server.crt, server.key
    data_dir: str = "/mosquitto/data"  # persistence (retained messages, sessions)

    @property
    def acl_file(self) -> str:
        return f"{self.config_dir}/acl"

    @property
    def password_file(self) -> str:
        return f"{self.config_dir}/passwords"

    @property
    def cafile(self) -> str:
        return f"{self.certs_dir}/ca.crt"

    @property
    def certfile(self) -> str:
        return f"{self.certs_dir}/server.crt"

    @property
    def keyfile(self) -> str:
        return f"{self.certs_dir}/server.key"


@dataclass(frozen=True)
class DedicatedBroker:
    """One environment's own broker: mTLS only, every client confined to ``topic_prefix/#``."""

    environment: str  # "prod" / "dev": named in comments and errors only
    topic_prefix: str  # "makapix" / "makapix-dev"
    port: int = 8883  # inside the container; the host publishes prod 8883, dev 8884
    bind_address: str = ""  # empty: every interface of the container
    paths: BrokerPaths = field(default_factory=BrokerPaths)
    run_as_user: str = "mosquitto"  # Mosquitto drops root to this user

    def __post_init__(self) -> None:
        _check(f"dedicated broker {self.environment!r}", self.topic_prefix, self.port, self.run_as_user)


@dataclass(frozen=True)
class MqttUser:
    """An environment's account on the shared broker."""

    username: str
    password: str = field(repr=False)
    topic_prefix: str


@dataclass(frozen=True)
class SharedBroker:
    """One broker for both environments, a password account per environment (004 §7 B)."""

    users: tuple[MqttUser, ...]
    port: int | None = 1883  # plain listener (container network only); None: no plain listener
    tls_port: int | None = None  # optional TLS listener (server certificate, passwords inside TLS)
    bind_address: str = ""
    paths: BrokerPaths = field(default_factory=BrokerPaths)
    run_as_user: str = "mosquitto"

    def __post_init__(self) -> None:
        where = "shared broker"
        if not self.users:
            raise ValueError(f"{where}: give at least one user (one per environment)")
        if self.port is None and self.tls_port is None:
            raise ValueError(
                f"{where}: give port or tls_port (or both); a broker without listener is useless"
            )
        for user in self.users:
            _check(
                f"{where}, user {user.username!r}",
                user.topic_prefix,
                self.port or self.tls_port,
                self.run_as_user,
            )
            if not _NAME.match(user.username):
                raise ValueError(f"{where}: username {user.username!r} must match {_NAME.pattern}")
            if not user.password or "\n" in user.password:
                raise ValueError(f"{where}: user {user.username!r} needs a non-empty one-line password")
        for attribute in ("username", "topic_prefix"):
            values = [getattr(user, attribute) for user in self.users]
            if len(set(values)) != len(values):
                raise ValueError(f"{where}: every user needs its own {attribute}; got {values}")
        if self.port is not None and self.port == self.tls_port:
            raise ValueError(f"{where}: port and tls_port must differ, both are {self.port}")


def _check(where: str, prefix: str, port: int | None, run_as_user: str) -> None:
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"{where}: topic_prefix {prefix!r} must be one topic level of letters, digits, '-' or '_' "
            "(no '/', '+' or '#'), e.g. 'makapix-dev'"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{where}: port {port} is not a TCP port (1-65535)")
    if not _NAME.match(run_as_user):
        raise ValueError(f"{where}: run_as_user {run_as_user!r} is not a user name")


@dataclass(frozen=True)
class BrokerFiles:
    """The rendered files; ``passwords`` is None in dedicated mode (certificates, no passwords)."""

    mosquitto_conf: str
    acl: str
    passwords: str | None = field(default=None, repr=False)


def _common(paths: BrokerPaths, run_as_user: str) -> list[str]:
    return [
        f"user {run_as_user}",
        "per_listener_settings false",
        "",
        "# Retained messages and persistent sessions survive a container restart.",
        "persistence true",
        f"persistence_location {paths.data_dir}/",
        "autosave_interval 300",
        "",
        "# Logs go to the container's stdout (docker logs), with timestamps.",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "",
        "allow_anonymous false",
        f"acl_file {paths.acl_file}",
    ]


def _listener(port: int, bind_address: str) -> str:
    return f"listener {port} {bind_address}".rstrip()


def render_dedicated(broker: DedicatedBroker) -> BrokerFiles:
    """Files of one environment's own mTLS broker."""
    paths = broker.paths
    conf = [
        f"# Mosquitto of the {broker.environment} environment (dedicated broker, 004 §7 A).",
        "# Rendered by components/mosquitto_files.py; edit the settings, not this file.",
        *_common(paths, broker.run_as_user),
        "",
        "# mTLS only: a client needs a certificate from this environment's CA; its CN is its username.",
        _listener(broker.port, broker.bind_address),
        "protocol mqtt",
        f"cafile {paths.cafile}",
        f"certfile {paths.certfile}",
        f"keyfile {paths.keyfile}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    acl = [
        f"# {broker.environment}: every client (any certificate of this environment's CA) is confined",
        f"# to {broker.topic_prefix}/#; Mosquitto denies whatever is not granted here.",
        "# (Mosquitto warns that this pattern has no %u/%c: intended, it applies to every client alike.)",
        f"pattern readwrite {broker.topic_prefix}/#",
    ]
    return BrokerFiles(_text(conf), _text(acl))


def render_shared(broker: SharedBroker) -> BrokerFiles:
    """Files of the one broker both environments share, each confined to its prefix by user."""
    paths = broker.paths
    conf = [
        "# Mosquitto shared by the environments (004 §7 B): a user and a topic prefix per environment.",
        "# Rendered by components/mosquitto_files.py; edit the settings, not this file.",
        *_common(paths, broker.run_as_user),
        f"password_file {paths.password_file}",
    ]
    if broker.port is not None:
        conf += [
            "",
            "# Plain MQTT for containers on the broker's network.",
            _listener(broker.port, broker.bind_address),
        ]
    if broker.tls_port is not None:
        conf += [
            "",
            "# MQTT over TLS (server certificate); clients still log in with their password.",
            _listener(broker.tls_port, broker.bind_address),
            f"cafile {paths.cafile}",
            f"certfile {paths.certfile}",
            f"keyfile {paths.keyfile}",
            "tls_version tlsv1.2",
        ]
    acl = ["# Each environment's user may only use its own topic prefix; everything else is denied."]
    for user in broker.users:
        acl += ["", f"user {user.username}", f"topic readwrite {user.topic_prefix}/#"]
    passwords = [f"{user.username}:{password_hash(user.username, user.password)}" for user in broker.users]
    return BrokerFiles(_text(conf), _text(acl), _text(passwords))


def password_hash(username: str, password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto's ``$7$`` PBKDF2-SHA512 hash of a password, with a salt derived from the input.

    mosquitto_passwd draws a random salt, so the same password gives a different file each time.
    Here the file is a Pulumi resource input: a different text on every ``pulumi up`` would replace
    the broker's config (and restart the broker) on every run.  So the salt is derived from
    (username, password), with PBKDF2 itself (HMAC-SHA512): equal inputs give byte-identical files,
    another user with the same password gets another salt, and guessing the password through the
    published salt costs as much as guessing it through the hash.
    """
    salt = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), b"makapix-mosquitto-salt\0" + username.encode(), iterations
    )[:_SALT_BYTES]
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"
