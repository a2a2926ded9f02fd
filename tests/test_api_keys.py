"""Per-user API keys (issue 12): ``/auth/keys`` and ``lazyd key``, on SQLite and PostgreSQL.

A key authenticates transcribing and reading transcripts; account changes, admin actions and the keys
themselves need a login. A revoked key, or the key of a blocked user, is refused at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import aiohttp
import pytest

from lazyd.api_keys import key_secret
from lazyd.store import ApiKey
from lazyd.web.keys import CONFIG
from test_cli import PASSWORD, daemon, lazyd  # noqa: F401 - daemon is a fixture
from world import snapshot

KEY_FIELDS = {"id", "name", "prefix", "create_date", "last_used"}


async def new_key(client, headers: dict[str, str], name: str = "laptop") -> dict:
    response = await client.post("/auth/keys", json={"name": name}, headers=headers)
    assert response.status == 201, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return await response.json()


async def key_count() -> int:
    return await ApiKey._meta.database.count(ApiKey.select())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_new_key_is_shown_once_and_listed_by_its_prefix_only(client, accounts):
    headers = await accounts.headers("alice")
    created = await new_key(client, headers)
    assert set(created) == KEY_FIELDS | {"key"}
    assert created["key"].startswith(created["prefix"] + "_") and created["prefix"].startswith("lzd_")
    assert created["last_used"] is None
    datetime.fromisoformat(created["create_date"])
    listing = await (await client.get("/auth/keys", headers=headers)).json()
    assert listing == {"keys": [{field: created[field] for field in KEY_FIELDS}]}


async def test_the_store_keeps_a_keyed_hash_never_the_key(client, accounts):
    created = await new_key(client, await accounts.headers("alice"))
    row = await ApiKey.aget(ApiKey.id == created["id"])
    secret = key_secret(client.app[CONFIG]).encode()
    assert row.digest == hmac.new(secret, created["key"].encode(), hashlib.sha256).hexdigest()
    assert created["key"] not in repr(row.__data__)


async def test_a_key_transcribes_and_reads_like_a_login(client, accounts):
    created = await new_key(client, await accounts.headers("alice"))
    info = await client.get("/auth/info", headers=bearer(created["key"]))
    assert info.status == 200 and (await info.json())["username"] == "alice"
    listing = await client.get("/transcriptions", headers=bearer(created["key"]))
    assert listing.status == 200
    missing = await client.get("/transcript/info?transcript_id=999", headers=bearer(created["key"]))
    assert missing.status == 404
    keys = await (await client.get("/auth/keys", headers=await login_headers(accounts, "alice"))).json()
    assert keys["keys"][0]["last_used"] is not None


async def login_headers(accounts, username: str) -> dict[str, str]:
    return bearer((await accounts.login(username))["access_token"])


@pytest.mark.parametrize("method, path", [
    ("POST", "/auth/keys"), ("GET", "/auth/keys"), ("DELETE", "/auth/keys/1"), ("DELETE", "/auth/info"),
    ("GET", "/users"), ("PATCH", "/users/1"), ("GET", "/ws"),
])
async def test_a_key_cannot_change_the_account_act_as_admin_or_make_keys(client, accounts, method, path):
    created = await new_key(client, await accounts.headers("admin", role="admin"))
    before = await snapshot(client.app[CONFIG].data_path)
    response = await client.request(method, path, json={"name": "more", "active": False},
                                    headers=bearer(created["key"]))
    assert response.status == 401, await response.text()
    assert await snapshot(client.app[CONFIG].data_path) == before
    assert await key_count() == 1


async def test_a_revoked_key_is_refused_at_once(client, accounts):
    headers = await accounts.headers("alice")
    created = await new_key(client, headers)
    assert (await client.get("/transcriptions", headers=bearer(created["key"]))).status == 200
    revoked = await client.delete(f"/auth/keys/{created['id']}", headers=headers)
    assert revoked.status == 204
    refused = await client.get("/transcriptions", headers=bearer(created["key"]))
    assert refused.status == 401
    assert await refused.json() == {"detail": "Invalid or revoked API key"}
    assert await (await client.get("/auth/keys", headers=headers)).json() == {"keys": []}


async def test_a_blocked_users_key_is_refused_at_once_and_works_again_when_unblocked(client, accounts):
    admin = await accounts.headers("admin", role="admin")
    created = await new_key(client, await accounts.headers("alice"))
    alice = (await (await client.get("/auth/info", headers=bearer(created["key"]))).json())["id"]
    assert (await client.patch(f"/users/{alice}", json={"active": False}, headers=admin)).status == 200
    refused = await client.get("/transcriptions", headers=bearer(created["key"]))
    assert refused.status == 401
    assert await refused.json() == {"detail": "Your account is blocked"}
    assert (await client.patch(f"/users/{alice}", json={"active": True}, headers=admin)).status == 200
    assert (await client.get("/transcriptions", headers=bearer(created["key"]))).status == 200


async def test_forged_and_malformed_keys_are_401(client, accounts):
    created = await new_key(client, await accounts.headers("alice"))
    prefix, secret = created["key"].rsplit("_", 1)
    forged = [f"{prefix}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}", f"{prefix}_", "lzd_", "lzd_x_y",
              f"lzd_00000000_{secret}", created["key"] + "x", created["prefix"]]
    for key in forged:
        response = await client.get("/transcriptions", headers=bearer(key))
        assert response.status == 401, key
        assert await response.json() == {"detail": "Invalid or revoked API key"}


async def test_another_users_key_cannot_be_seen_or_revoked(client, accounts):
    created = await new_key(client, await accounts.headers("alice"))
    mallory = await accounts.headers("mallory")
    assert await (await client.get("/auth/keys", headers=mallory)).json() == {"keys": []}
    response = await client.delete(f"/auth/keys/{created['id']}", headers=mallory)
    assert response.status == 404
    assert await response.json() == {"detail": "API key not found"}
    assert (await client.get("/transcriptions", headers=bearer(created["key"]))).status == 200


@pytest.mark.parametrize("body, kind", [
    ({}, "missing"), ({"name": ""}, "value_error"), ({"name": "   "}, "value_error"),
    ({"name": "x" * 101}, "value_error"), ({"name": 7}, "string_type"), ({"name": None}, "missing"),
])
async def test_a_bad_key_name_is_a_422_and_makes_no_key(client, accounts, body, kind):
    response = await client.post("/auth/keys", json=body, headers=await accounts.headers("alice"))
    assert response.status == 422
    [error] = (await response.json())["detail"]
    assert (error["loc"], error["type"]) == (["body", "name"], kind)
    assert await key_count() == 0


@pytest.mark.parametrize("key_id", ["abc", "0", "-1", str(2**63)])
async def test_revoking_a_key_id_that_cannot_exist_is_a_4xx(client, accounts, key_id):
    response = await client.delete(f"/auth/keys/{key_id}", headers=await accounts.headers("alice"))
    assert response.status in (404, 422)


async def test_deleting_a_user_deletes_their_keys(client, accounts):
    headers = await accounts.headers("alice")
    created = await new_key(client, headers)
    assert (await client.delete("/auth/info", headers=headers)).status == 204
    assert await key_count() == 0
    assert (await client.get("/transcriptions", headers=bearer(created["key"]))).status == 401


def test_lazyd_key_add_list_and_revoke(tmp_path):
    assert lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD).returncode == 0
    added = lazyd("key", "add", "alice", "Open WebUI", data_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("lzd_") and "shown this once" in added.stderr
    listing = lazyd("key", "list", data_dir=tmp_path)
    assert "alice" in listing.stdout and "Open WebUI" in listing.stdout and key[:12] in listing.stdout
    assert key not in listing.stdout and "never" in listing.stdout
    assert lazyd("key", "list", "alice", data_dir=tmp_path).stdout == listing.stdout
    key_id = listing.stdout.splitlines()[1].split()[0]
    assert lazyd("key", "revoke", key_id, data_dir=tmp_path).returncode == 0
    assert "alice" not in lazyd("key", "list", data_dir=tmp_path).stdout
    again = lazyd("key", "revoke", key_id, data_dir=tmp_path)
    assert again.returncode == 1 and f"no API key with id {key_id}" in again.stderr


@pytest.mark.parametrize("args, message", [
    (("key", "add", "nobody", "x"), "no user named 'nobody'"),
    (("key", "add", "alice", " "), "key name must not be empty"),
    (("key", "list", "nobody"), "no user named 'nobody'"),
])
def test_key_commands_fail_clearly(tmp_path, args, message):
    lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    result = lazyd(*args, data_dir=tmp_path)
    assert result.returncode == 1 and message in result.stderr


async def test_a_key_added_on_the_command_line_works_on_the_running_daemon(daemon, tmp_path):
    _process, port = daemon
    lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    key = lazyd("key", "add", "alice", "script", data_dir=tmp_path).stdout.strip()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/auth/info", headers=bearer(key)) as response:
            assert response.status == 200
            assert (await response.json())["username"] == "alice"


async def test_a_key_uploads_after_it_was_used_to_read(client, accounts, tmp_path):
    """Noting a key's use writes to the store; the upload's own write must not find the database locked."""
    from media import tone, write_audio

    created = await new_key(client, await accounts.headers("alice", can_interact=True))
    assert (await client.get("/transcriptions", headers=bearer(created["key"]))).status == 200
    form = aiohttp.FormData()
    recording = write_audio(tmp_path / "tone.wav", tone(440, 12.0))
    form.add_field("audiofile", recording.read_bytes(), filename="tone.wav", content_type="audio/wav")
    response = await client.post("/upload-audiofile", data=form, headers=bearer(created["key"]))
    assert response.status == 200, await response.text()
