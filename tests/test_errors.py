"""Every error path answers with the seed's JSON shape, and a 500 reveals a request id, not internals."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from lazyd.web import create_app


def _assert_detail_shape(body: dict, status: int) -> None:
    assert set(body) == {"detail"}
    if status == 422:
        assert isinstance(body["detail"], list) and body["detail"]
        for error in body["detail"]:
            assert set(error) == {"loc", "msg", "type"}
    else:
        assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/no/such/route", {}, 404),
    ("DELETE", "/", {}, 405),
    ("POST", "/auth/login", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 422),
    ("POST", "/auth/login", {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/auth/login", {}, 422),
    ("POST", "/auth/login", {"json": ["a", "list"]}, 422),
    ("POST", "/auth/login", {"json": {"username": "alice", "password": "Wrong_pass1"}}, 401),
    ("GET", "/auth/info", {"headers": {"Authorization": "Bearer x.y.z"}}, 401),
    ("GET", "/users?page=0", {}, 401),
    ("PATCH", "/auth/patch?user_id=1&secret_admin_token=x", {"json": {}}, 403),
    ("POST", "/auth/register", {"data": b"x" * (1024 * 1024 + 10),
                                "headers": {"Content-Type": "application/json"}}, 413),
])
async def test_error_paths_use_the_detail_shape(client, method, path, kwargs, status):
    response = await client.request(method, path, **kwargs)
    assert response.status == status
    assert response.content_type == "application/json"
    _assert_detail_shape(await response.json(), status)


async def test_method_not_allowed_keeps_the_allow_header(client):
    response = await client.delete("/auth/login")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]


async def test_malformed_json_is_reported_like_the_seed(client):
    response = await client.post("/auth/login", data=b'{"username": ', headers={"Content-Type": "application/json"})
    [error] = (await response.json())["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"


async def test_an_unexpected_exception_is_a_500_with_a_request_id_and_no_internals(
        aiohttp_client, config, caplog):
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal state: password=hunter2")

    app = create_app(config)
    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/explode")
    assert response.status == 500
    body = await response.json()
    _assert_detail_shape(body, 500)
    request_id = response.headers["X-Request-ID"]
    assert request_id in body["detail"]
    assert "hunter2" not in body["detail"] and "RuntimeError" not in body["detail"]
    assert "hunter2" in caplog.text and request_id in caplog.text


async def test_every_response_carries_a_request_id(client):
    assert (await client.get("/")).headers["X-Request-ID"]
    assert (await client.get("/missing")).headers["X-Request-ID"]
