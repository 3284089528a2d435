"""The OpenAPI document tells the truth: one error schema, each route's errors, stable ids.

Generated clients are built from this document, so what it says is checked here
against the app itself (the live run against Slurm is
``tests/integration/test_api_fuzz.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from fastapi.utils import generate_unique_id
from pydantic import SecretStr

from hpcportal.api import openapi
from hpcportal.app import create_app
from hpcportal.config import Settings
from tests.unit.conftest import TEST_SECRET


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    db = Path(tmp_path_factory.mktemp("openapi")) / "portal.db"
    settings = Settings(database_url=f"sqlite:///{db}", jwt_secret=SecretStr(TEST_SECRET))
    return create_app(settings, start_refresher=False)


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in spec["paths"].items() for m, op in item.items()]


def test_operation_ids_are_readable_and_unique(app: FastAPI, spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) > 60
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    # Not FastAPI's default (``list_jobs_api_v1_jobs_get``): no path, no method suffix.
    defaults = {
        generate_unique_id(route)  # type: ignore[arg-type]
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
    }
    assert "list_jobs_api_v1_jobs_get" in defaults  # the check can fail
    assert [i for i in ids if i in defaults or "api_v1" in i or "__" in i] == []
    assert {"jobs_list", "jobs_submit", "jobs_get", "files_read_path", "uploads_create"} <= set(ids)


def test_fastapis_validation_error_is_gone(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorResponse"]["required"]) == {"detail", "code"}


def test_every_error_answer_is_the_error_schema(spec: dict[str, Any]) -> None:
    """Each 4xx/5xx is ErrorResponse, but /ready's 503 (its own report, by design)."""
    wrong = []
    for method, path, op in operations(spec):
        for status, answer in op["responses"].items():
            if status[0] not in "45" or (path, status) == ("/ready", "503"):
                continue
            ref = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if ref.get("$ref") != openapi.ERROR_REF:
                wrong.append(f"{method} {path} {status}")
    assert wrong == []


def test_errors_follow_from_what_a_route_depends_on(spec: dict[str, Any]) -> None:
    ops = {op["operationId"]: set(op["responses"]) for _, _, op in operations(spec)}
    for statuses in ops.values():
        assert {"422", "500"} <= statuses  # check_request; the logged 500
    assert {"401", "403"} <= ops["jobs_list"] and "404" not in ops["jobs_list"]
    assert {"401", "403", "404"} <= ops["templates_get"]  # path parameter
    assert {"403"} <= ops["audit_log"]  # admins only
    assert {"409", "429", "502", "503"} <= ops["jobs_submit"]  # the submit context
    assert {"502", "503"} <= ops["cluster_accounts"]  # the Slurm adapter
    assert {"412", "416", "507"} <= ops["files_read_path"] | ops["files_write"]
    assert "401" not in ops["health"]
    assert {"401", "429"} <= ops["auth_log_in"]  # the endpoint's own (BY_OPERATION)
    assert "400" in ops["templates_create"] and "400" not in ops["templates_list"]  # a body
    assert set(openapi.BY_OPERATION) <= set(ops), "BY_OPERATION names an operation that is gone"


def test_fast_json_answers_document_their_model(spec: dict[str, Any]) -> None:
    """``ModelResponse`` (the snapshot reads) is documented as its model, not a string."""
    for path in ("/api/v1/cluster", "/api/v1/nodes", "/api/v1/jobs"):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert "$ref" in schema["schema"], (path, schema)


def test_byte_answers_declare_their_media_types(spec: dict[str, Any]) -> None:
    ids = {op["operationId"]: op for _, _, op in operations(spec)}
    assert set(openapi.MEDIA) <= set(ids), "MEDIA names an operation that is gone"
    assert set(openapi.REQUEST_BODIES) <= set(ids), "REQUEST_BODIES names one that is gone"
    chunk = ids["uploads_append_chunk"]["requestBody"]["content"]
    assert list(chunk) == ["application/offset+octet-stream"]
    assert "multipart/form-data" in ids["uploads_upload"]["requestBody"]["content"]
    read = ids["files_read_path"]["responses"]
    assert {"application/json", "application/zip", "application/octet-stream"} <= set(
        read["200"]["content"]
    )
    assert "application/json" not in read["206"]["content"]
    stream = ids["jobs_follow_output"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    # A dry run's 200 has the same body as the submission's 201.
    submit = ids["jobs_submit"]["responses"]
    assert submit["200"]["content"] == submit["201"]["content"]


def test_the_document_says_what_it_covers(spec: dict[str, Any]) -> None:
    info = spec["info"]
    assert "read API" not in info["description"] and "ErrorResponse" in info["description"]
    declared = {tag["name"] for tag in spec["tags"]}
    assert all(tag.get("description") for tag in spec["tags"])
    used = {tag for _, _, op in operations(spec) for tag in op.get("tags", [])}
    assert used <= declared, used - declared


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("GET", "/api/v1/jobs?stat=running", None, 422),  # check_request
        ("GET", "/api/v1/jobs", None, 401),  # no login
        ("POST", "/api/v1/auth/token", {"username": ""}, 422),  # FastAPI's validation
        ("GET", "/api/v1/files/home/a%01b", None, 422),  # the path middleware
    ],
)
def test_real_errors_have_the_documented_shape(
    app: FastAPI, method: str, url: str, body: dict[str, str] | None, status: int
) -> None:
    """What the portal sends is what ErrorResponse says: exactly detail and code."""
    # No lifespan: each of these is answered before any background part is needed.
    answer = TestClient(app).request(method, url, data=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert set(payload) == {"detail", "code"}
    openapi.ErrorResponse.model_validate(payload, strict=True)
