"""The app's parts: built once by ``create_app``, read through ``services_of``."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request

from hpcportal.app import create_app
from hpcportal.composition import AppServices, install, services_of
from hpcportal.config import Settings
from tests.app_services import bare_app
from tests.unit.conftest import TEST_SECRET


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}", jwt_secret=SecretStr(TEST_SECRET)
    )


def test_the_factory_wires_each_part_once(settings: Settings) -> None:
    services = services_of(create_app(settings, start_refresher=False))
    assert services.settings is settings
    # The parts share one of each: the adapter over the executor, one database, one hub.
    assert services.adapter.executor is services.executor
    assert services.runas is services.executor.runas
    assert services.snapshot.adapter is services.adapter
    assert services.submit.database is services.database
    assert services.sessions.submit is services.submit
    assert services.terminals.settings is settings
    # Every field is set (a part added to the dataclass but not built fails here),
    # but the replicator, which exists only with several replicas (Redis configured).
    optional = {"replicator"}
    assert all(
        getattr(services, f.name) is not None for f in fields(AppServices) if f.name not in optional
    )
    assert services.replicator is None and services.leadership.is_leader()
    names = [part.name for part in services.tasks.parts]
    assert names[:4] == ["database", "leader lease", "live hub", "snapshot refresher"]


def test_services_are_frozen(settings: Settings) -> None:
    services = services_of(create_app(settings, start_refresher=False))
    with pytest.raises(FrozenInstanceError):
        services.adapter = services.adapter  # type: ignore[misc]


def test_a_request_reaches_the_apps_services(settings: Settings) -> None:
    """A route reads the same value the app holds, through the request."""
    app = bare_app(settings)
    seen: list[AppServices] = []

    @app.get("/whose")
    async def whose(request: Request) -> dict[str, str]:
        seen.append(services_of(request))
        return {"cookie": services_of(request).settings.cookie_name}

    with TestClient(app) as client:
        assert client.get("/whose").json() == {"cookie": settings.cookie_name}
    assert seen == [services_of(app)]


def test_an_app_without_services_is_refused() -> None:
    app = FastAPI()
    app.state.services = object()
    with pytest.raises(TypeError, match="not AppServices"):
        services_of(app)


def test_install_replaces_the_value(settings: Settings) -> None:
    app = bare_app(settings)
    other = bare_app(settings)
    install(app, services_of(other))
    assert services_of(app) is services_of(other)
