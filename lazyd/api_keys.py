"""Per-user API keys, for clients that take one key and no login (the OpenAI client libraries, Open WebUI,
editors' plugins): ``lzd_<prefix>_<secret>``.

The prefix (8 random characters) finds the row; the whole key is checked against its stored HMAC-SHA256,
keyed with a server secret, in constant time. A key carries 256 random bits, so a fast keyed hash is as
safe as a slow one and costs microseconds per request, where bcrypt would cost a core for 0.2 s; without
the server secret a copy of the database gives nothing to try keys against. The key itself is shown once,
when it is created. A key works while its user is active; revoking deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from .auth import load_or_create_secret
from .config import Config
from .store import ApiKey, Store, User, utcnow

KEY_START = "lzd_"
PREFIX_CHARS = 8
SECRET_BYTES = 32
NAME_MAX = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key, so that a busy client costs no write per request."""


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    key: str
    """The whole key: shown to its owner once, stored nowhere."""


@dataclass(frozen=True)
class ApiKeys:
    """Creating, checking, listing and revoking keys; ``secret`` keys the stored hashes."""

    store: Store
    secret: str

    def digest(self, key: str) -> str:
        return hmac.new(self.secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()

    async def create(self, user: User, name: str) -> NewKey:
        prefix = secrets.token_hex(PREFIX_CHARS // 2)
        key = f"{KEY_START}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        record = await ApiKey.acreate(user=user.id, name=name, prefix=prefix, digest=self.digest(key))
        return NewKey(record, key)

    async def user_of(self, key: str) -> User | None:
        """The user ``key`` belongs to (active or not: the caller says why it refuses), or ``None``."""
        prefix = prefix_of(key)
        record = await ApiKey.aget_or_none(ApiKey.prefix == prefix) if prefix else None
        if record is None or not hmac.compare_digest(record.digest, self.digest(key)):
            return None
        await self._note_use(record)
        return await User.aget_or_none(User.id == record.user_id)

    async def of_user(self, user_id: int) -> list[ApiKey]:
        return [key for _, key in await self.listed(user_id)]

    async def listed(self, user_id: int | None = None) -> list[tuple[str, ApiKey]]:
        """(owner's username, key) for every key, or for user ``user_id``'s, oldest first."""
        query = ApiKey.select(ApiKey, User.username).join(User).order_by(ApiKey.id)
        if user_id is not None:
            query = query.where(ApiKey.user == user_id)
        return [(key.user.username, key) for key in await self.store.list(query)]

    async def revoke(self, key_id: int, user_id: int | None = None) -> bool:
        """Delete key ``key_id`` (of user ``user_id`` only, when given); ``False`` when there is none."""
        condition = ApiKey.id == key_id
        if user_id is not None:
            condition &= ApiKey.user == user_id
        return await self.store.execute(ApiKey.delete().where(condition)) > 0

    async def _note_use(self, record: ApiKey) -> None:
        now = utcnow()
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
            await self.store.execute(ApiKey.update(last_used_at=now).where(ApiKey.id == record.id))


def key_secret(config: Config) -> str:
    """``[auth] api_key_secret``, else one generated on first start (every daemon sharing a database must
    then be given the same one)."""
    return config.auth.api_key_secret or load_or_create_secret(config.data_path / "secrets" / "api-keys.key")


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_START)


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else ``None``."""
    prefix, separator, rest = key.removeprefix(KEY_START).partition("_")
    if not is_api_key(key) or not separator or len(prefix) != PREFIX_CHARS or not rest:
        return None
    return prefix


def name_problem(name: str) -> str | None:
    if not name.strip():
        return "must not be empty"
    if len(name) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters"
    return None
