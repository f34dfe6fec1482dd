"""The one error type the operations tools raise for bad input or a failed step."""

from __future__ import annotations


class OpsError(Exception):
    """A clear, user-facing failure: the message names the file, key or step and what to do.

    Messages never contain a password: URLs are masked with :func:`cli_support.database_urls.mask_url`.
    """
