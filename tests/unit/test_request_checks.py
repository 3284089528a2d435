"""The app-wide request rules (api/params.py): every API route refuses unknown query
parameters and control characters before anything else runs, with a 422 and a message.

These run on the real app, unauthenticated: the check comes before the login, so
each answer here is the check's own and not a 401.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hpcportal.app import create_app
from hpcportal.config import Settings
from tests.unit.conftest import TEST_SECRET

#: API routes that take no part in the rules, and why.
EXEMPT: dict[str, str] = {}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    tmp = tmp_path_factory.mktemp("app")
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'portal.db'}",
        jwt_secret=SecretStr(TEST_SECRET),
        apptainer_image_dirs=[],
    )
    return create_app(settings, start_refresher=False)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    yield TestClient(app, raise_server_exceptions=True)


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every FastAPI route under /api/, websockets aside."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if isinstance(route, APIRoute) and path.startswith("/api/"):
            found.extend((method, path) for method in sorted(route.methods or ()))
    return found


def concrete(path: str) -> str:
    """A path with every parameter filled (numbers fit both ``int`` and ``str`` ones)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_the_walk_finds_the_api(app: FastAPI) -> None:
    routes = api_routes(app)
    paths = {path for _, path in routes}
    # A walk that found nothing would pass every check below.
    assert len(routes) > 60
    for expected in ("/api/v1/jobs", "/api/v1/notifications", "/api/v1/files/{root}/{path:path}"):
        assert expected in paths


def test_every_api_route_refuses_an_unknown_query_parameter(
    app: FastAPI, client: TestClient
) -> None:
    accepted = []
    for method, path in api_routes(app):
        if path in EXEMPT:
            continue
        r = client.request(method, concrete(path), params={"no_such_parameter": "1"})
        # HEAD answers carry no body: its status code is the check.
        refused = method == "HEAD" or "Unknown query parameter" in r.json()["detail"]
        if r.status_code != 422 or not refused:
            accepted.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
    assert not accepted, "\n".join(accepted)


def test_every_get_route_refuses_it_with_a_message_naming_it(
    app: FastAPI, client: TestClient
) -> None:
    gets = [path for method, path in api_routes(app) if method == "GET"]
    assert len(gets) > 30
    for path in gets:
        r = client.get(concrete(path), params={"stat": "running"})
        assert r.status_code == 422, path
        assert r.json()["code"] == "invalid_input"
        assert "'stat'" in r.json()["detail"]


def test_declared_parameters_pass_the_check(client: TestClient) -> None:
    # Past the check, the next answer is the login's.
    assert client.get("/api/v1/jobs", params={"state": "running", "page": 2}).status_code == 401
    assert client.get("/api/v1/files/home/x", params={"zip": 1}).status_code == 401
    assert client.get("/api/v1/jobs/1/output", params={"offset": 5}).status_code == 401


def test_routes_outside_the_api_keep_their_query(client: TestClient) -> None:
    # The web-app proxy hands the app its own query; it answers 401 here, not 422.
    r = client.get("/node/abc/lab", params={"token": "x", "anything": "1", "c": "\x00\n"})
    assert r.status_code == 401
    # Not the middleware's 422 (Starlette's {path:path} does not match a newline: 404).
    assert client.get("/node/abc/a%0Ab").status_code == 404
    assert client.get("/health", params={"x": "1"}).status_code == 200


@pytest.mark.parametrize(
    "url", ["/accounting?user=alice%00", "/jobs?state=%1B", "/files/home/a%0Ab", "/x%00"]
)
def test_pages_refuse_control_characters_too(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert "control character" in r.json()["detail"]


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("/api/v1/accounting/jobs?partition=abc%00", "'partition'"),
        ("/api/v1/accounting/jobs?user=alice%00", "'user'"),
        ("/api/v1/jobs?name=a%0Ab", "'name'"),
        ("/api/v1/audit?target=x%1B%5B31m", "'target'"),
        ("/api/v1/jobs?us%00er=alice", "query parameter name"),
        ("/api/v1/nodes/node001%00", "path"),
        ("/api/v1/files/home/a%0Ab.txt", "path"),
        ("/api/v1/files/home/a%7Fb.txt", "path"),
        ("/api/v1/sessions/abc%00", "path"),
    ],
)
def test_control_characters_in_query_and_path_are_refused(
    client: TestClient, url: str, where: str
) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert "control character" in r.json()["detail"]
    assert where in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/api/v1/jobs", {"script": "#!/bin/bash\necho hi\x00"}),
        ("POST", "/api/v1/jobs", {"script": "#!/bin/bash\n", "environment": {"A": "\x00"}}),
        ("POST", "/api/v1/templates", {"name": "x", "category": "y", "script": "s\x00"}),
        ("POST", "/api/v1/files/home/x", {"op": "rename", "to": "a\x00b"}),
        ("PUT", "/api/v1/dashboard/layouts", {"widgets": [], "x\x00": 1}),
    ],
)
def test_nul_anywhere_in_a_json_body_is_refused(
    client: TestClient, method: str, url: str, body: object
) -> None:
    r = client.request(method, url, json=body)
    assert r.status_code == 422, r.text
    assert "NUL" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"script": "#!/bin/bash\\n\\ud800"}',
        b'{"script": "#!/bin/bash\\n", "environment": {"A": "\\udfff"}}',
        b'{"script": "#!/bin/bash\\n", "environment": {"\\ud800": "a"}}',
    ],
)
def test_half_a_surrogate_pair_in_json_is_refused(client: TestClient, body: bytes) -> None:
    """JSON's "\\ud800" decodes to a str that UTF-8 cannot encode (a 500 further on)."""
    r = client.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "surrogate" in r.json()["detail"]


def test_a_whole_surrogate_pair_is_text(client: TestClient) -> None:
    body = b'{"script": "#!/bin/bash\\necho \\ud83d\\ude00"}'
    r = client.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401  # past the check: the login is next


def test_nul_in_a_login_form_is_refused(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", data={"username": "alice\x00", "password": "x"})
    assert r.status_code == 422
    assert "NUL" in r.json()["detail"]


def test_the_check_runs_on_routes_added_later(tmp_path: Path) -> None:
    """It is an app-level dependency: a router someone adds tomorrow is covered."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}", jwt_secret=SecretStr(TEST_SECRET)
    )
    app = create_app(settings, start_refresher=False)

    @app.get("/api/v1/brand-new")
    def brand_new(known: int = 0) -> dict[str, int]:
        return {"known": known}

    with TestClient(app) as c:
        assert c.get("/api/v1/brand-new", params={"known": 3}).json() == {"known": 3}
        assert c.get("/api/v1/brand-new", params={"unknown": 3}).status_code == 422
