"""A property-based sweep of every JSON and query route: whatever a client sends, lazyd answers without a
5xx, every error has the ``{"detail": ...}`` shape, and a rejected request changes no row and no file.

Hypothesis generates the requests (bodies of every JSON shape and of none, query strings with numbers of
every size and spelling, ids that exist and do not) and sends them, as a user and as an admin, to the app
running on a real store. The number of examples per route is ``LAZYD_FUZZ_EXAMPLES`` (default 200); the
run is seeded, so a failure repeats. Run more on demand::

    LAZYD_FUZZ_EXAMPLES=5000 ./scripts/test tests/test_fuzz_routes.py
"""

from __future__ import annotations

import asyncio
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from conftest import PASSWORD
from lazyd import users
from lazyd.jobs.states import STATES
from lazyd.store import Transcription, TranscriptionChunk, User
from lazyd.web import create_app
from lazyd.web.keys import CONFIG, HASHER
from world import data_files, snapshot

EXAMPLES = int(os.environ.get("LAZYD_FUZZ_EXAMPLES", "200"))
ADMIN_TOKEN = "4dmin-token"
WORKER_TOKEN = "w0rker-token"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    query: tuple[str, ...] = ()
    """The query parameters the route reads; the sweep adds others."""
    body: tuple[str, ...] | None = None
    """The JSON body's known keys, or ``None`` when the route reads no body."""


JOB_QUERY = ("transcript_id",)
ROUTES = (
    Route("GET", "/"),
    Route("GET", "/health"),
    Route("POST", "/auth/register", body=("username", "password")),
    Route("POST", "/auth/login", body=("username", "password")),
    Route("POST", "/auth/refresh", body=("refresh_token",)),
    Route("GET", "/auth/info"),
    Route("DELETE", "/auth/info"),
    Route("PATCH", "/auth/patch", ("user_id", "secret_admin_token"), ("password", "can_interact")),
    Route("GET", "/users", ("page", "size", "sort", "order")),
    Route("PATCH", "/users/{id}", body=("password", "can_interact", "active", "role")),
    Route("GET", "/transcriptions", ("page", "size")),
    Route("GET", "/transcript", ("task_id", "page", "size")),
    Route("DELETE", "/transcript", JOB_QUERY),
    Route("GET", "/transcript/info", JOB_QUERY),
    Route("GET", "/transcript/segments", JOB_QUERY),
    Route("POST", "/transcript/cancel", JOB_QUERY),
    Route("POST", "/transcript/retry", JOB_QUERY),
    Route("GET", "/transcript/export", ("task_id", "format", "timestamps", "max_cue_chars", "max_cue_secs")),
    Route("POST", "/transcript/export", ("task_id", "format", "timestamps", "max_cue_chars", "max_cue_secs")),
    Route("GET", "/formats"),
    Route("POST", "/worker/transcription_status", ("secret_worker_token",),
          ("transcription_id", "current_state", "new_chunk")),
    Route("GET", "/ws", ("since", "stream", "token")),
)

# -- what a client may send ---------------------------------------------------------------------------------

REFS = ("{job}", "{other_job}", "{user}", "{admin}")
"""Placeholders for ids that exist at the time of sending (a reset gives new ones)."""

