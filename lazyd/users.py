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
    """A new active user; :class:`UserExists` when the name is taken, in any mix of upper and lower case
    (``ADMINUSER`` beside ``adminuser`` would be a look-alike)."""
    if await User.aget_or_none(peewee.fn.LOWER(User.username) == username.lower()) is not None:
        raise UserExists(username)
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
    """Apply ``changes``. A new password, or a block, also replaces the stamp, which revokes every issued
    token (so an unblock does not bring old tokens back)."""
    if changes.password is not None:
        user.password = await hasher.hash(changes.password)
    if changes.password is not None or (changes.active is False and user.active):
        user.password_timestamp = password_timestamp()
    for name in ("can_interact", "active", "role"):
        if (value := getattr(changes, name)) is not None:
            setattr(user, name, value)
    user.update_date = utcnow()
    await user.asave()
    return user


async def leaves_no_admin(user: User, changes: UserChanges) -> bool:
    """Whether ``changes`` would demote or block the last active admin. The API refuses that, since nobody
    could then manage accounts over it; ``lazyd user set`` on the server may still do it."""
    if user.role != "admin" or not user.active or (changes.role != "user" and changes.active is not False):
        return False
    other = await User.aget_or_none(User.role == "admin", User.active == True, User.id != user.id)  # noqa: E712
    return other is None




async def list_users(store: Store, page: int, size: int, sort: str = "id",
                     order: str = "asc") -> tuple[list[User], int]:
    column = getattr(User, sort)
    return await store.page(User.select(), page, size, column.asc() if order == "asc" else column.desc(), User.id)
