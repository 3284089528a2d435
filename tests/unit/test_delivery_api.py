"""The API and page of a person's channels and subscriptions (issue 15.2) through the
real app on SQLite: owners kept apart (404), verification with the code from the
outbox, wrong codes counted across requests, URLs outside the allow list refused with
a 422 that says why, and the settings page in English and Korean."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from hpcportal.app import create_app
from hpcportal.config import Settings
from hpcportal.db.delivery_tables import OutboxMessage
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database
from hpcportal.services import auth
from hpcportal.services.delivery.user_channels import VERIFY_ATTEMPTS
from hpcportal.services.identity import Principal
from tests.webcheck import untranslated

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1002, ("research",), "user")
PEOPLE = {p.username: p for p in (ALICE, BOB)}
SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
CSRF = "csrf-value-for-tests"
BASE = "/api/v1/notifications"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = Settings(
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        jwt_secret=SecretStr(SECRET),
        principal_cache_seconds=0,
    )
    upgrade(values)
    monkeypatch.setattr(auth, "lookup_principal", lambda name, _group: PEOPLE.get(name))
    monkeypatch.setattr(auth, "account_refusal", lambda _who, _settings: None)
    return values


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, start_refresher=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield client


def _as(client: TestClient, settings: Settings, who: Principal, lang: str = "en") -> TestClient:
    client.cookies.set(settings.cookie_name, auth.issue_token(settings, who).token)
    client.cookies.set(auth.CSRF_COOKIE, CSRF)
    client.cookies.set("hpcportal_lang", lang)
    client.headers["X-CSRF-Token"] = CSRF
    return client


def _code(settings: Settings, channel_id: int) -> str:
    database = Database(settings)
    try:
        with database.session() as session:
            body = session.scalars(
                select(OutboxMessage.body_text)
                .where(OutboxMessage.channel_id == channel_id)
                .order_by(OutboxMessage.id.desc())
            ).first()
    finally:
        database.dispose()
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None
    return found.group(1)


def test_channels_subscriptions_and_history_are_the_owners_alone(
    app_client: TestClient, settings: Settings
) -> None:
    client = _as(app_client, settings, ALICE)
    created = client.post(
        f"{BASE}/channels",
        json={"kind": "email", "name": "Work mail", "target": "alice@example.org"},
    )
    assert created.status_code == 201, created.text
    channel_id = created.json()["channel"]["id"]
    assert created.json()["channel"]["verified"] is False
    # Not usable before it is confirmed.
    assert client.post(f"{BASE}/channels/{channel_id}/test").status_code == 409
    code = _code(settings, channel_id)
    wrong = client.post(f"{BASE}/channels/{channel_id}/verify", json={"code": "999999"})
    if code != "999999":
        assert wrong.status_code == 422 and "attempts left" in wrong.json()["detail"]
    verified = client.post(f"{BASE}/channels/{channel_id}/verify", json={"code": code})
    assert verified.status_code == 200 and verified.json()["verified"] is True
    sub = client.post(
        f"{BASE}/subscriptions",
        json={"event": "job_failed", "channel_id": channel_id, "time_zone": "Asia/Seoul",
              "quiet_start": "22:00", "quiet_end": "07:00"},
    )  # fmt: skip
    assert sub.status_code == 201, sub.text
    sub_id = sub.json()["id"]
    assert client.post(f"{BASE}/channels/{channel_id}/test").status_code == 202
    assert "admin_alert" not in client.get(f"{BASE}/subscriptions/events").json()
    history = client.get(f"{BASE}/deliveries").json()
    assert [i["event"] for i in history["items"]] == ["channel_test", "channel_verification"]

    bob = _as(app_client, settings, BOB)
    assert bob.get(f"{BASE}/channels").json() == []
    assert bob.get(f"{BASE}/subscriptions").json() == []
    assert bob.get(f"{BASE}/deliveries").json()["items"] == []
    for method, path, body in [
        ("PATCH", f"/channels/{channel_id}", {"name": "mine"}),
        ("DELETE", f"/channels/{channel_id}", None),
        ("POST", f"/channels/{channel_id}/verify", {"code": code}),
        ("POST", f"/channels/{channel_id}/test", None),
        ("POST", f"/channels/{channel_id}/code", None),
        ("PATCH", f"/subscriptions/{sub_id}", {"mode": "daily"}),
        ("DELETE", f"/subscriptions/{sub_id}", None),
    ]:
        answer = bob.request(method, BASE + path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    taken = bob.post(
        f"{BASE}/subscriptions", json={"event": "job_failed", "channel_id": channel_id}
    )
    assert taken.status_code == 404


def test_wrong_codes_count_across_requests(app_client: TestClient, settings: Settings) -> None:
    client = _as(app_client, settings, ALICE)
    created = client.post(
        f"{BASE}/channels", json={"kind": "email", "name": "m", "target": "a@example.org"}
    )
    channel_id = created.json()["channel"]["id"]
    code = _code(settings, channel_id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(VERIFY_ATTEMPTS):
        assert (
            client.post(f"{BASE}/channels/{channel_id}/verify", json={"code": wrong}).status_code
            == 422
        )
    late = client.post(f"{BASE}/channels/{channel_id}/verify", json={"code": code})
    assert late.status_code == 422 and "too many" in late.json()["detail"]


def test_webhooks_into_the_site_network_are_refused(
    app_client: TestClient, settings: Settings
) -> None:
    client = _as(app_client, settings, ALICE)
    for url in ("http://127.0.0.1:8080/hook", "https://192.168.1.5/hook"):
        answer = client.post(
            f"{BASE}/channels", json={"kind": "webhook", "name": "h", "target": url}
        )
        assert answer.status_code == 422
        assert "This URL is not allowed" in answer.json()["detail"]
    assert client.get(f"{BASE}/channels").json() == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_settings_page_shows_channels_subscriptions_and_history(
    app_client: TestClient, settings: Settings, lang: str
) -> None:
    client = _as(app_client, settings, ALICE, lang)
    created = client.post(
        f"{BASE}/channels", json={"kind": "email", "name": "Lab mail", "target": "a@example.org"}
    )
    channel_id = created.json()["channel"]["id"]
    client.post(f"{BASE}/subscriptions", json={"event": "disk_alert", "channel_id": channel_id})
    page = client.get("/settings/notifications")
    assert page.status_code == 200
    assert "Lab mail" in page.text and 'data-verify-channel="' in page.text
    assert 'data-testid="subscriptions-table"' in page.text
    assert 'data-testid="deliveries-table"' in page.text
    if lang == "ko":
        assert "내 채널" in page.text and "디스크 경고" in page.text
        assert untranslated(page.text) == []
