"""Logging in against the machine's real PAM and Unix users.

Needs the demo users (``alice``/``bob``/``dave``/``carol``, passwords ``<name>-demo``,
carol in ``hpc-admins``) that ``hpcportal dev-cluster up`` creates, and must run as a
user allowed to check their passwords (root, in the dev container). A wrong password
costs about 2 s (PAM's failure delay), so the tests keep such attempts few.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from hpcportal.app import create_app
from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.models import AuditEntry, LoginFailure
from hpcportal.db.session import Database
from hpcportal.dependencies import AdminUser, CurrentUser
from hpcportal.services import auth
from hpcportal.services.identity import Principal

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-long-enough-for-hs256-signing"
TOKEN_URL = "/api/v1/auth/token"
LOGOUT_URL = "/api/v1/auth/logout"
WHOAMI_URL = "/api/v1/test-only/whoami"
ADMIN_URL = "/api/v1/test-only/admin"
PASSWORDS = {"alice": "alice-demo", "bob": "bob-demo", "carol": "carol-demo", "dave": "dave-demo"}


# --- App and fixtures ---------------------------------------------------------------


def _probe_router() -> APIRouter:
    """Endpoints that only exist in these tests, to exercise the auth dependencies."""
    router = APIRouter(prefix="/test-only")

    @router.get("/whoami")
    def whoami(user: CurrentUser) -> dict[str, str]:
        return {"user": user.username, "role": user.role}

    @router.post("/whoami")
    def whoami_post(user: CurrentUser) -> dict[str, str]:
        return {"user": user.username, "role": user.role}

    @router.get("/admin")
    def admin(user: AdminUser) -> dict[str, str]:
        return {"user": user.username}

    return router


def build_app(settings: Settings) -> FastAPI:
    """The real application, with the probe endpoints."""
    app = create_app(settings, start_refresher=False)
    app.include_router(_probe_router(), prefix="/api/v1")
    return app


@pytest.fixture(scope="module", autouse=True)
def _demo_users_exist() -> None:
    for name in PASSWORDS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            pytest.fail(f"Unix user {name!r} does not exist: run `hpcportal dev-cluster up` first.")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr(SECRET),
        login_max_failures=2,
        login_window_seconds=300,
        login_failure_delay_seconds=0,
        principal_cache_seconds=0,
    )
    upgrade(config)
    return config


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(settings: Settings) -> Iterator[ClientFactory]:
    """Clients of one app (one database), each with its own cookie jar and address."""
    app = build_app(settings)
    clients: list[TestClient] = []

    def make(address: str = "10.0.0.1") -> TestClient:
        client = TestClient(app, client=(address, 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    services_of(app).database.dispose()


@contextmanager
def standalone_client(
    settings: Settings, base_url: str = "http://testserver"
) -> Iterator[TestClient]:
    """A client of a separate app, for tests that need settings of their own."""
    app = build_app(settings)
    try:
        with TestClient(app, base_url=base_url) as client:
            yield client
    finally:
        services_of(app).database.dispose()


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def pam_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record who PAM is asked about, still asking the real PAM."""
    calls: list[str] = []
    real = auth.pam_authenticate

    def counting(username: str, password: str, service: str) -> bool:
        calls.append(username)
        return real(username, password, service)

    monkeypatch.setattr(auth, "pam_authenticate", counting)
    return calls


def log_in(client: TestClient, user: str, password: str | None = None) -> httpx.Response:
    form = {"username": user, "password": password or PASSWORDS[user]}
    response: httpx.Response = client.post(TOKEN_URL, data=form)
    return response


