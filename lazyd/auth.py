"""Passwords (bcrypt, off the event loop) and the seed's JWT access/refresh tokens (HS256, pinned)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import jwt

from .files import make_private_dir
from .validation import ID_RANGE, int_range_problem

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"


def _prehash(password: str) -> bytes:
    """SHA-256 then base64, so passwords up to the allowed 256 characters count in full.

    bcrypt reads at most 72 bytes; hashing first keeps every character significant and stays under it.
    """
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


class PasswordHasher:
    """bcrypt hashing and checking, run in an executor so the event loop never waits on it.

    ``before_work`` is awaited before each hash or check: the daemon passes the store's
    ``release_connection``, so that a request waiting its turn for bcrypt holds no database connection.
    """

    def __init__(self, rounds: int = 12, executor: Executor | None = None,
                 before_work: Callable[[], Awaitable[None]] | None = None) -> None:
        self.rounds = rounds
        self.executor = executor
        self.before_work = before_work
        self._decoy: bytes | None = None

    def hash_sync(self, password: str) -> str:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    async def hash(self, password: str) -> str:
        if self.before_work is not None:
            await self.before_work()
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.hash_sync, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Check ``password``; with no hash (unknown user) spend the same time and say no."""
        target = hashed.encode("ascii") if hashed else await self._decoy_hash()
        if self.before_work is not None:
            await self.before_work()
        matches = await asyncio.get_running_loop().run_in_executor(
            self.executor, bcrypt.checkpw, _prehash(password), target
        )
        return bool(matches and hashed)

    async def _decoy_hash(self) -> bytes:
        if self._decoy is None:
            self._decoy = (await self.hash(secrets.token_urlsafe(16))).encode("ascii")
        return self._decoy


def password_timestamp() -> float:
    """The seed's revocation stamp: tokens carry it, and a password change replaces it."""
    return datetime.now(timezone.utc).timestamp()


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    password_timestamp: float
    expires_at: float
    """Unix time after which the token is no longer valid."""


@dataclass(frozen=True)
class TokenIssuer:
    """Issues and checks the seed's tokens: claims ``user_id``, ``password_timestamp``, ``exp``, ``token_type``."""

    secret: str
    access_ttl: timedelta = timedelta(minutes=30)
    refresh_ttl: timedelta = timedelta(days=30)

    def issue_pair(self, user_id: int, stamp: float) -> dict[str, str]:
        return {
            "access_token": self._encode(user_id, stamp, ACCESS, self.access_ttl),
            "refresh_token": self._encode(user_id, stamp, REFRESH, self.refresh_ttl),
            "token_type": "bearer",
        }

    def _encode(self, user_id: int, stamp: float, token_type: str, ttl: timedelta) -> str:
        now = datetime.now(timezone.utc)
        claims = {"user_id": user_id, "password_timestamp": stamp, "token_type": token_type,
                  "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def decode(self, token: str, token_type: str) -> TokenClaims | None:
        """The claims of a valid, unexpired token of ``token_type``; ``None`` for anything else."""
        try:
            payload = jwt.decode(token, self.secret, algorithms=[ALGORITHM],
                                 options={"require": ["exp", "user_id", "password_timestamp", "token_type"]})
        except jwt.PyJWTError:
            return None
        return _claims(payload, token_type)


def _claims(payload: dict[str, Any], token_type: str) -> TokenClaims | None:
    """Type-checked claims: a validly signed token may still carry an id no column holds, or an ``exp``
    as a string (which PyJWT converts and accepts)."""
    user_id, stamp, expires = payload["user_id"], payload["password_timestamp"], payload["exp"]
    if payload["token_type"] != token_type or type(user_id) is not int or int_range_problem(user_id, (), ID_RANGE):
        return None
    if not (_is_number(stamp) and _is_number(expires)):
        return None
    return TokenClaims(user_id=user_id, password_timestamp=float(stamp), expires_at=float(expires))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def secrets_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an unset expected secret never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def load_or_create_secret(path: Path) -> str:
    """Read the secret at ``path``, creating it (random, mode 0600) on first start.

    The new file is written aside and hard-linked into place, so a process starting at the same moment
    reads either nothing (and links its own, which fails) or a complete key.
    """
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    make_private_dir(path.parent)
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(secrets.token_urlsafe(48) + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text(encoding="ascii").strip()
