"""Every token that is not a valid, current access token of an active user is refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lazyd import users
from lazyd.store import User
from lazyd.auth import load_or_create_secret
from lazyd.web.keys import CONFIG, DAEMON, HASHER, TOKENS


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _claims_of(client, username: str) -> dict:
    user = await User.aget(User.username == username)
    return {"user_id": user.id, "password_timestamp": user.password_timestamp, "token_type": "access",
            "exp": datetime.now(timezone.utc) + timedelta(minutes=5)}


async def _assert_refused(client, token: str) -> None:
    response = await client.get("/auth/info", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid or expired token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.fixture
async def alice(accounts) -> str:
    await accounts.create("alice")
    return "alice"


async def test_a_token_signed_with_another_key_is_refused(client, alice):
    token = jwt.encode(await _claims_of(client, alice), "not-the-server-key-" * 3, algorithm="HS256")
    await _assert_refused(client, token)


async def test_an_unsigned_alg_none_token_is_refused(client, alice):
    claims = await _claims_of(client, alice)
    claims["exp"] = int(claims["exp"].timestamp())
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await _assert_refused(client, token)


async def test_an_rs256_token_is_refused(client, alice):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(await _claims_of(client, alice), key, algorithm="RS256")
    await _assert_refused(client, token)


async def test_hs_rs_confusion_with_the_public_key_as_hmac_secret_is_refused(client, alice):
    """The classic confusion: an RS256 header over an HMAC made with a public key the attacker knows."""
    public_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = await _claims_of(client, alice)
    claims["exp"] = int(claims["exp"].timestamp())
    header, payload = _b64({"alg": "RS256", "typ": "JWT"}), _b64(claims)
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    await _assert_refused(client, token)


async def test_a_tampered_payload_is_refused(client, accounts, alice):
    await accounts.create("mallory")
    token = (await accounts.login("mallory"))["access_token"]
    header, _, signature = token.split(".")
    claims = await _claims_of(client, alice)
    claims["exp"] = int(claims["exp"].timestamp())
    await _assert_refused(client, f"{header}.{_b64(claims)}.{signature}")


async def test_an_expired_token_is_refused(client, alice):
    claims = await _claims_of(client, alice)
    claims["exp"] = datetime.now(timezone.utc) - timedelta(seconds=5)
    await _assert_refused(client, jwt.encode(claims, client.app[TOKENS].secret, algorithm="HS256"))


async def test_a_token_missing_a_claim_is_refused(client, alice):
    claims = await _claims_of(client, alice)
    del claims["password_timestamp"]
    await _assert_refused(client, jwt.encode(claims, client.app[TOKENS].secret, algorithm="HS256"))


async def test_a_token_with_a_string_user_id_is_refused(client, alice):
    claims = await _claims_of(client, alice)
    claims["user_id"] = str(claims["user_id"])
    await _assert_refused(client, jwt.encode(claims, client.app[TOKENS].secret, algorithm="HS256"))


async def test_a_refresh_token_is_not_an_access_token(client, accounts, alice):
    tokens = await accounts.login(alice)
    await _assert_refused(client, tokens["refresh_token"])


async def test_an_access_token_is_not_a_refresh_token(client, accounts, alice):
    tokens = await accounts.login(alice)
    response = await client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid or expired token"}


async def test_a_token_issued_before_a_password_change_is_refused(client, accounts, alice):
    tokens = await accounts.login(alice)
    user = await User.aget(User.username == alice)
    await users.update_user(client.app[HASHER], user, users.UserChanges(password="Changed_pass9"))
    await _assert_refused(client, tokens["access_token"])


async def test_a_token_of_a_deleted_user_is_refused(client, accounts, alice):
    tokens = await accounts.login(alice)
    await client.app[DAEMON].delete_user(await User.aget(User.username == alice))
    await _assert_refused(client, tokens["access_token"])


async def test_a_blocked_users_token_is_refused_as_blocked(client, accounts, alice):
    tokens = await accounts.login(alice)
    user = await User.aget(User.username == alice)
    await users.update_user(client.app[HASHER], user, users.UserChanges(active=False))
    response = await client.get("/auth/info", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status == 401
    assert await response.json() == {"detail": "Your account is blocked"}


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"])
async def test_a_malformed_authorization_header_is_401(client, header):
    response = await client.get("/auth/info", headers={"Authorization": header})
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid Authorization Header"}


async def test_the_signing_key_is_generated_once_with_mode_0600(client):
    path = client.app[CONFIG].data_path / "secrets" / "jwt.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == client.app[TOKENS].secret
    assert len(client.app[TOKENS].secret) >= 48
    assert load_or_create_secret(path) == client.app[TOKENS].secret
