"""The seed's user half of the API: `/`, `/auth/register|login|refresh|info|patch`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest

from conftest import PASSWORD
from lazyd.validation import PASSWORD_RULE, USERNAME_RULE

USER_KEYS = {"id", "username", "active", "can_interact", "role", "create_date", "update_date"}


async def test_health_reports_api_and_database(client):
    response = await client.get("/")
    assert response.status == 200
    assert await response.json() == {"api": True, "database": True}


async def test_register_creates_an_active_user_who_may_not_upload_yet(client):
    response = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status == 201
    body = await response.json()
    assert set(body) == USER_KEYS
    assert (body["username"], body["active"], body["can_interact"], body["role"]) == ("alice", True, False, "user")
    datetime.fromisoformat(body["create_date"])
    assert "password" not in await response.text()


async def test_duplicate_registration_is_a_conflict(client):
    await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    response = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status == 409
    assert await response.json() == {"detail": "User 'alice' already exists"}


@pytest.mark.parametrize("username", ["abcde", "A" * 64, "LatinOnly"])
async def test_usernames_at_the_edges_of_the_rule_are_accepted(client, username):
    response = await client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status == 201


@pytest.mark.parametrize("username", ["abcd", "A" * 65, "alice1", "al ice", "alicé", "al_ice", ""])
async def test_usernames_breaking_the_rule_are_422(client, username):
    response = await client.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert detail == [{"loc": ["body", "username"], "msg": f"Value error, {USERNAME_RULE}", "type": "value_error"}]


@pytest.mark.parametrize("password", ["Abcdef1!", "Aa1!" + "x" * 252, 'Aa1"bcdef', "Aa1=bcdef", "Aa1_bcdef"])
async def test_passwords_at_the_edges_of_the_rule_are_accepted(client, password):
    response = await client.post("/auth/register", json={"username": "alice", "password": password})
    assert response.status == 201
    login = await client.post("/auth/login", json={"username": "alice", "password": password})
    assert login.status == 200


@pytest.mark.parametrize(
    "password",
    ["Abcde1!", "Aa1!" + "x" * 253, "abcdef1!", "ABCDEF1!", "Abcdefg!", "Abcdefg1", "Abcdef1-", "Абвгдеж1!"],
)
async def test_passwords_breaking_the_rule_are_422(client, password):
    response = await client.post("/auth/register", json={"username": "alice", "password": password})
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert detail == [{"loc": ["body", "password"], "msg": f"Value error, {PASSWORD_RULE}", "type": "value_error"}]


async def test_register_reports_every_missing_field_at_once(client):
    response = await client.post("/auth/register", json={})
    assert response.status == 422
    assert (await response.json())["detail"] == [
        {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
    ]


async def test_wrong_json_types_are_422(client):
    response = await client.post("/auth/register", json={"username": 12345, "password": ["x"]})
    assert response.status == 422
    kinds = [(error["loc"], error["type"]) for error in (await response.json())["detail"]]
    assert kinds == [(["body", "username"], "string_type"), (["body", "password"], "string_type")]


async def test_registration_can_be_closed(aiohttp_client, make_config, database_url):
    from lazyd.web import create_app

    client = await aiohttp_client(create_app(make_config(database_url, open_registration=False)))
    response = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status == 403
    assert "closed" in (await response.json())["detail"]
    assert await (await client.get("/auth/register")).json() == {"open": False}


async def test_anyone_may_ask_whether_registration_is_open(client):
    assert await (await client.get("/auth/register")).json() == {"open": True}


async def test_login_returns_the_seed_token_pair(client, accounts):
    await accounts.create("alice")
    tokens = await accounts.login("alice")
    assert set(tokens) == {"access_token", "refresh_token", "token_type"}
    assert tokens["token_type"] == "bearer"


@pytest.mark.parametrize("username, password", [("alice", "Wrong_pass1"), ("nobody", PASSWORD)])
async def test_login_with_wrong_credentials_is_401(client, accounts, username, password):
    await accounts.create("alice")
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status == 401
    assert await response.json() == {"detail": "Incorrect username or password"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_login_of_a_blocked_user_is_401_blocked(client, accounts):
    from lazyd import users
    from lazyd.web.keys import HASHER

    user = await accounts.create("alice")
    await users.update_user(client.app[HASHER], user, users.UserChanges(active=False))
    response = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 401
    assert await response.json() == {"detail": "Your account is blocked"}


async def test_info_returns_the_caller(client, accounts):
    headers = await accounts.headers("alice")
    response = await client.get("/auth/info", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert set(body) == USER_KEYS and body["username"] == "alice"


async def test_info_without_a_token_is_401(client):
    response = await client.get("/auth/info")
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid Authorization Header"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_refresh_returns_a_working_new_pair(client, accounts):
    await accounts.create("alice")
    tokens = await accounts.login("alice")
    response = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status == 200
    fresh = await response.json()
    info = await client.get("/auth/info", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert info.status == 200


async def test_refresh_with_garbage_is_401(client):
    response = await client.post("/auth/refresh", json={"refresh_token": "not-a-token"})
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid or expired token"}


async def test_refresh_of_a_blocked_user_is_401(client, accounts):
    from lazyd import users
    from lazyd.web.keys import HASHER

    user = await accounts.create("alice")
    tokens = await accounts.login("alice")
    await users.update_user(client.app[HASHER], user, users.UserChanges(active=False))
    response = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status == 401


async def test_patch_with_the_admin_token_changes_can_interact(aiohttp_client, make_config, database_url):
    from lazyd.web import create_app

    client = await aiohttp_client(create_app(make_config(database_url, admin_token="s3cret-admin-token")))
    created = await (await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})).json()
    url = f"/auth/patch?user_id={created['id']}&secret_admin_token=s3cret-admin-token"
    response = await client.patch(url, json={"can_interact": True})
    assert response.status == 200
    body = await response.json()
    assert set(body) == USER_KEYS and body["can_interact"] is True

    by_header = await client.patch(f"/auth/patch?user_id={created['id']}", json={"can_interact": False},
                                   headers={"X-Admin-Token": "s3cret-admin-token"})
    assert (await by_header.json())["can_interact"] is False

    wrong = await client.patch(f"/auth/patch?user_id={created['id']}&secret_admin_token=guess", json={})
    assert wrong.status == 403
    assert await wrong.json() == {"detail": "Invalid admin token"}


async def test_patch_without_a_configured_admin_token_is_403_and_says_why(client, accounts):
    user = await accounts.create("alice")
    response = await client.patch(f"/auth/patch?user_id={user.id}&secret_admin_token=anything", json={})
    assert response.status == 403
    assert "not configured" in (await response.json())["detail"]


async def test_patch_accepts_an_admin_bearer_token(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    user = await accounts.create("alice")
    response = await client.patch(f"/auth/patch?user_id={user.id}", json={"can_interact": True}, headers=admin)
    assert response.status == 200
    assert (await response.json())["can_interact"] is True


async def test_patch_by_a_non_admin_is_403(client, accounts):
    headers = await accounts.headers("mallory")
    user = await accounts.create("alice")
    response = await client.patch(f"/auth/patch?user_id={user.id}", json={"can_interact": True}, headers=headers)
    assert response.status == 403


async def test_patch_of_an_unknown_user_is_404(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    response = await client.patch("/auth/patch?user_id=999999", json={"can_interact": True}, headers=admin)
    assert response.status == 404
    assert await response.json() == {"detail": "User not found"}


async def test_patch_without_user_id_is_422(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    response = await client.patch("/auth/patch", json={}, headers=admin)
    assert response.status == 422
    assert (await response.json())["detail"] == [{"loc": ["query", "user_id"], "msg": "Field required",
                                                 "type": "missing"}]


async def test_password_change_through_patch_revokes_old_tokens(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    user = await accounts.create("alice")
    old = await accounts.login("alice")
    response = await client.patch(f"/auth/patch?user_id={user.id}", json={"password": "New_password2"},
                                  headers=admin)
    assert response.status == 200
    stale = await client.get("/auth/info", headers={"Authorization": f"Bearer {old['access_token']}"})
    assert stale.status == 401
    assert await stale.json() == {"detail": "Invalid or expired token"}
    stale_refresh = await client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert stale_refresh.status == 401
    await accounts.login("alice", "New_password2")


async def test_slow_logins_do_not_hold_database_connections_others_need(aiohttp_client, make_config, database_url):
    """A login waits on bcrypt without a pooled connection, so a burst of them cannot starve other requests."""
    import asyncio
    import dataclasses

    from lazyd import users
    from lazyd.config import DatabaseConfig
    from lazyd.web import create_app
    from lazyd.web.keys import HASHER

    config = dataclasses.replace(make_config(database_url, bcrypt_rounds=10),
                                 database=DatabaseConfig(url=database_url, pool_size=2))
    client = await aiohttp_client(create_app(config))
    await users.create_user(client.app[HASHER], "alice", PASSWORD)
    tokens = await (await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})).json()
    finished: list[str] = []

    async def request(name: str, method: str, path: str, **kwargs: object) -> None:
        response = await client.request(method, path, **kwargs)
        assert response.status == 200
        finished.append(name)

    logins = [request("login", "POST", "/auth/login", json={"username": "alice", "password": PASSWORD})
              for _ in range(6)]
    tasks = [asyncio.create_task(login) for login in logins]
    await asyncio.sleep(0.02)
    info = request("info", "GET", "/auth/info", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    await asyncio.gather(info, *tasks)
    assert finished[0] == "info"
