"""Personal API tokens through the real application over HTTP (real PAM logins)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hpcportal.db.models import ApiToken, AuditEntry
from hpcportal.services import api_tokens
from tests.integration.portal_server import RunningPortal

TOKENS = "/api/v1/auth/api-tokens"


@pytest.fixture(scope="module")
def client(portal: RunningPortal) -> Iterator[httpx.Client]:
    with portal.client() as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(
    client: httpx.Client, session: dict[str, str], name: str, scopes: list[str]
) -> dict[str, Any]:
    r = client.post(
        TOKENS, json={"name": name, "scopes": scopes, "expires_in_days": 30}, headers=session
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_create_and_use_a_token(client: httpx.Client, alice: dict[str, str]) -> None:
    created = create(client, alice, "cli", ["read", "write"])
    assert set(created) == {"id", "name", "token", "scopes", "created_at", "expires_at"}
    assert api_tokens.TOKEN_RE.fullmatch(created["token"])
    assert created["scopes"] == ["read", "write"]
    assert created["expires_at"] is not None

    jobs = client.get("/api/v1/jobs", headers=bearer(created["token"]))
    assert jobs.status_code == 200, jobs.text
    assert "items" in jobs.json()
    me = client.get("/api/v1/me", headers=bearer(created["token"]))
    assert me.json()["user"] == "alice"

    listed = client.get(TOKENS, headers=alice).json()
    mine = next(t for t in listed if t["id"] == created["id"])
    assert "token" not in mine and mine["name"] == "cli"
    assert mine["last_used_at"] is not None


def test_read_only_token_is_refused_on_a_post(client: httpx.Client, alice: dict[str, str]) -> None:
    token = create(client, alice, "read only", ["read"])["token"]
    assert client.get("/api/v1/jobs", headers=bearer(token)).status_code == 200
    r = client.post(
        "/api/v1/jobs",
        params={"dry_run": "true"},
        json={"script": "#!/bin/bash\ntrue\n"},
        headers=bearer(token),
    )
    assert r.status_code == 403, r.text
    assert r.json() == {"detail": "This API token may only read.", "code": "forbidden"}


def test_a_token_cannot_create_or_list_tokens(client: httpx.Client, alice: dict[str, str]) -> None:
    token = create(client, alice, "writer", ["read", "write"])["token"]
    for r in (
        client.post(TOKENS, json={"name": "another", "scopes": ["read"]}, headers=bearer(token)),
        client.get(TOKENS, headers=bearer(token)),
    ):
        assert r.status_code == 403, r.text
        assert "login session" in r.json()["detail"]


def test_revoked_token_gets_401(
    portal: RunningPortal, client: httpx.Client, alice: dict[str, str]
) -> None:
    created = create(client, alice, "to revoke", ["read"])
    assert client.get("/api/v1/jobs", headers=bearer(created["token"])).status_code == 200
    r = client.delete(f"{TOKENS}/{created['id']}", headers=alice)
    assert r.status_code == 204, r.text
    refused = client.get("/api/v1/jobs", headers=bearer(created["token"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == api_tokens.REVOKED
    assert all(t["id"] != created["id"] for t in client.get(TOKENS, headers=alice).json())
    with portal.services.database.session() as session:
        actions = session.execute(
            select(AuditEntry.username, AuditEntry.action, AuditEntry.result).where(
                AuditEntry.target == f"api_token:{created['id']}"
            )
        ).all()
        row = session.get(ApiToken, created["id"])
        assert row is not None and row.token_hash == api_tokens.hash_token(created["token"])
    assert sorted(actions) == [
        ("alice", "api_token.create", "ok"),
        ("alice", "api_token.revoke", "ok"),
    ]


def test_bob_cannot_revoke_alices_token_but_carol_can(
    client: httpx.Client,
    alice: dict[str, str],
    bob: dict[str, str],
    carol: dict[str, str],
) -> None:
    created = create(client, alice, "shared laptop", ["read"])
    r = client.delete(f"{TOKENS}/{created['id']}", headers=bob)
    assert r.status_code == 404, r.text
    assert client.get("/api/v1/jobs", headers=bearer(created["token"])).status_code == 200
    r = client.delete(f"{TOKENS}/{created['id']}", headers=carol)
    assert r.status_code == 204, r.text
    assert client.get("/api/v1/jobs", headers=bearer(created["token"])).status_code == 401


def test_a_write_token_may_revoke_itself(client: httpx.Client, alice: dict[str, str]) -> None:
    created = create(client, alice, "self destruct", ["read", "write"])
    r = client.delete(f"{TOKENS}/{created['id']}", headers=bearer(created["token"]))
    assert r.status_code == 204, r.text
    assert client.get("/api/v1/me", headers=bearer(created["token"])).status_code == 401


def test_unknown_tokens_get_401(client: httpx.Client) -> None:
    r = client.get("/api/v1/jobs", headers=bearer(api_tokens.generate_token()))
    assert r.status_code == 401
    assert r.json()["detail"] == api_tokens.NOT_VALID
