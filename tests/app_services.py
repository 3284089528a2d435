"""Apps for tests that mount a few routers of their own on the real parts."""

from __future__ import annotations

from dataclasses import replace

from fastapi import FastAPI

from hpcportal.app import create_app
from hpcportal.composition import install, services_of
from hpcportal.config import Settings
from hpcportal.db.session import Database


def bare_app(settings: Settings, *, database: Database | None = None) -> FastAPI:
    """A FastAPI with no routes holding the ``AppServices`` that ``create_app`` builds
    for ``settings`` (nothing started: its lifespan never runs), with the test's own
    ``database`` handle if it gives one. The parts come from the real composition
    root, so a test cannot drift from what the app wires."""
    services = services_of(create_app(settings, start_refresher=False))
    if database is not None:
        services = replace(services, database=database)
    app = FastAPI()
    install(app, services)
    return app
