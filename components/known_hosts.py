"""The pinned SSH host key of a host the deployment reaches over SSH (host commands, remote workers).

Every deployment secret travels over those connections, so the host's key must be known before the
first one: configuration gives it as one ``known_hosts`` line (``ssh-keyscan`` prints such lines),
which is checked here to name that host and to hold a well-formed public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclass(frozen=True)
class HostKey:
    """One host's public key: ``key_type`` and its base64 blob, plus the line it came from."""

    key_type: str
    blob: str
    line: str

    @property
    def public_key(self) -> str:
        """``<type> <base64>``: the form an authorized_keys / ``hostKey`` setting takes."""
        return f"{self.key_type} {self.blob}"


def how_to_get(host: str, port: int) -> str:
    port_option = "" if port == 22 else f"-p {port} "
    return (
        f"get it with `ssh-keyscan {port_option}-t ed25519 {host}` from a trusted network, compare its "
        "fingerprint (`ssh-keygen -lf -` on that line) with the one the host shows on its console "
        "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), and paste the whole line"
    )


def _host_form(host: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` for another port than 22."""
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):  # hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        try:
            _, _, salt, digest = pattern.split("|")
            expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(expected, base64.b64decode(digest))
        except (ValueError, binascii.Error):
            return False
    # Only '*' and '?' are wildcards in known_hosts ('[host]:port' is literal, unlike fnmatch).
    expression = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower()
    )
    return re.fullmatch(expression, name.lower()) is not None


def parse_known_hosts_line(line: str, host: str, port: int) -> HostKey:
    """The key of ``host`` in one ``known_hosts`` line; ValueError saying what is wrong and what to do."""
    fields = line.split()
    if fields and fields[0].startswith("@"):
        raise ValueError(
            f"{fields[0]} lines are not supported: give the host's own key line; {how_to_get(host, port)}"
        )
    if len(fields) < 3:
        raise ValueError(
            f"{line!r} is not a known_hosts line ('<host> <key type> <base64 key>'); {how_to_get(host, port)}"
        )
    patterns, key_type, blob = fields[0], fields[1], fields[2]
    if key_type not in KEY_TYPES:
        raise ValueError(
            f"key type {key_type!r} is not an SSH host key type ({', '.join(sorted(KEY_TYPES))}); "
            f"{how_to_get(host, port)}"
        )
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        embedded = None
    if embedded != key_type:
        raise ValueError(
            f"the key of type {key_type} is not a valid base64 {key_type} key; {how_to_get(host, port)}"
        )
    name = _host_form(host, port)
    positive = [p for p in patterns.split(",") if not p.startswith("!")]
    negative = [p[1:] for p in patterns.split(",") if p.startswith("!")]
    if any(_pattern_matches(p, name) for p in negative) or not any(
        _pattern_matches(p, name) for p in positive
    ):
        raise ValueError(
            f"the line is for {patterns!r}, not for {name!r}, the host this stack connects to; "
            f"{how_to_get(host, port)}"
        )
    return HostKey(key_type, blob, " ".join(fields[:3]))


def ssh_pinning_options(key: HostKey) -> list[str]:
    """``ssh`` options that accept this one key and no other (for the Docker provider's ``ssh_opts``).

    ``KnownHostsCommand`` (OpenSSH 8.5+) prints the pinned line; the user's and the system's
    known_hosts files are not consulted, and an unknown or changed key is refused.
    """
    return [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        f"KnownHostsCommand=/bin/echo {key.line}",
    ]
