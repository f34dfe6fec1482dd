"""Errors the sampler raises on purpose, and masking of passwords in what it prints."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


class SamplingError(Exception):
    """A refusal or failure with a message meant for the operator (exit code 1)."""


class ConfigError(SamplingError):
    """The configuration file is invalid: the message names the file, key and value (exit code 2)."""


_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_IN_CONNINFO = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (works for URLs and key=value conninfo strings)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme.startswith("postgres") and parts.password is not None:
        userinfo = f"{parts.username or ''}:***@"
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=userinfo + host))
    return mask_text(url)


def mask_text(text: str, *secrets: str) -> str:
    """``text`` with URL/conninfo passwords and every given secret replaced by ``***``."""
    text = _PASSWORD_IN_URL.sub(r"\1***\3", text)
    text = _PASSWORD_IN_CONNINFO.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def url_password(url: str) -> str:
    """The password inside ``url`` ('' if none), so messages can be scrubbed of it."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""
