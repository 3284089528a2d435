"""Personal API tokens: format, hashing, scopes, expiry, revocation, cache, and the
dependencies that turn ``Authorization: Bearer hpcp_...`` into a user.

Database tests run on SQLite and PostgreSQL (``database`` fixture of ``conftest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import event, select

from hpcportal.api import auth as auth_api
from hpcportal.api import tokens as tokens_api
from hpcportal.config import Settings
from hpcportal.db.models import ApiToken, AuditEntry
from hpcportal.db.session import Database
from hpcportal.dependencies import AuthenticationDep, CurrentUser
from hpcportal.errors import (
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    install_error_handlers,
)
from hpcportal.services import api_tokens, auth
from hpcportal.services.api_tokens import (
    ApiTokenCache,
    ApiTokenCreate,
    Authentication,
    ValidToken,
)
from hpcportal.services.identity import Principal
from tests.app_services import bare_app
from tests.unit.conftest import TEST_SECRET

ALICE = Principal(username="alice", uid=1001, gid=1001, groups=("research",), role="user")
BOB = Principal(username="bob", uid=1002, gid=1001, groups=("research",), role="user")
CAROL = Principal(username="carol", uid=1004, gid=1003, groups=("hpc-admins",), role="admin")
PEOPLE = {p.username: p for p in (ALICE, BOB, CAROL)}
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def count_queries(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", before)


def make_token(
    database: Database,
    owner: Principal = ALICE,
    scopes: list[str] | None = None,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> api_tokens.CreatedApiToken:
    body = ApiTokenCreate(
        name="laptop", scopes=scopes or ["read", "write"], expires_in_days=expires_in_days
    )
    with database.session() as session:
        return api_tokens.create_token(session, owner, body, now=now)


# --- Format and hashing --------------------------------------------------------------


def test_generated_tokens_have_the_documented_format() -> None:
    tokens = {api_tokens.generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("hpcp_")
        assert len(token) == 45
        assert api_tokens.TOKEN_RE.fullmatch(token)
        assert api_tokens.looks_like_api_token(token)


def test_hash_is_sha256_hex() -> None:
    token = api_tokens.generate_token()
    digest = api_tokens.hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64
    assert api_tokens.hash_token(token) == digest


def test_login_jwts_are_not_taken_for_api_tokens() -> None:
    settings = Settings(database_url="sqlite://", jwt_secret=SecretStr(TEST_SECRET))
    issued = auth.issue_token(settings, ALICE)
    assert not api_tokens.looks_like_api_token(issued.token)


def test_scopes_are_stored_space_separated_in_canonical_order() -> None:
    assert api_tokens.format_scopes(["write", "read", "write"]) == "read write"
    assert api_tokens.parse_scopes("write read") == {"read", "write"}
    assert api_tokens.parse_scopes("jobs:admin read") == {"read"}  # unknown grants nothing


# --- The create request ---------------------------------------------------------------


def test_create_request_defaults_and_normalises() -> None:
    body = ApiTokenCreate(name="  ci  ")
    assert (body.name, body.scopes, body.expires_in_days) == ("ci", ["read"], None)
    assert ApiTokenCreate(name="x", scopes=["write", "read", "write"]).scopes == ["read", "write"]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "two\nlines"},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["admin"]},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": 366},
        {"name": "x", "owner": "bob"},
    ],
)
def test_create_request_refuses_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApiTokenCreate(**fields)


# --- Scope rules --------------------------------------------------------------------------


def _token_auth(*scopes: str) -> Authentication:
    return Authentication.for_api_token(ValidToken(1, "alice", frozenset(scopes), None))


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_read_scope_allows_safe_methods(method: str) -> None:
    api_tokens.check_scope(_token_auth("read"), method)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_read_only_token_is_refused_unsafe_methods(method: str) -> None:
    with pytest.raises(Forbidden, match=r"^This API token may only read\.$"):
        api_tokens.check_scope(_token_auth("read"), method)
    api_tokens.check_scope(_token_auth("read", "write"), method)


def test_write_alone_does_not_allow_reading() -> None:
    api_tokens.check_scope(_token_auth("write"), "POST")
    with pytest.raises(Forbidden, match="may only write"):
        api_tokens.check_scope(_token_auth("write"), "GET")


def test_a_session_has_both_scopes_and_claims() -> None:
    claims = auth.TokenClaims("alice", "jti", "user", T0, T0 + timedelta(hours=1))
    session = Authentication.for_session(claims)
    assert session.is_session and session.scopes == {"read", "write"}
    for method in ("GET", "POST", "DELETE"):
        api_tokens.check_scope(session, method)
    assert api_tokens.require_session(session) is claims


def test_an_api_token_is_not_a_session() -> None:
    token = _token_auth("read", "write")
    assert not token.is_session and token.token_id == 1
    with pytest.raises(Forbidden, match="login session"):
        api_tokens.require_session(token)


# --- The cache -------------------------------------------------------------------------


def _valid(token_id: int = 1, expires_at: datetime | None = None) -> ValidToken:
    return ValidToken(token_id, "alice", frozenset({"read"}), expires_at)


def test_cache_keeps_a_lookup_for_its_ttl() -> None:
    clock = FakeClock()
    cache = ApiTokenCache(5, clock=clock)
    cache.put("h", _valid(), cache.generation)
    assert cache.get("h") == _valid()
    clock.now += 4.9
    assert cache.get("h") == _valid()
    clock.now += 0.2
    assert cache.get("h") is None


def test_cache_never_outlives_the_tokens_expiry() -> None:
    cache = ApiTokenCache(60, clock=FakeClock())
    cache.put("h", _valid(expires_at=T0), cache.generation)
    assert cache.get("h", now=T0 - timedelta(seconds=1)) is not None
    assert cache.get("h", now=T0) is None


def test_forget_drops_the_token_and_lookups_under_way() -> None:
    cache = ApiTokenCache(60, clock=FakeClock())
    cache.put("a", _valid(1), cache.generation)
    cache.put("b", _valid(2), cache.generation)
    started = cache.generation  # a lookup of token 1 begins...
    cache.forget(1)  # ...the token is revoked meanwhile...
    cache.put("a", _valid(1), started)  # ...and its (stale) answer must not come back
    assert cache.get("a") is None
    assert cache.get("b") == _valid(2)


def test_zero_ttl_disables_the_cache() -> None:
    cache = ApiTokenCache(0, clock=FakeClock())
    cache.put("h", _valid(), cache.generation)
    assert cache.get("h") is None and len(cache) == 0


def test_cache_size_is_bounded() -> None:
    cache = ApiTokenCache(60, clock=FakeClock(), max_entries=10)
    for i in range(25):
        cache.put(f"h{i}", _valid(i), cache.generation)
    assert len(cache) <= 10
    assert cache.get("h24") == _valid(24)


# --- Creating and checking, on the database -----------------------------------------------


def test_only_the_hash_is_stored_and_creation_is_audited(database: Database) -> None:
    created = make_token(database, scopes=["read"], expires_in_days=30, now=T0)
    assert created.token.startswith("hpcp_")
    assert created.expires_at == T0 + timedelta(days=30)
    with database.session() as session:
        row = session.get(ApiToken, created.id)
        assert row is not None
        assert row.token_hash == api_tokens.hash_token(created.token)
        stored = [row.username, row.name, row.token_hash, row.scopes]
        assert not any(created.token in value for value in stored)
        assert row.scopes == "read"
        assert row.last_used_at is None and row.revoked_at is None
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.username, entry.action, entry.target, entry.result) == (
        "alice",
        "api_token.create",
        f"api_token:{created.id}",
        "ok",
    )


def test_a_valid_token_resolves_to_its_owner_and_scopes(database: Database) -> None:
    created = make_token(database, owner=BOB, scopes=["read"])
    with database.session() as session:
        valid = api_tokens.check_token(session, created.token)
    assert (valid.id, valid.username, valid.scopes) == (created.id, "bob", {"read"})


@pytest.mark.parametrize(
    "token",
    ["hpcp_", "hpcp_short", "hpcp_" + "a" * 41, "hpcp_" + "a" * 39 + "!", "Bearer x"],
)
def test_malformed_tokens_are_refused_without_a_query(database: Database, token: str) -> None:
    with (
        count_queries(database) as statements,
        database.session() as session,
        pytest.raises(NotAuthenticated, match="not valid"),
    ):
        api_tokens.check_token(session, token)
    assert statements == []


def test_unknown_tokens_are_refused(database: Database) -> None:
    make_token(database)
    with database.session() as session, pytest.raises(NotAuthenticated) as caught:
        api_tokens.check_token(session, api_tokens.generate_token())
    assert caught.value.message == api_tokens.NOT_VALID
    assert caught.value.status == 401


def test_expired_tokens_are_refused(database: Database) -> None:
    created = make_token(database, expires_in_days=1, now=T0)
    with database.session() as session:
        api_tokens.check_token(session, created.token, now=T0 + timedelta(hours=23))
        with pytest.raises(NotAuthenticated, match="expired on 2026-11-22 12:00 UTC"):
            api_tokens.check_token(session, created.token, now=T0 + timedelta(days=1))


def test_tokens_without_expiry_stay_valid(database: Database) -> None:
    created = make_token(database, now=T0)
    assert created.expires_at is None
    with database.session() as session:
        api_tokens.check_token(session, created.token, now=T0 + timedelta(days=3650))


def test_last_used_is_written_at_most_once_a_minute(database: Database) -> None:
    created = make_token(database, now=T0)

    def use(at: datetime) -> datetime | None:
        with database.session() as session:
            api_tokens.check_token(session, created.token, now=at)
        with database.session() as session:
            row = session.get(ApiToken, created.id)
            assert row is not None
            return row.last_used_at

    assert use(T0) == T0
    assert use(T0 + timedelta(seconds=30)) == T0
    with count_queries(database) as statements:
        use(T0 + timedelta(seconds=59))
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in statements)
    assert use(T0 + timedelta(seconds=61)) == T0 + timedelta(seconds=61)


def test_a_cached_check_costs_no_query(database: Database) -> None:
    created = make_token(database)
    cache = ApiTokenCache(5)
    with count_queries(database) as first:
        valid = api_tokens.authenticate(database, cache, created.token)
    assert first  # the first check asks the database
    with count_queries(database) as again:
        assert api_tokens.authenticate(database, cache, created.token) == valid
        assert cache.lookup(created.token) == valid
    assert again == []


def test_refusals_are_not_cached(database: Database) -> None:
    cache = ApiTokenCache(5)
    token = api_tokens.generate_token()
    for _ in range(2):
        with pytest.raises(NotAuthenticated):
            api_tokens.authenticate(database, cache, token)
    assert len(cache) == 0


# --- Listing and revoking --------------------------------------------------------------------


def test_list_shows_own_unrevoked_tokens_without_values(database: Database) -> None:
    first = make_token(database, now=T0, expires_in_days=1)
    second = make_token(database, now=T0 + timedelta(days=2))
    make_token(database, owner=BOB)
    revoked = make_token(database)
    with database.session() as session:
        api_tokens.revoke_token(session, ApiTokenCache(5), ALICE, revoked.id)
    with database.session() as session:
        listed = api_tokens.list_tokens(session, ALICE, now=T0 + timedelta(days=3))
    assert [t.id for t in listed] == [second.id, first.id]
    assert [t.expired for t in listed] == [False, True]
    assert all("token" not in t.model_dump() for t in listed)
    assert listed[0].scopes == ["read", "write"]


def test_owner_revokes_and_the_cache_forgets_at_once(database: Database) -> None:
    created = make_token(database)
    cache = ApiTokenCache(60)
    api_tokens.authenticate(database, cache, created.token)
    assert cache.lookup(created.token) is not None
    with database.session() as session:
        api_tokens.revoke_token(session, cache, ALICE, created.id, address="10.0.0.9")
    assert cache.lookup(created.token) is None
    with pytest.raises(NotAuthenticated, match="revoked"):
        api_tokens.authenticate(database, cache, created.token)
    with database.session() as session:
        row = session.get(ApiToken, created.id)
        assert row is not None and row.revoked_at is not None
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "api_token.revoke")
        ).one()
    assert (entry.username, entry.target, entry.result, entry.address) == (
        "alice",
        f"api_token:{created.id}",
        "ok",
        "10.0.0.9",
    )


def test_others_tokens_are_not_found_but_admins_may_revoke_them(database: Database) -> None:
    created = make_token(database, owner=ALICE)
    cache = ApiTokenCache(5)
    with database.session() as session, pytest.raises(NotFound):
        api_tokens.revoke_token(session, cache, BOB, created.id)
    with database.session() as session:
        api_tokens.revoke_token(session, cache, CAROL, created.id)
    with database.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "api_token.revoke")
        ).one()
    assert (entry.username, entry.detail) == ("carol", "owner=alice")


def test_revoking_twice_or_an_unknown_id_is_not_found(database: Database) -> None:
    created = make_token(database)
    cache = ApiTokenCache(5)
    with database.session() as session:
        api_tokens.revoke_token(session, cache, ALICE, created.id)
    for token_id in (created.id, 999_999):
        with database.session() as session, pytest.raises(NotFound):
            api_tokens.revoke_token(session, cache, ALICE, token_id)


def test_a_user_may_hold_a_bounded_number_of_tokens(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_tokens, "MAX_TOKENS_PER_USER", 2)
    make_token(database)
    make_token(database)
    with pytest.raises(InvalidInput, match="already have 2 API tokens"):
        make_token(database)
    make_token(database, owner=BOB)


# --- Through the dependencies (an app with the token router and probes) -------------------


@pytest.fixture
def client(
    db_settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The token and login routers plus probe endpoints, with fake Unix users."""
    monkeypatch.setattr(auth, "lookup_principal", lambda name, _group: PEOPLE.get(name))
    # Fake people have no Unix account for PAM to check.
    monkeypatch.setattr(auth, "account_refusal", lambda _who, _settings: None)
    auth.principal_cache.clear()
    app = bare_app(db_settings, database=database)
    install_error_handlers(app)
    probes = APIRouter()

    @probes.get("/probe")
    async def probe_get(user: CurrentUser, how: AuthenticationDep) -> dict[str, object]:
        return {"user": user.username, "method": how.method, "scopes": sorted(how.scopes)}

    @probes.post("/probe")
    async def probe_post(user: CurrentUser) -> dict[str, str]:
        return {"user": user.username}

    app.include_router(probes, prefix="/api/v1")
    app.include_router(auth_api.router, prefix="/api/v1")
    app.include_router(tokens_api.router, prefix="/api/v1")
    with TestClient(app) as test_client:
        yield test_client
    auth.principal_cache.clear()


