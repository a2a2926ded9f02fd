"""``GET /openapi.json`` and ``GET /docs`` (issue 12): the document is generated from the route table that
also builds the router and that the handlers read their inputs through, so it cannot drift from the code.

What holds it to the code, here: the router and the document list the same routes; every parameter and
body field the document declares is read by its handler (a wrong value of each one is refused, naming
it); the document is valid OpenAPI 3.1; schemathesis, run against a live daemon as a normal user and as an
admin, finds no 5xx, no answer outside its documented status, media type, headers or schema, and no hang;
and the reader page shows every operation in a real Chromium, with nothing fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from schemathesis.specs.openapi import definitions

from lazyd.store import Transcription
from lazyd.validation import Field
from lazyd.web import create_app
from lazyd.web.api import PATH, Endpoint, FormBody, JsonBody, Param
from lazyd.web.errors import OPENAI_PREFIX
from lazyd.web.routes import ENDPOINTS
from conftest import fake_sections
from media import tone, write_audio
from pipeline_helpers import upload, wait_for_state

WORKER_TOKEN = "worker-token-for-the-document-tests"
SCHEMATHESIS_EXAMPLES = int(os.environ.get("LAZYD_SCHEMATHESIS_EXAMPLES", "20"))
"""Cases per operation and phase; ask for more with ``LAZYD_SCHEMATHESIS_EXAMPLES=200``."""
SCHEMATHESIS_SEED = 20261206


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this module tests the document, not the store."""
    return f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"


@pytest.fixture
async def client(aiohttp_client: Callable, make_config: Callable, database_url: str, tmp_path: Path) -> TestClient:
    """The daemon with the FAKE tone backend transcribing, external workers allowed (``accounts`` uses it)."""
    config = make_config(database_url, sections=fake_sections(tmp_path / "fake" / "control.json"),
                         worker_token=WORKER_TOKEN)
    return await aiohttp_client(create_app(config))


