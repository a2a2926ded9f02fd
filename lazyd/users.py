"""User accounts: creation, login, changes and listing. Used by the HTTP API and the CLI.

Deleting a user removes their transcriptions too, so it is the daemon's (:meth:`lazyd.daemon.Daemon.delete_user`).
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from .auth import PasswordHasher, password_timestamp
from .store import Store, User, utcnow

ROLES = ("user", "admin")
SORT_KEYS = ("id", "username", "create_date", "update_date")
ORDERS = ("asc", "desc")


class UserExists(Exception):
    def __init__(self, username: str) -> None:
        super().__init__(f"User '{username}' already exists")


@dataclass(frozen=True)
class UserChanges:
    """What an update may change; ``None`` leaves a field as it is."""

    password: str | None = None
    can_interact: bool | None = None
    active: bool | None = None
    role: str | None = None


async def create_user(
    hasher: PasswordHasher, username: str, password: str, *, role: str = "user", can_interact: bool = False
) -> User:
    """A new active user; :class:`UserExists` when the name is taken."""
    hashed = await hasher.hash(password)
    try:
        return await User.acreate(username=username, password=hashed, role=role, can_interact=can_interact,
                                  active=True, password_timestamp=password_timestamp())
    except peewee.IntegrityError:
        raise UserExists(username) from None


async def find_user(username: str) -> User | None:
    return await User.aget_or_none(User.username == username)


async def check_credentials(hasher: PasswordHasher, username: str, password: str) -> User | None:
    """The user whose password this is, or ``None``; as slow for unknown names as for known ones."""
    user = await find_user(username)
    matches = await hasher.verify(password, user.password if user else None)
    return user if matches else None


async def update_user(hasher: PasswordHasher, user: User, changes: UserChanges) -> User:
    """Apply ``changes``; a new password also replaces the stamp, which revokes every issued token."""
    if changes.password is not None:
        user.password = await hasher.hash(changes.password)
        user.password_timestamp = password_timestamp()
    for name in ("can_interact", "active", "role"):
        if (value := getattr(changes, name)) is not None:
            setattr(user, name, value)
    user.update_date = utcnow()
    await user.asave()
    return user


async def update_user_by_id(hasher: PasswordHasher, user_id: int, changes: UserChanges) -> User | None:
    """:func:`update_user` for the user with this id; ``None`` when there is none."""
    user = await User.aget_or_none(User.id == user_id)
    return None if user is None else await update_user(hasher, user, changes)


async def list_users(store: Store, page: int, size: int, sort: str = "id",
                     order: str = "asc") -> tuple[list[User], int]:
    column = getattr(User, sort)
    return await store.page(User.select(), page, size, column.asc() if order == "asc" else column.desc(), User.id)
