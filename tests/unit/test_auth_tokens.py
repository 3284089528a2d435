"""Tokens, user names, CSRF and principal lookup: the pure parts of ``services.auth``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.errors import Forbidden, InvalidInput, NotAuthenticated
from hpcportal.services import auth
from hpcportal.services.identity import Principal

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ALICE = Principal(username="alice", uid=1001, gid=1001, groups=("research",), role="user")
CAROL = Principal(username="carol", uid=1004, gid=1003, groups=("hpc-admins",), role="admin")


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="sqlite://", jwt_secret=SecretStr(SECRET), token_ttl_seconds=600)


def _payload(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "alice",
        "iat": now,
        "exp": now + timedelta(days=1),  # built at collection; the suite may run long
        "jti": "abc",
        "role": "user",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


# --- Issue and verify ---------------------------------------------------------------


def test_issued_token_carries_the_expected_claims(settings: Settings) -> None:
    issued = auth.issue_token(settings, CAROL)
    header = jwt.get_unverified_header(issued.token)
    payload = jwt.decode(issued.token, SECRET, algorithms=["HS256"])
    assert header["alg"] == "HS256"
    assert set(payload) == {"sub", "iat", "exp", "jti", "role"}
    assert payload["sub"] == "carol"
    assert payload["role"] == "admin"
    assert payload["exp"] - payload["iat"] == 600
    assert issued.expires_in == 600


def test_round_trip(settings: Settings) -> None:
    issued = auth.issue_token(settings, ALICE)
    claims = auth.decode_token(settings, issued.token)
    assert (claims.subject, claims.jti, claims.role) == ("alice", issued.jti, "user")
    assert claims.expires_at == issued.expires_at


def test_every_token_gets_its_own_jti(settings: Settings) -> None:
    jtis = {auth.issue_token(settings, ALICE).jti for _ in range(50)}
    assert len(jtis) == 50


def test_expired_token_says_so(settings: Settings) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    issued = auth.issue_token(settings, ALICE, now=past)
    with pytest.raises(NotAuthenticated) as info:
        auth.decode_token(settings, issued.token)
    assert info.value.message == auth.SESSION_EXPIRED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode(_payload(), None, algorithm="none"), id="alg-none"),
        pytest.param(jwt.encode(_payload(), SECRET * 2, algorithm="HS512"), id="hs512"),
        pytest.param(jwt.encode(_payload(), "another-key-" + "x" * 40, "HS256"), id="other-key"),
        pytest.param(jwt.encode(_payload(jti=None), SECRET, "HS256"), id="no-jti"),
        pytest.param(jwt.encode(_payload(sub=None), SECRET, "HS256"), id="no-sub"),
        pytest.param(jwt.encode(_payload(sub="../etc"), SECRET, "HS256"), id="bad-sub"),
        pytest.param(jwt.encode(_payload(jti="j" * 65), SECRET, "HS256"), id="long-jti"),
        pytest.param("not.a.token", id="garbage"),
    ],
)
def test_forged_or_malformed_tokens_are_refused(settings: Settings, token: str) -> None:
    with pytest.raises(NotAuthenticated) as info:
        auth.decode_token(settings, token)
    assert info.value.message == auth.SESSION_INVALID


def test_expired_forgery_is_invalid_not_expired(settings: Settings) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token = jwt.encode(_payload(iat=past, exp=past + timedelta(minutes=1)), "k" * 40, "HS256")
    with pytest.raises(NotAuthenticated) as info:
        auth.decode_token(settings, token)
    assert info.value.message == auth.SESSION_INVALID


# --- User names and who may log in --------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "a", "_svc", "j.doe", "x-y_z", "A" * 32])
def test_valid_usernames(name: str) -> None:
    assert auth.validate_username(name) == name


@pytest.mark.parametrize(
    "name", ["", "-rf", ".hidden", "a" * 33, "alice\n", "al ice", "alice$", "ärger", "a/b"]
)
def test_invalid_usernames(name: str) -> None:
    with pytest.raises(InvalidInput):
        auth.validate_username(name)


def test_root_and_system_accounts_may_not_log_in(settings: Settings) -> None:
    root = Principal(username="root", uid=0, gid=0, groups=("root",), role="user")
    daemon = Principal(username="daemon", uid=1, gid=1, groups=(), role="user")
    assert not auth.may_log_in(root, settings)
    assert not auth.may_log_in(daemon, settings)
    assert auth.may_log_in(ALICE, settings)


@pytest.mark.parametrize(("seconds", "text"), [(5, "5 s"), (60, "1 min"), (250, "4 min 10 s")])
def test_wait_is_described_for_people(seconds: int, text: str) -> None:
    assert auth.describe_wait(seconds) == text


# --- CSRF ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_need_no_csrf_token(method: str) -> None:
    auth.check_csrf(method, None, None)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(("cookie", "header"), [(None, None), ("abc", None), ("abc", "abd")])
def test_unsafe_methods_need_matching_csrf_token(
    method: str, cookie: str | None, header: str | None
) -> None:
    with pytest.raises(Forbidden) as info:
        auth.check_csrf(method, cookie, header)
    assert auth.CSRF_HEADER in info.value.message


def test_matching_csrf_token_passes() -> None:
    token = auth.new_csrf_token()
    auth.check_csrf("POST", token, token)


# --- Principal cache ----------------------------------------------------------------


def test_principal_cache_reuses_answers_within_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_lookup(username: str, admin_group: str) -> Principal:
        calls.append(username)
        return ALICE

    monkeypatch.setattr(auth, "lookup_principal", fake_lookup)
    cache = auth.PrincipalCache()
    for _ in range(3):
        assert cache.get("alice", "hpc-admins", ttl=60) is ALICE
    assert calls == ["alice"]
    cache.get("alice", "hpc-admins", ttl=0)
    assert calls == ["alice", "alice"]


def test_principal_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_lookup(username: str, admin_group: str) -> Principal:
        calls.append(username)
        return ALICE

    monkeypatch.setattr(auth, "lookup_principal", fake_lookup)
    clock = iter([100.0, 100.5, 200.0])
    cache = auth.PrincipalCache(clock=lambda: next(clock))
    cache.get("alice", "g", ttl=1)
    cache.get("alice", "g", ttl=1)
    cache.get("alice", "g", ttl=1)
    assert calls == ["alice", "alice"]
