"""PostgreSQL URLs in what a command prints: passwords masked, a malformed URL refused in our words."""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_IN_CONNINFO = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority, the query or a key=value conninfo) replaced by ***."""
    if "://" not in url:
        return mask_text(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, hosts = netloc.rpartition("@")
        user, has_password, _ = credentials.partition(":")
        if has_password:
            netloc = f"{user}:***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="/*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_text(text: str, *secrets: str) -> str:
    """``text`` with URL/conninfo passwords and every given secret replaced by ``***``."""
    text = _PASSWORD_IN_URL.sub(r"\1***\3", text)
    text = _PASSWORD_IN_CONNINFO.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def url_password(url: str) -> str:
    """The password ``url`` carries ('' if none) in the authority, the query (``?password=``) or a
    key=value conninfo, decoded as the server sees and may echo it, so messages can be scrubbed of it."""
    try:
        return str(conninfo_to_dict(url).get("password") or "")
    except psycopg.ProgrammingError:  # not parseable: mask_text's patterns still find a URL's password
        return ""


def mask_url_in(message: str, url: str) -> str:
    """``message`` with ``url`` masked, and its password wherever it appears: as written in the URL
    (percent-encoded) and decoded."""
    if not url:
        return mask_text(message)
    written = ""
    with contextlib.suppress(ValueError):
        written = urlsplit(url).password or ""
    return mask_text(message.replace(url, mask_url(url)), url_password(url), written)


URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters in the password)"


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL before any connection is tried, in our words, or None.

    libpq's own wording ("missing \"=\" after ... in connection info string", "Servname not supported
    for ai_socktype") names neither the setting nor the fix, and may echo the URL with its password.
    """
    try:
        parameters = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return f"it is not a PostgreSQL URL; write it as {URL_FORM}"
    for port in str(parameters.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return f"its port {port!r} is not a number from 1 to 65535; write it as {URL_FORM}"
    return None
