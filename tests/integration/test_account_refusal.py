"""Accounts that may not use the portal, with real Unix users and the real PAM stack.

Throwaway users (``zzacct-<kind>-<random>``, never a demo name) are made with a
password and then disabled the way an administrator would: a ``nologin`` shell,
``chage -E 0`` (account expired), ``chage -d 0`` (password must be changed),
``usermod -L`` (password locked). They are removed at the end of the module.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hpcportal.app import create_app
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.runas.install import ensure_service_account
from hpcportal.services import auth
from hpcportal.services.accounts import AccountPolicy, password_locked
from hpcportal.services.identity import lookup_principal
from tests.integration.service_portal import SERVICE_ACCOUNT, run_as_service

SECRET = "account-refusal-test-secret-long-enough-for-hs256"
TOKEN_URL = "/api/v1/auth/token"
NOLOGIN = "/usr/sbin/nologin"


class Users:
    """Throwaway Unix users with known passwords, removed by ``remove``."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.passwords: dict[str, str] = {}

    def make(self, kind: str, *setup: list[str]) -> str:
        name = f"zzacct-{kind}-{secrets.token_hex(2)}"
        subprocess.run(["useradd", "-M", "-s", "/bin/bash", name], check=True)
        self.made.append(name)
        password = f"Pw-{secrets.token_hex(8)}"
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        self.passwords[name] = password
        for argv in setup:
            self.run(argv, name)
        return name

    @staticmethod
    def run(argv: list[str], name: str) -> None:
        subprocess.run([*argv, name], check=True, capture_output=True)

    def remove(self) -> None:
        for name in self.made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    made = Users()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr(SECRET),
        login_max_failures=50,
        login_failure_delay_seconds=0,
        principal_cache_seconds=0,
    )
    upgrade(config)
    return config


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, start_refresher=False)) as test_client:
        yield test_client


def log_in(client: TestClient, users: Users, name: str) -> httpx.Response:
    form = {"username": name, "password": users.passwords[name]}
    response: httpx.Response = client.post(TOKEN_URL, data=form)
    return response


# --- Logging in -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "setup"),
    [
        ("nologin", [["usermod", "-s", NOLOGIN]]),
        ("false", [["usermod", "-s", "/bin/false"]]),
        ("expired", [["chage", "-E", "0"]]),
        ("mustchange", [["chage", "-d", "0"]]),
    ],
)
def test_disabled_account_with_right_password_is_refused(
    client: TestClient, users: Users, kind: str, setup: list[list[str]]
) -> None:
    name = users.make(kind, *setup)
    response = log_in(client, users, name)
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == auth.ACCOUNT_REFUSED
    assert "access_token" not in response.text


def test_wrong_password_of_a_disabled_account_says_nothing_about_it(
    client: TestClient, users: Users
) -> None:
    name = users.make("nologinwrong", ["usermod", "-s", NOLOGIN])
    response = client.post(TOKEN_URL, data={"username": name, "password": "not-the-password"})
    assert response.status_code == 401
    assert response.json()["detail"] == auth.WRONG_CREDENTIALS


def test_locked_password_is_refused(client: TestClient, users: Users) -> None:
    name = users.make("locked", ["usermod", "-L"])
    assert password_locked(name) is True
    response = log_in(client, users, name)
    assert response.status_code == 401
    # PAM itself refuses a locked password, like a wrong one.
    assert response.json()["detail"] == auth.WRONG_CREDENTIALS


def test_a_usable_throwaway_account_logs_in(client: TestClient, users: Users) -> None:
    """The control: the same kind of account, not disabled, is let in."""
    name = users.make("ok")
    response = log_in(client, users, name)
    assert response.status_code == 200, response.text
    assert response.json()["user"] == name


def test_refusal_takes_as_long_as_a_wrong_password(settings: Settings, users: Users) -> None:
    """PAM's own failure delay (pam_unix: about 2 s) against the padded refusal."""
    slow = settings.model_copy(update={"login_failure_delay_seconds": 2.0})
    name = users.make("timing", ["usermod", "-s", NOLOGIN])
    control = users.make("timingctl")
    with TestClient(create_app(slow, start_refresher=False)) as slow_client:
        started = time.monotonic()
        refused = log_in(slow_client, users, name)
        refused_seconds = time.monotonic() - started
        started = time.monotonic()
        wrong = slow_client.post(TOKEN_URL, data={"username": control, "password": "nope"})
        wrong_seconds = time.monotonic() - started
    assert refused.status_code == wrong.status_code == 401
    assert refused_seconds >= 2.0
    # pam_unix randomises its delay by up to 25 % around 2 s.
    assert abs(refused_seconds - wrong_seconds) < 0.8, (refused_seconds, wrong_seconds)


