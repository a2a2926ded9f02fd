"""Admin user management (`GET /users`, `PATCH /users/{id}`) and deleting one's own account."""

from __future__ import annotations

import pytest

from conftest import PASSWORD
from lazyd.store import Transcription, TranscriptionChunk, User


async def test_non_admins_get_403_on_every_admin_route(client, accounts):
    headers = await accounts.headers("mallory", can_interact=True)
    target = await accounts.create("alice")
    for method, url in [("GET", "/users"), ("PATCH", f"/users/{target.id}"),
                        ("PATCH", f"/auth/patch?user_id={target.id}")]:
        response = await client.request(method, url, json={"role": "admin"}, headers=headers)
        assert response.status == 403, url
        assert "admin" in (await response.json())["detail"]
    assert (await User.aget_by_id(target.id)).role == "user"


async def test_users_are_listed_in_pages(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    for name in ("carol", "alice", "bobby", "dave", "erin"):
        await accounts.create(name + "x")
    response = await client.get("/users?page=2&size=2&sort=username&order=asc", headers=admin)
    assert response.status == 200
    body = await response.json()
    assert (body["page"], body["size"], body["total"], body["pages"]) == (2, 2, 6, 3)
    assert [user["username"] for user in body["users"]] == ["carolx", "davex"]


async def test_users_are_sorted_by_id_ascending_unless_asked_otherwise(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    await accounts.create("alicex")
    ascending = await (await client.get("/users", headers=admin)).json()
    descending = await (await client.get("/users?order=desc", headers=admin)).json()
    assert [u["id"] for u in ascending["users"]] == sorted(u["id"] for u in ascending["users"])
    assert [u["id"] for u in descending["users"]] == [u["id"] for u in reversed(ascending["users"])]


@pytest.mark.parametrize("query, loc, kind", [
    ("page=0", ["query", "page"], "greater_than_equal"),
    ("size=0", ["query", "size"], "greater_than_equal"),
    ("size=1001", ["query", "size"], "less_than_equal"),
    ("page=two", ["query", "page"], "int_parsing"),
    ("sort=password", ["query", "sort"], "enum"),
    ("order=sideways", ["query", "order"], "enum"),
])
async def test_bad_pagination_is_422(client, accounts, query, loc, kind):
    admin = await accounts.headers("rootadmin", role="admin")
    response = await client.get(f"/users?{query}", headers=admin)
    assert response.status == 422
    [error] = (await response.json())["detail"]
    assert (error["loc"], error["type"]) == (loc, kind)


async def test_admin_patch_changes_role_active_and_can_interact(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    user = await accounts.create("alice")
    response = await client.patch(f"/users/{user.id}", json={"role": "admin", "active": False,
                                                             "can_interact": True}, headers=admin)
    assert response.status == 200
    body = await response.json()
    assert (body["role"], body["active"], body["can_interact"]) == ("admin", False, True)
    assert body["update_date"] >= body["create_date"]


async def test_admin_patch_rejects_an_unknown_role_and_changes_nothing(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    user = await accounts.create("alice")
    response = await client.patch(f"/users/{user.id}", json={"role": "root", "active": False}, headers=admin)
    assert response.status == 422
    assert (await response.json())["detail"] == [
        {"loc": ["body", "role"], "msg": "Input should be 'user' or 'admin'", "type": "enum"}]
    unchanged = await User.aget_by_id(user.id)
    assert (unchanged.role, unchanged.active) == ("user", True)


@pytest.mark.parametrize("path, status", [("/users/999999", 404), ("/users/abc", 422)])
async def test_admin_patch_of_a_missing_or_malformed_id(client, accounts, path, status):
    admin = await accounts.headers("rootadmin", role="admin")
    response = await client.patch(path, json={"active": False}, headers=admin)
    assert response.status == status


async def test_admin_password_reset_lets_the_user_log_in_with_it(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    user = await accounts.create("alice")
    await client.patch(f"/users/{user.id}", json={"password": "Reset_pass77"}, headers=admin)
    bad = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert bad.status == 401
    await accounts.login("alice", "Reset_pass77")


async def test_deleting_ones_account_removes_transcriptions_chunks_and_audio(client, accounts, tmp_path):
    headers = await accounts.headers("alice")
    other = await accounts.create("bobby")
    alice = await User.aget(User.username == "alice")
    audio = tmp_path / "alice.opus"
    audio.write_bytes(b"audio")
    mine = await Transcription.acreate(creator=alice, audio_len_secs=60, chunk_size_secs=900,
                                       current_state="completed", audio_path=str(audio))
    await TranscriptionChunk.acreate(transcription=mine, chunk_no=0, text="hello")
    theirs = await Transcription.acreate(creator=other, audio_len_secs=60, chunk_size_secs=900,
                                         current_state="queued")

    response = await client.delete("/auth/info", headers=headers)
    assert response.status == 204
    assert not audio.exists()
    assert await User.aget_or_none(User.username == "alice") is None
    assert await Transcription.aget_or_none(Transcription.id == mine.id) is None
    assert await TranscriptionChunk.aget_or_none(TranscriptionChunk.transcription == mine.id) is None
    assert await Transcription.aget_or_none(Transcription.id == theirs.id) is not None
    again = await client.get("/auth/info", headers=headers)
    assert again.status == 401
