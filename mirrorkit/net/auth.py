"""Credentials for authenticated upstreams: apt's auth.conf format and ``~/.netrc``.

apt_auth.conf(5): tokens separated by blanks or newlines; ``machine [protocol://]host[:port]
[/path]`` starts an entry, ``login`` and ``password`` fill it, unknown tokens are ignored.
An entry matches a URL when the host is the same; its port, if it names one, is the URL's
(explicit) port; its path, if it names one, is a prefix of the URL's path (a plain string
prefix: ``/deb`` matches ``/debian``); and its protocol, if it names one, is the URL's, while
an entry without one matches https only (never send a password in clear text unless the file
says so). The first matching entry in file order wins. ``~/.netrc`` entries name a host only
and are read by the same rules (so, https only). Stdlib only.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mirrorkit.errors import NetworkConfigError

_NO_PROTOCOL_MATCHES = frozenset({"https", "tor+https"})


@dataclass(frozen=True, slots=True)
class Credential:
    scheme: str | None  # None: https only
    host: str
    port: int | None  # None: every port
    path: str  # "" : every path
    login: str
    password: str
    source: str  # the file it came from (for messages; never the secret)

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debug output
        where = f"{self.scheme + '://' if self.scheme else ''}{self.host}"
        return f"Credential({where}{':' + str(self.port) if self.port else ''}{self.path})"

    def matches(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        if self.scheme is None:
            if scheme not in _NO_PROTOCOL_MATCHES:
                return False
        elif self.scheme != scheme:
            return False
        if self.host != host.lower():
            return False
        if self.port is not None and self.port != port:
            return False
        return path.startswith(self.path)


def _tokens(text: str) -> Iterable[str]:
    for line in text.splitlines():
        for token in line.split():
            if token.startswith("#"):
                break  # a comment runs to the end of the line
            yield token


def parse(text: str, source: str) -> list[Credential]:
    """Every ``machine`` entry of an auth.conf/.netrc text with a login or a password."""
    found: list[Credential] = []
    machine: str | None = None
    login = password = ""
    tokens = iter(_tokens(text))

    def close() -> None:
        if machine is not None and (login or password):
            found.append(_entry(machine, login, password, source))

    for token in tokens:
        if token == "machine":
            close()
            machine, login, password = next(tokens, None), "", ""
        elif token == "default":  # .netrc's catch-all: never send credentials to any host
            close()
            machine = None
        elif token in ("login", "password", "account"):
            value = next(tokens, "")
            if token == "login":
                login = value
            elif token == "password":
                password = value
        elif token == "macdef":  # a .netrc macro: its body is not ours to read
            close()
            machine = None
    close()
    return found


def _entry(machine: str, login: str, password: str, source: str) -> Credential:
    scheme: str | None = None
    rest = machine
    if "://" in machine:
        scheme, rest = machine.split("://", 1)
        scheme = scheme.lower()
    hostport, slash, path = rest.partition("/")
    path = slash + path if slash else ""
    port: int | None = None
    if hostport.startswith("["):  # [v6]:port
        host, _, after = hostport[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            port = int(after[1:])
    else:
        host, colon, port_text = hostport.partition(":")
        if colon and port_text.isdigit():
            port = int(port_text)
    return Credential(scheme, host.lower(), port, path, login, password, source)


class Credentials:
    """The credentials of a run, from the given files in order; looked up per request."""

    def __init__(self, entries: list[Credential]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, files: Iterable[Path], *, required: bool) -> Credentials:
        """Read ``files``. An unreadable file is an error when the user named it
        (``required``), and skipped when it is one of apt's defaults (as apt does)."""
        entries: list[Credential] = []
        for path in files:
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                if required:
                    raise NetworkConfigError(
                        f"{path}: cannot read the auth file: {exc.strerror or exc}",
                        "give a readable file in apt's auth.conf format "
                        "(machine HOST[/PATH] login USER password SECRET) with --auth-file.",
                    ) from exc
                continue
            entries += parse(text, str(path))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def find(self, url: str) -> Credential | None:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            return None
        path = unquote(parts.path) or "/"
        for entry in self._entries:
            if entry.matches(scheme, host, port, path):
                return entry
        return None

    def authorization(self, url: str) -> str | None:
        """The ``Authorization`` header value for ``url`` (HTTP Basic), or None."""
        entry = self.find(url)
        if entry is None:
            return None
        return basic(entry.login, entry.password)


def basic(login: str, password: str) -> str:
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


# -- credentials given in a mirror's URL -------------------------------------------------------


def split_credentials(url: str) -> tuple[str, str, str] | None:
    """``(url without user:password@, login, password)``, or None when ``url`` has none."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    login, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), unquote(login), unquote(password)


def remember(auth_file: Path, url: str, login: str, password: str) -> None:
    """Write the entry for ``url`` (its scheme, host, port and path: nothing else matches it)
    into ``auth_file``, in apt's format, replacing an entry for the same machine. The file is
    created 0600 and replaced atomically."""
    if any(c.isspace() for c in login + password) or not (login or password):
        raise NetworkConfigError(
            f"{url}: credentials with blanks cannot be kept in an auth file",
            "put them in an auth file of your own (--auth-file) and give the URL without them.",
        )
    parts = urlsplit(url)
    machine = f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"
    lines: list[str] = []
    if auth_file.exists():
        lines = [
            line
            for line in auth_file.read_text(encoding="utf-8").splitlines()
            if line.split()[:2] != ["machine", machine]
        ]
    lines.append(f"machine {machine} login {login} password {password}")
    auth_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = auth_file.with_name(f".{auth_file.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, auth_file)
