"""User accounts: creation, login, changes, listing and deletion. Used by the HTTP API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from .auth import PasswordHasher, password_timestamp
from .files import remove_files
from .store import Transcription, User, fetch_page, release_connection, utcnow

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


def user_json(user: User) -> dict[str, Any]:
    """The seed's user object."""
    return {
        "id": user.id,
        "username": user.username,
        "active": user.active,
        "can_interact": user.can_interact,
        "role": user.role,
        "create_date": user.create_date.isoformat(),
        "update_date": user.update_date.isoformat(),
    }


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
    await release_connection()
    matches = await hasher.verify(password, user.password if user else None)
    return user if matches else None


async def update_user(hasher: PasswordHasher, user: User, changes: UserChanges) -> User:
    """Apply ``changes``; a new password also replaces the stamp, which revokes every issued token."""
    if changes.password is not None:
        await release_connection()
        user.password = await hasher.hash(changes.password)
        user.password_timestamp = password_timestamp()
    for name in ("can_interact", "active", "role"):
        if (value := getattr(changes, name)) is not None:
            setattr(user, name, value)
    user.update_date = utcnow()
    await user.asave()
    return user


async def list_users(page: int, size: int, sort: str = "id", order: str = "asc") -> tuple[list[User], int]:
    column = getattr(User, sort)
    return await fetch_page(User.select(), page, size, column.asc() if order == "asc" else column.desc(), User.id)


async def delete_user(user: User) -> int:
    """Remove the user, their transcriptions and their audio files; return how many files were removed."""
    db = User._meta.database
    paths = [row.audio_path for row in await db.list(Transcription.select(Transcription.audio_path)
                                                     .where(Transcription.creator == user.id))]
    async with db.atomic():
        await user.adelete_instance(recursive=True)
    return await remove_files(paths)