def token_for(client: TestClient, user: str) -> str:
    response = log_in(client, user)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_cookie_headers(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


# --- Logging in ---------------------------------------------------------------------


def test_good_login_answers_token_and_sets_cookies(client: TestClient, settings: Settings) -> None:
    response = log_in(client, "alice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == "alice"
    assert body["role"] == "user"
    assert body["expires_in"] == settings.token_ttl_seconds
    assert response.headers["cache-control"] == "no-store"

    cookies = set_cookie_headers(response)
    session = cookies[settings.cookie_name].lower()
    assert body["access_token"] in cookies[settings.cookie_name]
    assert "httponly" in session
    assert "samesite=lax" in session
    assert "path=/" in session
    assert "secure" not in session
    csrf = cookies[auth.CSRF_COOKIE].lower()
    assert "httponly" not in csrf
    assert "samesite=lax" in csrf


def test_session_cookie_is_secure_when_configured(settings: Settings) -> None:
    secure = settings.model_copy(update={"cookie_secure": True})
    with standalone_client(secure, base_url="https://testserver") as https_client:
        response = log_in(https_client, "alice")
    cookies = set_cookie_headers(response)
    assert "secure" in cookies[settings.cookie_name].lower()
    assert "secure" in cookies[auth.CSRF_COOKIE].lower()


def test_token_works_as_bearer(make_client: ClientFactory) -> None:
    token = token_for(make_client(), "alice")
    response = make_client().get(WHOAMI_URL, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "alice", "role": "user"}


def test_token_works_as_cookie(client: TestClient) -> None:
    token_for(client, "alice")
    response = client.get(WHOAMI_URL)  # the jar now holds the session cookie
    assert response.status_code == 200, response.text
    assert response.json()["user"] == "alice"


def test_wrong_password_is_refused_generically(client: TestClient, pam_calls: list[str]) -> None:
    response = log_in(client, "alice", "not-alices-password")
    assert response.status_code == 401
    assert response.json()["detail"] == "Wrong username or password."
    assert response.headers["www-authenticate"] == "Bearer"
    assert pam_calls == ["alice"]


def test_unknown_user_gets_the_same_answer(client: TestClient, pam_calls: list[str]) -> None:
    response = log_in(client, "nosuchuser", "whatever")
    assert response.status_code == 401
    assert response.json()["detail"] == "Wrong username or password."
    assert pam_calls == []


@pytest.mark.parametrize("user", ["root", "daemon"])
def test_root_and_system_users_are_refused(
    client: TestClient, pam_calls: list[str], user: str
) -> None:
    response = log_in(client, user, "anything")
    assert response.status_code == 401
    assert response.json()["detail"] == "Wrong username or password."
    assert pam_calls == []  # their passwords are never even tried


def test_refusals_without_pam_are_not_faster(settings: Settings, pam_calls: list[str]) -> None:
    slow = settings.model_copy(update={"login_failure_delay_seconds": 0.5})
    with standalone_client(slow) as slow_client:
        started = time.monotonic()
        response = log_in(slow_client, "nosuchuser", "whatever")
        elapsed = time.monotonic() - started
    assert response.status_code == 401
    assert elapsed >= 0.5


@pytest.mark.parametrize("name", ["-rf", "a" * 33, "al ice", "../etc"])
def test_malformed_user_name_is_invalid_input(
    client: TestClient, pam_calls: list[str], name: str
) -> None:
    response = log_in(client, name, "x")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert pam_calls == []


def test_no_credentials_means_log_in_first(client: TestClient) -> None:
    response = client.get(WHOAMI_URL)
    assert response.status_code == 401
    assert response.json()["detail"] == "Log in first."


# --- Throttling ---------------------------------------------------------------------


def test_user_is_throttled_without_asking_pam(client: TestClient, pam_calls: list[str]) -> None:
    for _ in range(2):
        assert log_in(client, "alice", "wrong").status_code == 401
    assert pam_calls == ["alice", "alice"]

    response = log_in(client, "alice")  # even the right password is not checked now
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 300
    assert "try again in" in response.json()["detail"]
    assert pam_calls == ["alice", "alice"]


def test_address_is_throttled_at_four_times_the_user_limit(
    make_client: ClientFactory, pam_calls: list[str]
) -> None:
    attacker = make_client("192.0.2.7")
    for i in range(8):  # 4 x login_max_failures, spread over unknown names
        assert log_in(attacker, f"nobody{i}", "x").status_code == 401
    response = log_in(attacker, "alice")
    assert response.status_code == 429
    assert "retry-after" in response.headers
    assert pam_calls == []

    neighbour = make_client("192.0.2.8")
    assert log_in(neighbour, "alice").status_code == 200


def test_success_clears_the_users_failures(
    client: TestClient, settings: Settings, pam_calls: list[str]
) -> None:
    assert log_in(client, "bob", "wrong").status_code == 401
    assert log_in(client, "bob").status_code == 200
    db = Database(settings)
    try:
        with db.session() as session:
            left = session.scalars(select(LoginFailure).where(LoginFailure.username == "bob"))
            assert left.all() == []
    finally:
        db.dispose()


def test_a_login_is_in_the_audit_log_and_a_refusal_is_not(
    client: TestClient, settings: Settings, pam_calls: list[str]
) -> None:
    """The user-activity report counts logins from audit entries ``auth.login``."""
    assert log_in(client, "dave", "wrong").status_code == 401
    assert log_in(client, "dave").status_code == 200
    db = Database(settings)
    try:
        with db.session() as session:
            rows = session.scalars(
                select(AuditEntry).where(
                    AuditEntry.username == "dave", AuditEntry.action == "auth.login"
                )
            ).all()
    finally:
        db.dispose()
    assert [(row.result, row.target) for row in rows] == [("ok", None)]


# --- Logging out --------------------------------------------------------------------


def test_logout_revokes_a_bearer_token(make_client: ClientFactory, settings: Settings) -> None:
    token = token_for(make_client(), "alice")
    api = make_client()
    response = api.post(LOGOUT_URL, headers=bearer(token))
    assert response.status_code == 204
    cleared = set_cookie_headers(response)
    assert "max-age=0" in cleared[settings.cookie_name].lower()
    assert "max-age=0" in cleared[auth.CSRF_COOKIE].lower()

    again = api.get(WHOAMI_URL, headers=bearer(token))
    assert again.status_code == 401
    assert again.json()["detail"] == auth.SESSION_ENDED


def test_logout_revokes_a_cookie_session(make_client: ClientFactory, settings: Settings) -> None:
    browser = make_client()
    token = token_for(browser, "alice")
    csrf = browser.cookies[auth.CSRF_COOKIE]
    response = browser.post(LOGOUT_URL, headers={auth.CSRF_HEADER: csrf})
    assert response.status_code == 204
    assert settings.cookie_name not in browser.cookies

    replay = make_client()  # someone who copied the cookie before logout
    replay.cookies.set(settings.cookie_name, token)
    replayed = replay.get(WHOAMI_URL)
    assert replayed.status_code == 401
    assert replayed.json()["detail"] == auth.SESSION_ENDED
    assert make_client().get(WHOAMI_URL, headers=bearer(token)).status_code == 401


def test_other_sessions_survive_a_logout(make_client: ClientFactory) -> None:
    first, second = token_for(make_client(), "alice"), token_for(make_client(), "alice")
    api = make_client()
    assert api.post(LOGOUT_URL, headers=bearer(first)).status_code == 204
    assert api.get(WHOAMI_URL, headers=bearer(second)).status_code == 200


# --- Bad tokens ---------------------------------------------------------------------


ALICE = Principal(username="alice", uid=1001, gid=1001, groups=("research",), role="user")


def test_expired_token_asks_to_log_in_again(make_client: ClientFactory, settings: Settings) -> None:
    old = auth.issue_token(settings, ALICE, now=datetime.now(UTC) - timedelta(days=1)).token
    response = make_client().get(WHOAMI_URL, headers=bearer(old))
    assert response.status_code == 401
    assert response.json()["detail"] == "Your session has expired; log in again."

    browser = make_client()
    browser.cookies.set(settings.cookie_name, old)
    assert browser.get(WHOAMI_URL).json()["detail"] == "Your session has expired; log in again."


def _claims() -> dict[str, object]:
    now = datetime.now(UTC)
    return {"sub": "carol", "iat": now, "exp": now + timedelta(minutes=5), "jti": "forged"}


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: jwt.encode(_claims(), None, algorithm="none"), id="alg-none"),
        pytest.param(lambda: jwt.encode(_claims(), SECRET * 2, algorithm="HS512"), id="hs512"),
        pytest.param(lambda: jwt.encode(_claims(), "x" * 64, algorithm="HS256"), id="other-key"),
    ],
)
def test_forged_tokens_are_refused(client: TestClient, forge: Callable[[], str]) -> None:
    response = client.get(WHOAMI_URL, headers=bearer(forge()))
    assert response.status_code == 401
    assert response.json()["detail"] == auth.SESSION_INVALID