async def document(client: TestClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status == 200
    return await response.json()


# -- the document and the router ----------------------------------------------------------------------------

async def test_the_router_and_the_document_list_the_same_routes(client):
    served = {(route.method, route.resource.canonical) for route in client.app.router.routes()}
    documented = {(method.upper(), path) for path, operations in (await document(client))["paths"].items()
                  for method in operations}
    gets = {path for method, path in documented if method == "GET"}
    assert {(method, path) for method, path in served if method != "HEAD"} == documented
    assert {path for method, path in served if method == "HEAD"} == gets, "aiohttp answers HEAD for each GET"
    assert len(documented) == len(ENDPOINTS), "one route per endpoint"


async def test_the_document_is_valid_openapi_3_1(client):
    found = await document(client)
    definitions.OPENAPI_31_VALIDATOR.validate(found)  # the meta-schema schemathesis ships
    assert found["openapi"] == "3.1.0"
    assert len({operation["operationId"] for path in found["paths"].values() for operation in path.values()}) == len(ENDPOINTS)


async def test_answers_and_errors_are_described_by_their_shapes(client):
    paths = (await document(client))["paths"]
    login = paths["/auth/login"]["post"]
    assert login["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TokenPair"}
    assert login["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorJson")
    openai_errors = paths["/v1/audio/transcriptions"]["post"]["responses"]
    assert "422" not in openai_errors, "OpenAI's routes answer a bad field with 400"
    assert openai_errors["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIErrorJson")
    export = paths["/transcript/export"]["get"]["responses"]["200"]["content"]
    assert {"text/plain", "application/x-subrip", "text/vtt", "application/json"} <= set(export), (
        "an export may take each registered exporter's media type")


# -- every declared input is read by its handler --------------------------------------------------------------

class Caller:
    """An admin who may upload, one finished transcription of theirs, and the worker token: a request with
    one wrong input meets that input's check, not a missing login or a missing transcription."""

    def __init__(self, client: TestClient, headers: dict[str, str], admin_id: int, job_id: int) -> None:
        self.client, self.headers, self.admin_id, self.job_id = client, headers, admin_id, job_id

    def valid(self, declared: Param) -> str | None:
        """A value that passes, for a required parameter (``None`` leaves an optional one out)."""
        if not declared.required:
            return None
        if declared.choices:
            return declared.choices[0]
        if declared.example is not None:
            return str(declared.example)
        return str(self.admin_id) if declared.name in ("id", "user_id") else str(self.job_id)

    async def send(self, endpoint: Endpoint, wrong: Param | None = None, body: Any = None) -> Any:
        """The request with valid parameters but ``wrong`` (and ``body`` as JSON); the status and answer."""
        values = {declared.name: self.valid(declared) for declared in endpoint.params}
        if wrong is not None:
            values[wrong.name] = wrong_text(wrong)
        path = endpoint.path
        for declared in endpoint.params:
            if declared.where == PATH:
                path = path.replace(f"{{{declared.name}}}", values.pop(declared.name))
        query = {name: value for name, value in values.items() if value is not None}
        headers = {**self.headers, "X-Worker-Token": WORKER_TOKEN}
        async with self.client.request(endpoint.method, path, params=query, headers=headers, json=body) as response:
            return response.status, await response.json()


def wrong_text(declared: Param | Field) -> str:
    """A value its check refuses, written as text (a query, a path, a form field)."""
    if declared.choices:
        return "no-such-choice"
    return {int: "x", float: "x", bool: "maybe"}[declared.kind]


def checkable(declared: Param | Field) -> bool:
    return bool(declared.choices) or declared.kind in (int, float, bool)


def refused_names(status: int, body: Any, path: str) -> set[str]:
    """The inputs a refusal names: every problem of a 422, the one ``param`` of OpenAI's 400."""
    if path.startswith(OPENAI_PREFIX):
        assert status == 400, body
        return {body["error"]["param"]}
    assert status == 422, body
    return {str(problem["loc"][-1]) for problem in body["detail"]} | {
        ".".join(str(part) for part in problem["loc"][1:]) for problem in body["detail"]}


PARAMS = [pytest.param(endpoint, declared, id=f"{endpoint.method} {endpoint.path} {declared.name}")
          for endpoint in ENDPOINTS for declared in endpoint.params if checkable(declared)]


@pytest.fixture
async def caller(client, accounts) -> Caller:
    headers = await accounts.headers("adminuser", role="admin", can_interact=True)
    me = await (await client.get("/auth/info", headers=headers)).json()
    job = await Transcription.acreate(creator=me["id"], audio_len_secs=30.0, chunk_size_secs=10.0,
                                      current_state="completed")
    return Caller(client, headers, me["id"], job.id)


@pytest.mark.parametrize("endpoint, declared", PARAMS)
async def test_each_declared_parameter_is_read_and_checked(caller, endpoint, declared):
    status, body = await caller.send(endpoint, declared)
    assert declared.name in refused_names(status, body, endpoint.path)


def _body_cases() -> list:
    cases = []
    for endpoint in ENDPOINTS:
        if isinstance(endpoint.body, JsonBody):
            for field in endpoint.body.fields:
                cases.append(pytest.param(endpoint, (field.name,), {field.name: wrong_json(field)},
                                          id=f"{endpoint.method} {endpoint.path} {field.name}"))
                cases.extend(pytest.param(endpoint, (field.name, inner.name), {field.name: {inner.name: wrong_json(inner)}},
                                          id=f"{endpoint.method} {endpoint.path} {field.name}.{inner.name}")
                             for inner in field.fields)  # checked once the object around it passed
    return cases


def wrong_json(field: Field) -> Any:
    """A JSON value of the wrong type for ``field``."""
    return "x" if field.kind in (int, float, bool, dict, list) else 5


@pytest.mark.parametrize("endpoint, where, body", _body_cases())
async def test_each_declared_body_field_is_read_and_checked(caller, endpoint, where, body):
    if len(where) > 1:
        body = {**body, "transcription_id": caller.job_id}
    status, answer = await caller.send(endpoint, body=body)
    assert ".".join(where) in refused_names(status, answer, endpoint.path)


FORM_CASES = [pytest.param(endpoint, field, id=f"{endpoint.path} {field.name}")
              for endpoint in ENDPOINTS if isinstance(endpoint.body, FormBody)
              for field in endpoint.body.fields if checkable(field)]


@pytest.mark.parametrize("endpoint, field", FORM_CASES)
async def test_each_declared_form_field_is_read_and_checked(caller, tmp_path, endpoint, field):
    form = aiohttp.FormData()
    form.add_field(field.name, wrong_text(field))
    recording = write_audio(tmp_path / "tone.wav", tone(440, 2.0))
    form.add_field(endpoint.body.file_field, recording.read_bytes(), filename=recording.name, content_type="audio/wav")
    async with caller.client.post(endpoint.path, data=form, headers=caller.headers) as response:
        assert field.name in refused_names(response.status, await response.json(), endpoint.path)
    assert await Transcription._meta.database.count(Transcription.select()) == 1, "a refused upload queues nothing"


# -- schemathesis against a live daemon -----------------------------------------------------------------------

async def run_schemathesis(client: TestClient, headers: dict[str, str], report: Path) -> int:
    """``st run`` against the daemon with every check but ``positive_data_acceptance`` (the document
    cannot say what the code also checks: that a file is audio, a password strong, a language real);
    returns the number of cases it generated."""
    arguments = [sys.executable, "-m", "schemathesis.cli", "run", str(client.make_url("/openapi.json")),
                 "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                 "--exclude-operation-id", "delete_auth_info",  # it would delete the account the run uses
                 "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", str(SCHEMATHESIS_SEED),
                 "--request-timeout", "30", "--workers", "1", "--no-color",
                 "--report", "json", "--report-json-path", str(report)]
    for name, value in headers.items():
        arguments += ["--header", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(*arguments, cwd=report.parent, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=900)
    assert process.returncode == 0, output.decode(errors="replace")[-20_000:]
    return json.loads(report.read_text())["test_cases"]["generated"]


@pytest.mark.parametrize("role", ["user", "admin"])
async def test_schemathesis_finds_no_server_error_no_break_of_the_document_and_no_hang(
        client, accounts, tmp_path, role, capsys):
    headers = await accounts.headers(f"{role}person", role=role, can_interact=True)
    recording = write_audio(tmp_path / "tones.wav", tone(440, 3.0))
    job_id = (await (await upload(client, headers, recording)).json())["task_id"]
    await wait_for_state(client, headers, job_id, ("completed",), timeout=60)
    if role == "admin":
        headers["X-Worker-Token"] = WORKER_TOKEN
    generated = await run_schemathesis(client, headers, tmp_path / "schemathesis.json")
    assert generated >= len(ENDPOINTS) * SCHEMATHESIS_EXAMPLES
    with capsys.disabled():
        print(f"\nschemathesis as {role}: {generated} cases, all checks passed", end=" ")


# -- the reader ------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup installs it "
                                              "where it may use apt-get)")
async def test_the_reader_shows_every_operation_from_this_server_alone(client):
    from playwright.async_api import async_playwright

    origin = str(client.make_url("/")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            fetched: list[str] = []
            page.on("request", lambda sent: fetched.append(sent.url))
            await page.goto(f"{origin}/docs")
            await page.wait_for_selector(".opblock-summary", timeout=30_000)
            operations = await page.locator(".opblock").count()
            title = await page.locator(".info .title").inner_text()
        finally:
            await browser.close()
    assert operations == len(ENDPOINTS)
    assert title.startswith("lazyd")
    assert fetched and all(url.startswith(origin) for url in fetched), fetched