def test_login_page_says_the_account_is_refused(client: TestClient, users: Users) -> None:
    name = users.make("page", ["chage", "-E", "0"])
    response = client.post(
        "/login",
        data={"username": name, "password": users.passwords[name], "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "This account may no longer use the portal." in response.text


# --- Sessions and API tokens of an account disabled after logging in ---------------------


@pytest.mark.parametrize(
    ("kind", "disable"),
    [
        ("laternologin", ["usermod", "-s", NOLOGIN]),
        ("laterexpired", ["chage", "-E", "0"]),
        ("laterlocked", ["usermod", "-L"]),
    ],
)
def test_existing_session_and_api_token_stop_working(
    client: TestClient, users: Users, kind: str, disable: list[str]
) -> None:
    name = users.make(kind)
    login = log_in(client, users, name)
    assert login.status_code == 200, login.text
    session = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = client.post(
        "/api/v1/auth/api-tokens", json={"name": "script", "scopes": ["read"]}, headers=session
    )
    assert created.status_code == 201, created.text
    api_token = {"Authorization": f"Bearer {created.json()['token']}"}
    for headers in (session, api_token):
        assert client.get("/api/v1/auth/api-tokens", headers=session).status_code == 200
        assert client.get("/api/v1/sessions", headers=headers).status_code == 200

    users.run(disable, name)
    for headers in (session, api_token):
        response = client.get("/api/v1/sessions", headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["detail"] == auth.ACCOUNT_REFUSED
    # The browser's cookie too: pages send the person to the login page, saying why.
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303
    assert "reason=refused" in page.headers["location"]


def test_refusal_applies_after_the_cache_time(settings: Settings, users: Users) -> None:
    """With the principal cache on, a disabled account ends at the next lookup."""
    cached = settings.model_copy(update={"principal_cache_seconds": 1.0})
    name = users.make("cached")
    auth.principal_cache.clear()
    assert auth.usable_principal(cached, name).username == name
    users.run(["usermod", "-s", NOLOGIN], name)
    assert auth.usable_principal(cached, name).username == name  # still cached
    time.sleep(1.1)
    with pytest.raises(Exception, match="may no longer use the portal"):
        auth.usable_principal(cached, name)


# --- The same checks as the unprivileged service account ------------------------------


def test_account_checks_work_as_the_service_account(users: Users) -> None:
    """In production the portal is the service account ``hpcportal`` (group shadow, as
    `hpcportal runas install` makes it): PAM's account stack and the lock mark still
    work there."""
    ensure_service_account(SERVICE_ACCOUNT)
    names = {
        "ok": users.make("svcok"),
        "expired": users.make("svcexpired", ["chage", "-E", "0"]),
        "mustchange": users.make("svcmust", ["chage", "-d", "0"]),
        "locked": users.make("svclocked", ["usermod", "-L"]),
        "nologin": users.make("svcnologin", ["usermod", "-s", NOLOGIN]),
    }
    program = (
        "import json, sys\n"
        "from hpcportal.config import Settings\n"
        "from hpcportal.services.accounts import AccountPolicy\n"
        "from hpcportal.services.identity import lookup_principal\n"
        "policy = AccountPolicy.from_settings(Settings())\n"
        "names = json.loads(sys.argv[1])\n"
        "verdicts = {k: policy.refusal(lookup_principal(n, 'x')) for k, n in names.items()}\n"
        "print(json.dumps(verdicts))\n"
    )
    done = run_as_service([sys.executable, "-c", program, json.dumps(names)])
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)
    assert verdicts["ok"] is None
    assert "PAM account management" in verdicts["expired"]
    assert "PAM account management" in verdicts["mustchange"]
    assert verdicts["locked"] == "its password is locked"
    assert "disabled" in verdicts["nologin"]
    # And as root (the dev setup), the same verdicts.
    policy = AccountPolicy.from_settings(Settings())
    for kind, name in names.items():
        principal = lookup_principal(name, "x")
        assert principal is not None
        assert (policy.refusal(principal) is None) == (kind == "ok"), kind
