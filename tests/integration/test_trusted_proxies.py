"""Client addresses behind a reverse proxy: X-Forwarded-For counts only from a
configured trusted proxy (``trusted_proxies``), so the login rate limit and the
stored failures see each real client, and a header sent by anyone else changes
nothing. Real app, real PAM users of the dev cluster; the peer address of each
TestClient stands for the TCP peer uvicorn would report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from hpcportal.app import create_app
from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.models import LoginFailure

pytestmark = pytest.mark.integration

TOKEN_URL = "/api/v1/auth/token"
PROXY = "10.9.0.1"  # HAProxy, say
PROXY_NET = "10.9.0.0/24"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr("trusted-proxy-test-secret-long-enough-for-hs256"),
        login_max_failures=2,  # per address: 4 x 2 = 8 failures
        login_failure_delay_seconds=0,
        principal_cache_seconds=0,
        trusted_proxies=[PROXY_NET],
    )
    upgrade(config)
    return config


@pytest.fixture
def peer(settings: Settings) -> Iterator[dict[str, TestClient]]:
    """One app; a client per TCP peer address (the proxy, and a stranger)."""
    app = create_app(settings, start_refresher=False)
    clients = {
        "proxy": TestClient(app, client=(PROXY, 40000)),
        "stranger": TestClient(app, client=("203.0.113.5", 40000)),
    }
    for client in clients.values():
        client.__enter__()
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)
    services_of(app).database.dispose()


def fail_login(client: TestClient, name: str, forwarded_for: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response: httpx.Response = client.post(
        TOKEN_URL, data={"username": name, "password": "x"}, headers=headers
    )
    return response


def stored_addresses(settings: Settings) -> set[str]:
    from hpcportal.db.session import Database

    database = Database(settings)
    try:
        with database.session() as session:
            return set(session.scalars(select(LoginFailure.address)))
    finally:
        database.dispose()


def test_behind_a_trusted_proxy_each_real_client_has_its_own_limit(
    peer: dict[str, TestClient], settings: Settings
) -> None:
    proxy = peer["proxy"]
    for i in range(8):  # the per-address limit, all from one client behind the proxy
        assert fail_login(proxy, f"nobody{i}", "192.0.2.7").status_code == 401
    assert fail_login(proxy, "nobody9", "192.0.2.7").status_code == 429
    # Another person behind the same proxy is not blocked by the first one's failures
    # (without trusted_proxies both would be the proxy's address, and refused).
    assert fail_login(proxy, "nobody10", "192.0.2.8").status_code == 401
    # A chain: the client's own claim is left of what the proxy appended.
    assert fail_login(proxy, "nobody11", "198.51.100.1, 192.0.2.9").status_code == 401
    assert stored_addresses(settings) == {"192.0.2.7", "192.0.2.8", "192.0.2.9"}


def test_a_forwarded_header_from_an_untrusted_peer_changes_nothing(
    peer: dict[str, TestClient], settings: Settings
) -> None:
    stranger = peer["stranger"]
    for i in range(8):  # a new made-up address each time: still one peer
        assert fail_login(stranger, f"nobody{i}", f"192.0.2.{i + 10}").status_code == 401
    refused = fail_login(stranger, "nobody9", "192.0.2.99")
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert stored_addresses(settings) == {"203.0.113.5"}


def test_without_trusted_proxies_the_header_is_ignored_even_from_loopback(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr("trusted-proxy-test-secret-long-enough-for-hs256"),
        login_failure_delay_seconds=0,
    )
    upgrade(settings)
    app = create_app(settings, start_refresher=False)
    try:
        with TestClient(app, client=("127.0.0.1", 40000)) as client:
            assert fail_login(client, "nobody", "192.0.2.7").status_code == 401
    finally:
        services_of(app).database.dispose()
    assert stored_addresses(settings) == {"127.0.0.1"}