integers = st.one_of(
    st.integers(-1000, 1000),
    st.integers(),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**40]),
)
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Nd", "Zs", "Cc"]), max_size=6),
    st.sampled_from(["", "\x00", "a\x00b", "null", "true", "1e3", "-0", "0x10", " 1", "1 ", "١٢", "１２",
                     "txt", "srt", "docx", "admin", "user", *STATES, ADMIN_TOKEN, WORKER_TOKEN]),
)
scalars = st.one_of(st.none(), st.booleans(), integers, st.floats(), texts, st.sampled_from(REFS))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=10)
usernames = st.one_of(st.from_regex(r"[A-Za-z]{5,12}", fullmatch=True), texts)
passwords = st.one_of(st.just(PASSWORD), st.from_regex(r"[A-Z][a-z]{6}[0-9][!_]", fullmatch=True), texts)
FIELD_VALUES = {
    "username": usernames, "password": passwords,
    "can_interact": st.one_of(st.booleans(), json_values), "active": st.one_of(st.booleans(), json_values),
    "role": st.one_of(st.sampled_from(users.ROLES), json_values),
    "transcription_id": st.one_of(st.sampled_from(REFS), integers, json_values),
    "current_state": st.one_of(st.sampled_from(STATES), json_values),
    "new_chunk": st.one_of(st.fixed_dictionaries({"text": texts, "chunk_no": integers}), json_values),
    "refresh_token": st.one_of(st.sampled_from(["{refresh}", "x.y.z"]), texts),
}
QUERY_VALUES = st.one_of(texts, integers.map(str), st.sampled_from([*REFS, "{refresh}", "9" * 4400, "-" + "1" * 400]))
"""``"9" * 4400`` is past the 4300 digits Python's ``int()`` converts."""
MAX_REQUEST_LINE = 8190
"""aiohttp's limit: a longer request line is refused before any of lazyd's code runs."""


def hostile_text() -> st.SearchStrategy[str]:
    """JSON text that is valid or nearly so but built to hurt a parser."""
    depth = st.integers(1, 3000)
    return st.one_of(
        depth.map(lambda n: "[" * n + "]" * n),
        depth.map(lambda n: '{"a":' * n + "1" + "}" * n),
        st.integers(1, 6000).map(lambda n: "9" * n),
        st.sampled_from(['"\\ud800"', '{"\\udfff": 1}', "NaN", "[Infinity]", "{", '{"a": }', "[1,]", "\ufeff{}"]),
    )


def bodies(route: Route) -> st.SearchStrategy[bytes | None]:
    if route.body is None:
        return st.one_of(st.none(), st.binary(max_size=30))
    known = st.fixed_dictionaries({}, optional={name: FIELD_VALUES.get(name, json_values) for name in route.body})
    as_json = st.one_of(known, json_values).map(lambda value: json.dumps(value).encode())
    return st.one_of(as_json, hostile_text().map(str.encode), st.binary(max_size=40), st.none())


def queries(route: Route) -> st.SearchStrategy[dict[str, str]]:
    names = st.sampled_from(route.query) if route.query else st.text(string.ascii_lowercase, min_size=1, max_size=6)
    return st.dictionaries(names, QUERY_VALUES, max_size=len(route.query) + 1)


@dataclass(frozen=True)
class Request:
    route: Route
    caller: str
    """"user", "admin", "nobody" or "forged"."""
    query: dict[str, str]
    body: bytes | None
    path_id: str