def _session(settings: Settings, who: Principal = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.issue_token(settings, who).token}"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


URL = "/api/v1/auth/api-tokens"


def test_session_creates_a_token_that_then_authenticates(
    client: TestClient, db_settings: Settings
) -> None:
    r = client.post(
        URL,
        json={"name": "cli", "scopes": ["read"], "expires_in_days": 7},
        headers=_session(db_settings),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "name", "token", "scopes", "created_at", "expires_at"}
    assert body["scopes"] == ["read"] and r.headers["cache-control"] == "no-store"
    probe = client.get("/api/v1/probe", headers=_bearer(body["token"]))
    assert probe.json() == {"user": "alice", "method": "api_token", "scopes": ["read"]}
    session_probe = client.get("/api/v1/probe", headers=_session(db_settings))
    assert session_probe.json()["method"] == "session"
    assert session_probe.json()["scopes"] == ["read", "write"]


def test_read_only_token_gets_403_on_unsafe_methods(client: TestClient, database: Database) -> None:
    read_only = make_token(database, scopes=["read"]).token
    r = client.post("/api/v1/probe", headers=_bearer(read_only))
    assert r.status_code == 403
    assert r.json() == {"detail": "This API token may only read.", "code": "forbidden"}
    writer = make_token(database, scopes=["read", "write"]).token
    assert client.post("/api/v1/probe", headers=_bearer(writer)).json() == {"user": "alice"}


