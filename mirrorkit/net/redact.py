"""Credentials out of URLs before anything is shown or stored.

``https://user:secret@host/debian`` is how many users give an authenticated upstream (apt's
sources.list accepts it); the secret must not reach an error message, a log line, a record or a
bundle. Stdlib only: :mod:`mirrorkit.errors` calls it on every message.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : userinfo is everything up to the last "@" before the authority ends
# (a password may contain "@" when it is not percent-encoded, as some users write it).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"'<>]*@)")
REDACTED = "***"


def redact_url(text: str) -> str:
    """``text`` with the user information of every URL in it replaced by ``***``.

    Works on a bare URL (``https://u:p@h/x`` -> ``https://***@h/x``) and on a message that
    contains URLs; anything else is returned unchanged. The user name goes too: for token
    schemes (``https://TOKEN@host``, ``https://TOKEN:@host``) it is the secret.
    """
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries user information (``user:pass@``) that :func:`redact_url` hides."""
    return redact_url(url) != url