def query_string(query: dict[str, str]) -> str:
    """Percent-encoded as a client would, except that a lone surrogate goes out as the bytes of one
    (``%ED%A0%80``), which is not UTF-8: what a broken or hostile client sends."""
    def encode(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")
    return "&".join(f"{encode(name)}={encode(value)}" for name, value in query.items())


def requests(route: Route) -> st.SearchStrategy[Request]:
    return st.builds(Request, st.just(route), st.sampled_from(["user", "admin", "nobody", "forged"]),
                     queries(route), bodies(route), st.one_of(st.sampled_from(REFS), QUERY_VALUES))


# -- the app on a loop of its own, for a synchronous hypothesis test ----------------------------------------

class LiveApp:
    """The app on a real store, with an admin, a user, a job of each, and their tokens; ``reset`` puts that
    world back after a request that changed it (a delete, a register, a password change)."""

    def __init__(self, config) -> None:
        self.loop = asyncio.Runner()
        self.client = self.loop.run(self._start(config))
        self.ids: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.loop.run(self.reset())
        self.world = self.loop.run(self.snapshot())

    @staticmethod
    async def _start(config) -> TestClient:
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        return client

    def close(self) -> None:
        self.loop.run(self.client.close())
        self.loop.close()

    async def reset(self) -> None:
        await User.delete().aexecute()  # their transcriptions and chunks go with them (ON DELETE CASCADE)
        for path in data_files(self._data_dir()):
            path.unlink()
        hasher = self.client.app[HASHER]
        admin = await users.create_user(hasher, "adminuser", PASSWORD, role="admin", can_interact=True)
        user = await users.create_user(hasher, "plainuser", PASSWORD, can_interact=True)
        jobs = [await Transcription.acreate(creator=owner, audio_len_secs=30.0, chunk_size_secs=10.0,
                                            current_state="completed", chunk_plan=[[0, 10], [10, 20], [20, 30]])
                for owner in (user, admin)]
        await TranscriptionChunk.acreate(transcription=jobs[0], chunk_no=0, text="heat engines", start_secs=0,
                                         end_secs=10, segments=[])
        tokens = {name: await self._login(name) for name in ("plainuser", "adminuser")}
        self.ids = {"{job}": str(jobs[0].id), "{other_job}": str(jobs[1].id), "{user}": str(user.id),
                    "{admin}": str(admin.id), "{refresh}": tokens["plainuser"]["refresh_token"]}
        bearer = {name: {"Authorization": f"Bearer {pair['access_token']}"} for name, pair in tokens.items()}
        self.headers = {"user": bearer["plainuser"], "admin": bearer["adminuser"], "nobody": {},
                        "forged": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.x"}}

    async def _login(self, username: str) -> dict[str, str]:
        response = await self.client.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status == 200, await response.text()
        return await response.json()

    def _data_dir(self) -> Path:
        return Path(self.client.app[CONFIG].data_dir)

    async def snapshot(self) -> tuple:
        return await snapshot(self._data_dir())

    def fill(self, text: str) -> str:
        for ref, value in self.ids.items():
            text = text.replace(f'"{ref}"', value).replace(ref, value)
        return text

    async def send(self, request: Request) -> tuple[int, str, bytes]:
        route = request.route
        path = quote(route.path.replace("{id}", self.fill(request.path_id)).encode("utf-8", "surrogatepass"), safe="/")
        query = query_string({name: self.fill(value) for name, value in request.query.items()})
        headers = {**self.headers[request.caller], "X-Worker-Token": WORKER_TOKEN}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        body = request.body
        if body is not None and body.isascii():  # what json.dumps wrote: it may name ids
            body = self.fill(body.decode()).encode()
        url = URL(f"{path}?{query}" if query else path, encoded=True)
        async with self.client.request(route.method, url, data=body, headers=headers,
                                       allow_redirects=False) as response:
            return response.status, response.content_type, await response.read()


def check(app: LiveApp, request: Request) -> None:
    status, content_type, raw = app.loop.run(app.send(request))
    assert status < 500, (status, raw[:300])
    if status >= 400:
        assert content_type == "application/json", (status, raw[:300])
        body = json.loads(raw)
        assert set(body) == {"detail"}, body
        if status == 422:
            assert body["detail"] and all(set(error) == {"loc", "msg", "type"} for error in body["detail"]), body
        else:
            assert isinstance(body["detail"], str), body
        assert app.loop.run(app.snapshot()) == app.world, (status, body)
        return
    after = app.loop.run(app.snapshot())
    if after != app.world:
        app.loop.run(app.reset())
        app.world = app.loop.run(app.snapshot())


@pytest.fixture
def live_app(make_config, database_url):
    sections = {"limits": {"min_audio_secs": 2.0, "max_audio_secs": 60.0, "max_upload_mb": 1}}
    app = LiveApp(make_config(database_url, sections, admin_token=ADMIN_TOKEN, worker_token=WORKER_TOKEN))
    yield app
    app.close()


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_no_request_gets_a_5xx_or_changes_anything_it_is_refused(live_app, route):
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests(route))
    def sweep(request: Request) -> None:
        assume(len(route.path) + len(query_string(request.query)) + 20 < MAX_REQUEST_LINE)
        check(live_app, request)

    sweep()