def test_api_tokens_cannot_create_or_list_tokens_or_log_out(
    client: TestClient, database: Database
) -> None:
    token = make_token(database, scopes=["read", "write"]).token
    for r in (
        client.post(URL, json={"name": "more"}, headers=_bearer(token)),
        client.get(URL, headers=_bearer(token)),
        client.post("/api/v1/auth/logout", headers=_bearer(token)),
    ):
        assert r.status_code == 403, r.text
        assert "login session" in r.json()["detail"]


def test_bad_revoked_and_expired_tokens_get_401(client: TestClient, database: Database) -> None:
    unknown = client.get("/api/v1/probe", headers=_bearer(api_tokens.generate_token()))
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == api_tokens.NOT_VALID
    assert unknown.headers["www-authenticate"] == "Bearer"
    expired = make_token(database, expires_in_days=1, now=datetime.now(UTC) - timedelta(days=2))
    r = client.get("/api/v1/probe", headers=_bearer(expired.token))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_revocation_applies_to_the_next_request(
    client: TestClient, db_settings: Settings, database: Database
) -> None:
    token = make_token(database, scopes=["read", "write"])
    assert client.get("/api/v1/probe", headers=_bearer(token.token)).status_code == 200
    r = client.delete(f"{URL}/{token.id}", headers=_session(db_settings))
    assert r.status_code == 204
    r = client.get("/api/v1/probe", headers=_bearer(token.token))
    assert r.status_code == 401
    assert r.json()["detail"] == api_tokens.REVOKED


