"""Odd input is a 422 with a message on a real portal, never a 500 (issue 19).

Each case here was a 500 or a silent acceptance before: integers beyond SQLite's
64 bits, NUL and control characters on their way to Slurm or a path, unknown query
parameters on routes that had no ``strict_query``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.portal_server import RunningPortal

HUGE = "2392181698423905897022488576"  # the review's page number: beyond 64 bits


@pytest.fixture(scope="module")
def as_alice(portal: RunningPortal, alice: dict[str, str]) -> Iterator[httpx.Client]:
    with portal.client(headers=alice) as client:
        yield client


@pytest.fixture(scope="module")
def as_carol(portal: RunningPortal, carol: dict[str, str]) -> Iterator[httpx.Client]:
    with portal.client(headers=carol) as client:
        yield client


def refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_input"
    for word in words:
        assert word in body["detail"], body["detail"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"/api/v1/notifications?page={HUGE}", ("page",)),
        ("/api/v1/notifications?page=0", ("page",)),
        (f"/api/v1/jobs?page={HUGE}", ("page",)),
        ("/api/v1/jobs?limit=1001", ("limit",)),
        (f"/api/v1/accounting/jobs?page={HUGE}", ("page",)),
        (f"/api/v1/notifications/{HUGE}/read", ("notification_id",)),
        (f"/api/v1/templates/{HUGE}", ("template_id",)),
        ("/api/v1/templates/2147483648", ("template_id",)),
        (f"/api/v1/jobs/{HUGE}", ("Slurm's ids stop at",)),
        ("/api/v1/jobs/4294967296", ("Slurm's ids stop at",)),
        ("/api/v1/jobs/1_4294967296/output", ("Slurm's ids stop at",)),
        (f"/api/v1/jobs/1/output?offset={HUGE}", ("offset",)),
        ("/api/v1/jobs/1/output?offset=-1", ("offset",)),
        (f"/api/v1/jobs/1/output?limit={HUGE}", ("limit",)),
        (f"/api/v1/files/home/?offset={HUGE}", ("offset",)),
        ("/api/v1/jobs/%D9%A1%D9%A2", ("not a job id",)),  # Arabic-Indic digits
    ],
)
def test_numbers_out_of_range_are_422(as_alice: httpx.Client, url: str, words: Any) -> None:
    method = "POST" if url.endswith("/read") else "GET"
    refused(as_alice.request(method, url), *words)


def test_audit_pages_are_bounded_for_admins(as_carol: httpx.Client) -> None:
    refused(as_carol.get(f"/api/v1/audit?page={HUGE}"), "page")
    assert as_carol.get("/api/v1/audit?page=1000000").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/accounting/jobs?partition=abc%00",
        "/api/v1/accounting/jobs?user=alice%00",
        "/api/v1/accounting/jobs?account=research%0A",
        "/api/v1/accounts?user=alice%00",
        "/api/v1/jobs?name=x%00",
        "/api/v1/apptainer/images?q=%1B",
        "/api/v1/files/home/a%00b",
        "/api/v1/files/home/a%0Ab",
        "/api/v1/files-usage?root=home&path=a%00",
        "/api/v1/sessions/x%00",
        "/api/v1/nodes/node001%00",
    ],
)
def test_control_characters_are_422(as_alice: httpx.Client, url: str) -> None:
    refused(as_alice.get(url), "control character")


@pytest.mark.parametrize(
    ("method", "url", "body", "words"),
    [
        ("POST", "/api/v1/jobs?dry_run=true", {"script": "#!/bin/bash\n\x00"}, ("NUL",)),
        (
            "POST",
            "/api/v1/jobs?dry_run=true",
            {"script": "#!/bin/bash\ntrue\n", "work_dir": "/tmp/a\x1bb"},
            ("control",),
        ),
        (
            "POST",
            "/api/v1/jobs?dry_run=true",
            {"script": "#!/bin/bash\ntrue\n", "input_files": ["a\nb"]},
            ("control",),
        ),
        ("POST", "/api/v1/files/home/x", {"op": "rename", "to": "a\nb"}, ("control",)),
        ("POST", "/api/v1/files/home/x", {"op": "rename", "to": "a\x00b"}, ("NUL",)),
        (
            "POST",
            "/api/v1/templates",
            {"name": "t", "category": "c", "script": "true", "description": "a\x07b"},
            ("control",),
        ),
        ("POST", "/api/v1/sessions", {"app_id": "desktop\x00"}, ("NUL",)),
        ("POST", "/api/v1/sessions", {"app_id": "desktop", "options": {"hours": 2**64}}, ()),
        ("POST", "/api/v1/auth/api-tokens", {"name": "cli\x00"}, ("NUL",)),
    ],
)
def test_bodies_with_nul_or_controls_are_422(
    as_alice: httpx.Client, method: str, url: str, body: Any, words: Any
) -> None:
    refused(as_alice.request(method, url, json=body), *words)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/apps?x=1",
        "/api/v1/sessions?activ=true",
        "/api/v1/jobs/1/efficiency?x=1",
        "/api/v1/cluster?verbose=1",
    ],
)
def test_unknown_query_parameters_are_422_everywhere(as_alice: httpx.Client, url: str) -> None:
    refused(as_alice.get(url), "Unknown query parameter")


def test_declared_values_still_work(as_alice: httpx.Client) -> None:
    assert as_alice.get("/api/v1/jobs?page=1000000&limit=1000").status_code == 200
    assert as_alice.get("/api/v1/notifications?page=1000000").json()["items"] == []
    assert as_alice.get("/api/v1/sessions?active=true").status_code == 200
    r = as_alice.post(
        "/api/v1/jobs?dry_run=true", json={"script": "#!/bin/bash\n\techo 'a\tb'\r\n"}
    )
    assert r.status_code == 200, r.text  # tabs and CRLF are text in a script


@pytest.mark.parametrize(
    "query",
    [
        "end=0001-01-01",  # the default start, 7 days earlier, was before the year 1
        "start=0001-01-01&end=0001-01-02",
        "start=1969-12-31&end=1970-01-02",
        "start=0001-01-01T00:00:00%2B14:00&end=0001-01-02",
    ],
)
def test_accounting_dates_before_1970_are_422(as_alice: httpx.Client, query: str) -> None:
    refused(as_alice.get(f"/api/v1/accounting/jobs?{query}"), "1970")


def test_accounting_dates_beyond_9999_in_utc_are_422(as_alice: httpx.Client) -> None:
    r = as_alice.get("/api/v1/accounting/jobs?start=9999-12-30&end=9999-12-31T23:00:00-05:00")
    refused(r, "end lies outside the years 1970 to 9999 in UTC")
    assert (
        as_alice.get("/api/v1/accounting/jobs?start=9999-12-30&end=9999-12-31").status_code == 200
    )


@pytest.mark.parametrize(
    "query",
    ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00", "since=1969-01-01"],
)
def test_audit_dates_out_of_range_are_422(as_carol: httpx.Client, query: str) -> None:
    refused(as_carol.get(f"/api/v1/audit?{query}"), "lies")


@pytest.mark.parametrize(
    ("value", "words"),
    [(10**400, "64 bits"), (2**63, "64 bits"), (1e308, "64 bits"), ("1" + "0" * 400, "whole")],
)
def test_template_numbers_beyond_64_bits_are_422(
    as_alice: httpx.Client, value: Any, words: str
) -> None:
    created = as_alice.post(
        "/api/v1/templates",
        json={
            "name": "huge numbers",
            "category": "tests",
            "script": "#!/bin/bash\necho {{ n }}\n",
            "parameters": [{"name": "n", "type": "integer", "min": -1e308, "max": 1e308}],
        },
    )
    assert created.status_code == 201, created.text
    template = created.json()["id"]
    try:
        r = as_alice.post(f"/api/v1/templates/{template}/render", json={"parameters": {"n": value}})
        refused(r, words)
    finally:
        as_alice.delete(f"/api/v1/templates/{template}")
