"""Who may use the REST API: api user add/list/rm. (``api serve`` is a long-running server,
not an API call: ``mirrorkit.server.serve``, which the CLI starts.)"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.api._support import StrPath, boundary, open_store

if TYPE_CHECKING:
    from mirrorkit.apiusers import ApiUser, NewApiUser


def users_file(users: StrPath | None, store: StrPath | None) -> Path:
    """``--users``, default ``STORE/api/users``."""
    return Path(users) if users is not None else open_store(store).root / "api" / "users"


@boundary
def api_user_add(
    name: str,
    *,
    role: str,
    password: str | None = None,
    users: StrPath | None = None,
    store: StrPath | None = None,
) -> NewApiUser:
    """Add a REST API user with ``role`` (read, upload, publish, admin) to the users file,
    its secret hashed with scrypt. Without ``password`` a random secret is made; the result
    carries it (and the bearer token) once, nothing stores it."""
    from mirrorkit import apiusers as users_mod

    return users_mod.add_user(users_file(users, store), name, role, password)


@boundary
def api_user_list(
    *, users: StrPath | None = None, store: StrPath | None = None
) -> tuple[ApiUser, ...]:
    """The users of the users file and their roles."""
    from mirrorkit import apiusers as users_mod

    return users_mod.list_users(users_file(users, store))


@boundary
def api_user_rm(
    name: str, *, users: StrPath | None = None, store: StrPath | None = None
) -> ApiUser:
    """Remove a user from the users file (a server running on it stops accepting it at once)."""
    from mirrorkit import apiusers as users_mod

    return users_mod.remove_user(users_file(users, store), name)