def test_a_token_may_revoke_itself(client: TestClient, database: Database) -> None:
    token = make_token(database, scopes=["read", "write"])
    assert client.delete(f"{URL}/{token.id}", headers=_bearer(token.token)).status_code == 204
    assert client.get("/api/v1/probe", headers=_bearer(token.token)).status_code == 401


def test_list_and_revoke_through_the_api(
    client: TestClient, db_settings: Settings, database: Database
) -> None:
    mine = make_token(database, owner=ALICE)
    make_token(database, owner=BOB)
    listed = client.get(URL, headers=_session(db_settings)).json()
    assert [t["id"] for t in listed] == [mine.id]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert client.delete(f"{URL}/{mine.id}", headers=_session(db_settings, BOB)).status_code == 404
    assert (
        client.delete(f"{URL}/{mine.id}", headers=_session(db_settings, CAROL)).status_code == 204
    )
    assert client.get(URL, headers=_session(db_settings)).json() == []
    assert client.delete(f"{URL}/abc", headers=_session(db_settings)).status_code == 422
    assert client.delete(f"{URL}/99999999999", headers=_session(db_settings)).status_code == 422


def test_a_cached_token_read_costs_no_query(client: TestClient, database: Database) -> None:
    token = make_token(database, scopes=["read"]).token
    assert client.get("/api/v1/probe", headers=_bearer(token)).status_code == 200
    with count_queries(database) as statements:
        for _ in range(3):
            assert client.get("/api/v1/probe", headers=_bearer(token)).status_code == 200
    assert statements == []


def test_the_jwt_path_is_unchanged(client: TestClient, db_settings: Settings) -> None:
    assert client.get("/api/v1/probe").status_code == 401
    r = client.get("/api/v1/probe", headers=_bearer("not-a-jwt"))
    assert (r.status_code, r.json()["detail"]) == (401, auth.SESSION_INVALID)
    assert client.post("/api/v1/probe", headers=_session(db_settings)).status_code == 200
