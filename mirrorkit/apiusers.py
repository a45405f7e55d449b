"""Who may use the REST API: the users file, its hashed secrets, and checking a request's
credentials.

The file (``--users``, default ``STORE/api/users``, mode 0600) holds one user a line::

    NAME ROLE scrypt$N$r$p$SALT$HASH

with the secret hashed by scrypt (salt and hash in base64): no secret is stored. A user shows
the secret with HTTP basic auth (``NAME`` / secret) or as a bearer token ``NAME.SECRET``.
Roles grow: ``read`` (every GET), ``upload`` (+ files and the packages of local repos),
``publish`` (+ snapshots, publishing, repos and mirror updates), ``admin`` (everything).

scrypt costs ~50 ms a check on purpose; a verified credential is remembered by an HMAC of it
under a key that lives only in this process, so a CI job's hundred requests pay it once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from mirrorkit.errors import ConflictError, FormatError, NotFoundError, UsageError
from mirrorkit.store import atomic_write

ROLES = ("read", "upload", "publish", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True, slots=True)
class ApiUser:
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class NewApiUser:
    """``api_user_add``: the user, and the secret (generated unless given), shown only now."""

    user: ApiUser
    secret: str
    users_file: str

    @property
    def token(self) -> str:
        return f"{self.user.name}.{self.secret}"


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}.")
    return role


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT, dklen=32)
    cost = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${cost}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=128 * int(n) * int(r) * int(p) + (1 << 20),
            dklen=len(want),
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


def _parse(path: Path) -> dict[str, tuple[str, str]]:
    users: dict[str, tuple[str, str]] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return users
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("scrypt$"):
            raise FormatError(
                f"{path}:{number}: not a user line (NAME ROLE scrypt$...)",
                "fix or remove the line; 'mirrorkit api user add' writes valid ones.",
            )
        users[parts[0]] = (parts[1], parts[2])
    return users


def _write(path: Path, users: dict[str, tuple[str, str]]) -> None:
    lines = ["# mirrorkit api users: NAME ROLE scrypt-hash (see 'mirrorkit api user add')"]
    lines += [f"{name} {role} {digest}" for name, (role, digest) in sorted(users.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ("\n".join(lines) + "\n").encode(), mode=0o600)


def add_user(path: Path, name: str, role: str, secret: str | None) -> NewApiUser:
    if not _NAME.match(name):
        raise UsageError(f"invalid user name {name!r}", "use letters, digits, _ and - (up to 64).")
    check_role(role)
    if secret is not None and len(secret) < 12:
        raise UsageError("the password is too short", "use at least 12 characters.")
    users = _parse(path)
    if name in users:
        raise ConflictError(
            f"user {name} exists already in {path}",
            f"remove it first: 'mirrorkit api user rm {name}'.",
        )
    secret = secret if secret is not None else secrets.token_urlsafe(24)
    users[name] = (role, hash_secret(secret))
    _write(path, users)
    return NewApiUser(ApiUser(name, role), secret, str(path))


def remove_user(path: Path, name: str) -> ApiUser:
    users = _parse(path)
    if name not in users:
        raise NotFoundError(f"no user {name} in {path}", "see 'mirrorkit api user list'.")
    role, _ = users.pop(name)
    _write(path, users)
    return ApiUser(name, role)


def list_users(path: Path) -> tuple[ApiUser, ...]:
    return tuple(ApiUser(n, r) for n, (r, _) in sorted(_parse(path).items()))


class Authenticator:
    """Checks credentials against the users file, re-read when it changes on disk (``api
    user add`` while the server runs takes effect at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, tuple[str, str]] = {}
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}

    def _current(self) -> dict[str, tuple[str, str]]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp != self._stamp:
                self._users = _parse(self.path)
                self._stamp = stamp
                self._verified.clear()
            return self._users

    def check(self, name: str, secret: str) -> ApiUser | None:
        """The user these credentials prove, or None."""
        users = self._current()
        entry = users.get(name)
        if entry is None:
            return None
        role, stored = entry
        mark = hmac.new(self._key, f"{name}\0{secret}".encode(), hashlib.sha256).digest()
        with self._lock:
            if self._verified.get(mark) == stored:
                return ApiUser(name, role)
        if not verify_secret(secret, stored):
            return None
        with self._lock:
            self._verified[mark] = stored
        return ApiUser(name, role)


def parse_authorization(header: str) -> tuple[str, str] | None:
    """(name, secret) from ``Basic base64(name:secret)`` or ``Bearer NAME.SECRET``."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, secret = decoded.partition(":")
        return (name, secret) if sep else None
    if scheme.lower() == "bearer":
        name, sep, secret = value.partition(".")
        return (name, secret) if sep else None
    return None
