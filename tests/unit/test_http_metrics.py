"""HTTP metrics by route template, the build info, and who may read ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from hpcportal import __version__
from hpcportal.api.http_metrics import allowed
from hpcportal.app import create_app
from hpcportal.config import Settings
from tests.unit.conftest import TEST_SECRET

LOOPBACK = ("127.0.0.1", 50000)
ELSEWHERE = ("192.0.2.7", 50000)  # TEST-NET-1: never a real peer


def requests(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("hpcportal_http_requests_total", labels) or 0.0


def timed(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return REGISTRY.get_sample_value("hpcportal_http_request_duration_seconds_count", labels) or 0.0


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr(TEST_SECRET),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.token"
    path.write_text("scrape-me-0123456789\n")
    return path


@pytest.fixture
def app_settings(tmp_path: Path, token_file: Path) -> Settings:
    return settings_for(tmp_path, metrics_token_file=token_file)


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings, start_refresher=False)
    with TestClient(app, client=LOOPBACK) as test_client:
        yield test_client


def test_requests_count_by_route_template_not_raw_path(client: TestClient) -> None:
    route = "/api/v1/jobs/{job_id}"
    before = requests("GET", route, "401"), timed("GET", route)
    for job_id in ("123", "456", "789"):
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 401
    assert requests("GET", route, "401") == before[0] + 3
    assert timed("GET", route) == before[1] + 3
    for job_id in ("123", "456", "789"):
        labels = {"method": "GET", "route": f"/api/v1/jobs/{job_id}", "status": "401"}
        assert REGISTRY.get_sample_value("hpcportal_http_requests_total", labels) is None


def test_path_parameters_with_slashes_and_mounts_keep_their_template(client: TestClient) -> None:
    files = "/api/v1/files/{root}/{path:path}"
    before = requests("GET", files, "401"), requests("GET", "/static", "200")
    assert client.get("/api/v1/files/home/a/b/secret-name.txt").status_code == 401
    assert client.get("/api/v1/files/scratch/c.txt").status_code == 401
    assert client.get("/static/css/files.css").status_code == 200
    assert requests("GET", files, "401") == before[0] + 2
    assert requests("GET", "/static", "200") == before[1] + 1
    assert "secret-name" not in client.get("/metrics").text


def test_unknown_paths_and_methods_share_one_label(client: TestClient) -> None:
    before = requests("GET", "unmatched", "404"), requests("other", "/health", "405")
    assert client.get("/no/such/page-1").status_code == 404
    assert client.get("/no/such/page-2").status_code == 404
    assert client.request("BREW", "/health").status_code == 405
    assert requests("GET", "unmatched", "404") == before[0] + 2
    assert requests("other", "/health", "405") == before[1] + 1


def test_metrics_show_the_build_and_the_requests(client: TestClient) -> None:
    client.get("/health")
    body = client.get("/metrics").text
    assert f'hpcportal_build_info{{version="{__version__}"}} 1.0' in body
    assert 'hpcportal_http_requests_total{method="GET",route="/health",status="200"}' in body


def test_metrics_refuse_other_addresses_without_the_token(
    app_settings: Settings, token_file: Path
) -> None:
    app = create_app(app_settings, start_refresher=False)
    with TestClient(app, client=ELSEWHERE) as outside:
        refused = outside.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        assert "metrics_allowed_networks" in refused.json()["detail"]
        wrong = outside.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403
        token = token_file.read_text().strip()
        right = outside.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "hpcportal_build_info" in right.text
        # Everything else answers from anywhere as before.
        assert outside.get("/health").status_code == 200


def test_the_access_rule() -> None:
    s = Settings(metrics_allowed_networks=["10.1.0.0/16", "::1/128"])
    assert allowed(s, "10.1.2.3", None)
    assert allowed(s, "::ffff:10.1.2.3", None)  # an IPv4 peer seen on a dual-stack socket
    assert allowed(s, "::1", None)
    assert not allowed(s, "10.2.0.1", None)
    assert not allowed(s, "127.0.0.1", None)  # not listed here
    assert not allowed(s, "testclient", None)
    assert not allowed(s, None, "Bearer anything")  # no token file: no token works


def test_a_token_file_that_cannot_be_read_lets_no_token_in(tmp_path: Path) -> None:
    s = Settings(metrics_allowed_networks=[], metrics_token_file=tmp_path / "missing")
    assert not allowed(s, "127.0.0.1", "Bearer ")
    assert not allowed(s, "127.0.0.1", "Bearer x")


def test_an_empty_token_file_lets_no_token_in(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    s = Settings(metrics_allowed_networks=[], metrics_token_file=empty)
    assert not allowed(s, "192.0.2.1", "Bearer ")
    assert not allowed(s, "192.0.2.1", "Bearer")


@pytest.mark.parametrize("bad", ["not-a-network", "10.0.0.0/33", "300.1.1.1"])
def test_a_bad_network_is_a_clear_settings_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="metrics_allowed_networks"):
        Settings(metrics_allowed_networks=[bad])