# --- CSRF ---------------------------------------------------------------------------


def test_cookie_post_needs_the_csrf_header(client: TestClient) -> None:
    token_for(client, "alice")
    refused = client.post(WHOAMI_URL)
    assert refused.status_code == 403
    assert auth.CSRF_HEADER in refused.json()["detail"]

    wrong = client.post(WHOAMI_URL, headers={auth.CSRF_HEADER: "guess"})
    assert wrong.status_code == 403

    csrf = client.cookies[auth.CSRF_COOKIE]
    accepted = client.post(WHOAMI_URL, headers={auth.CSRF_HEADER: csrf})
    assert accepted.status_code == 200, accepted.text
    assert client.get(WHOAMI_URL).status_code == 200  # safe methods need no header


def test_bearer_post_needs_no_csrf_header(make_client: ClientFactory) -> None:
    token = token_for(make_client(), "alice")
    response = make_client().post(WHOAMI_URL, headers=bearer(token))
    assert response.status_code == 200, response.text


# --- Roles --------------------------------------------------------------------------


def test_carol_is_admin(make_client: ClientFactory) -> None:
    response = log_in(make_client(), "carol")
    assert response.json()["role"] == "admin"
    token = response.json()["access_token"]
    api = make_client()
    assert api.get(WHOAMI_URL, headers=bearer(token)).json()["role"] == "admin"
    assert api.get(ADMIN_URL, headers=bearer(token)).status_code == 200


def test_alice_is_a_user(make_client: ClientFactory) -> None:
    response = log_in(make_client(), "alice")
    assert response.json()["role"] == "user"
    refused = make_client().get(ADMIN_URL, headers=bearer(response.json()["access_token"]))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the administrator role."
