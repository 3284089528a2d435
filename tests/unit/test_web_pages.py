"""The browser UI rendered by Starlette's TestClient on recorded Slurm data.

The app is the real one; only Slurm is replaced by recordings from the dev cluster
(``tests/fixtures/slurm``), users by fixed principals, and output reads by a stub.
``tests/integration/test_web_pages.py`` renders the same pages on the live cluster.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hpcportal.app import create_app
from hpcportal.composition import install, services_of
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import NotFound
from hpcportal.services import auth
from hpcportal.services import sessions as session_service
from hpcportal.services.files import Entry, FileInfo, Listing, RootInfo
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import OutputChunk
from hpcportal.slurm import parse
from hpcportal.slurm import recorded as slurm_recorded
from hpcportal.slurm.models import Job, PrivateData, RecordedSubmission, SlurmRoles
from hpcportal.web import common, file_pages, i18n, job_pages, session_pages
from hpcportal.web.accounting_pages import accounting_series
from hpcportal.web.cluster_pages import expand_hostlist
from hpcportal.web.common import STATIC_DIR, safe_next
from hpcportal.web.file_pages import file_href, human_size
from tests.unit.slurm_fixtures import recorded
from tests.webcheck import gzipped_size, page_assets, untranslated

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1001, ("research",), "user")
CAROL = Principal("carol", 1004, 1003, ("hpc-admins",), "admin")
PEOPLE = {p.username: p for p in (ALICE, BOB, CAROL)}
TEST_SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
XSS = '"><img src=x onerror=alert(1)>'
CSRF = "csrf-value-for-tests"
PAGES = [
    "/",
    "/nodes",
    "/nodes/node001",
    "/partitions",
    "/jobs",
    "/jobs?state=running&sort=name&q=tr",
    "/jobs/6",
    "/jobs/6?script=true",
    "/jobs/7",
    "/submit",
    "/submit?from=6",
    "/templates",
    "/templates/new",
    "/templates/1",
    "/accounting",
    "/files",
    "/files/home/data",
    "/files/home/notes.txt?sort=-size",
    "/partials/widgets/my_jobs",
    "/partials/widgets/storage",
    "/partials/nodes/gpu001",
    "/apps",
    "/sessions",
    "/sessions/a1a1a1a1a1a1a1a1",
    "/sessions/b2b2b2b2b2b2b2b2",
    "/sessions/c3c3c3c3c3c3c3c3",
    "/shares/d64b93c9f1b60eb3",  # the share of SHARE_TOKEN (without its cookie: "gone")
    "/shares/" + "x" * 43,
    "/shares/open",
    "/settings/notifications",
]
BUDGET_BYTES = 200 * 1024


def _jobs() -> list[Job]:
    jobs = parse.parse_squeue(recorded("squeue.json"))
    return [j.model_copy(update={"name": XSS}) if j.id == "6" else j for j in jobs]


def _recorded_stdout(name: str) -> bytes:
    """What 22.05's sacct printed (``fixtures/slurm/22.05/recorded``)."""
    text = recorded(f"22.05/recorded/{name}.txt").decode()
    return text.partition("--- stdout\n")[2].rpartition("--- stderr\n")[0].encode()


class RecordedAdapter:
    """The adapter's questions answered from recordings."""

    def __init__(self) -> None:
        self.job_list = _jobs()

    def jobs(self) -> list[Job]:
        return self.job_list

    def nodes(self) -> list[Any]:
        return parse.parse_sinfo(recorded("sinfo.json"))

    def partitions(self) -> list[Any]:
        return parse.parse_partitions(recorded("scontrol_partitions.txt"))

    def job(self, job_id: str) -> Job | None:
        return None

    def job_script(self, job_id: int, *, as_user: str) -> str:
        return f"#!/bin/bash\n#SBATCH --job-name=x\necho {job_id} '{XSS}'\n"

    def accounting(self, *args: Any, **kwargs: Any) -> list[Any]:
        return parse.parse_sacct(recorded("sacct.json"))

    def recorded_script(self, job_id: str, *, as_user: str) -> str | None:
        return slurm_recorded.parse_batch_script(_recorded_stdout("batch_script"))

    def recorded_environment(self, job_id: str, *, as_user: str) -> dict[str, str] | None:
        return slurm_recorded.parse_environment(_recorded_stdout("env_vars"))

    def recorded_submission(self, job_id: str, *, as_user: str) -> RecordedSubmission | None:
        return RecordedSubmission(job_id=int(job_id.split("_")[0]), work_dir="/home/alice")

    def associations(self) -> list[Any]:
        return parse.parse_associations(recorded("sacctmgr_assoc.txt"))

    def controller_private_data(self) -> PrivateData:
        return PrivateData()

    def database_private_data(self) -> PrivateData:
        return PrivateData()

    def roles(self) -> SlurmRoles:
        """carol is a Slurm Administrator (she may extend a running session)."""
        return SlurmRoles(admin_levels={"carol": "Administrator"})


def _fake_chunk(
    runas: Any, who: Principal, detail: Any, stream: str, offset: int, size: int
) -> Any:
    data = b"step 1\nstep 2 <b>not bold</b>\n"
    return OutputChunk(
        job_id=detail.job.id,
        stream="stdout",
        path="/home/alice/slurm-6.out",
        offset=offset,
        next_offset=min(len(data), offset + size),
        size=len(data),
        data=data[offset : offset + size].decode(),
        eof=offset + size >= len(data),
        finished=False,
    )


def _entry(name: str, kind: str = "file", folder: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "path": f"{folder}/{name}" if folder else name,
        "type": kind,
        "size": 4096 if kind == "directory" else 1536,
        "mtime": 1_760_000_000.0,
        "mode": 0o40755 if kind == "directory" else 0o100644,
        "permissions": "drwxr-xr-x" if kind == "directory" else "-rw-r--r--",
        "owner": "alice",
        "group": "research",
    }


class FakeFiles:
    """The file service's answers for alice's home: a folder, a text file, a hostile name."""

    def __init__(self, settings: Settings, runas: Any, who: Principal) -> None:
        self.who = who

    def roots(self) -> list[RootInfo]:
        home = f"/home/{self.who.username}"
        return [
            RootInfo(name="home", path=home, accessible=True, writable=True),
            RootInfo(name="scratch", path=f"/scratch/{self.who.username}", accessible=True),
        ]

    def info(self, root: str, path: str, **page: Any) -> FileInfo | Listing:
        if root not in ("home", "scratch") or path not in ("", "data", "notes.txt"):
            raise NotFound(f"No such file or folder: {path}")
        if path == "notes.txt":
            return FileInfo(root=root, etag="n1", **_entry("notes.txt"))
        entries = [_entry("data", "directory", path), _entry(XSS + ".txt", folder=path)]
        if not path:
            entries.append(_entry("notes.txt"))
        folder = {**_entry(path.rsplit("/", 1)[-1] or root, "directory"), "path": path}
        return Listing(
            root=root,
            etag="d1",
            total=len(entries),
            offset=page.get("offset", 0),
            limit=page.get("limit", 200),
            sort=page.get("sort", "name"),
            entries=[Entry(**e) for e in entries],
            **folder,
        )


SHARE_TOKEN = "s" * 43
SECRETS = ("FULL-secret-never-shown", "VIEW-secret-never-shown")


def _fake_log(ctx: Any, who: Principal, session_id: str) -> str:
    return f"Xvnc: cannot open display\n{XSS}\n"


def _seed_sessions(settings: Settings) -> None:
    """alice: a ready desktop (shared), a pending JupyterLab, a failed desktop; bob: one."""
    now = datetime.now(UTC)
    rows = {
        "a1a1a1a1a1a1a1a1": dict(
            username="alice", app_id="desktop", app_name="Desktop", connection="vnc",
            state="running", node="viz-node001", host="viz-node001", port=5901,
            secret=SECRETS[0], view_secret=SECRETS[1], job_id=101,
            started_at=now - timedelta(minutes=5), ends_at=now + timedelta(minutes=55),
            share_token_hash=hashlib.sha256(SHARE_TOKEN.encode()).hexdigest(),
        ),
        "b2b2b2b2b2b2b2b2": dict(
            username="alice", app_id="jupyter", app_name="JupyterLab", connection="web",
            state="pending", job_id=102,
        ),
        "c3c3c3c3c3c3c3c3": dict(
            username="alice", app_id="desktop", app_name="Desktop", connection="vnc",
            state="failed", job_id=103, ended_at=now,
            error=f"The session's job failed. Its log ends with:\n{XSS}",
        ),
        "d4d4d4d4d4d4d4d4": dict(
            username="bob", app_id="desktop", app_name="Desktop", connection="vnc",
            state="running", node="viz-node001", host="viz-node001", port=5902,
            secret="bob-secret", view_secret="bob-view", job_id=104,
        ),
    }  # fmt: skip
    database = Database(settings)
    with database.session() as db:
        for number, (sid, values) in enumerate(rows.items()):
            created = now - timedelta(minutes=10 + number)
            db.add(
                InteractiveSession(
                    id=sid,
                    options={"partition": "viz", "hours": 1},
                    session_dir=f"/home/{values['username']}/hpcportal/sessions/{sid}",
                    created_at=created,
                    updated_at=created,
                    **values,
                )
            )
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = Settings(
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        jwt_secret=SecretStr(TEST_SECRET),
        principal_cache_seconds=0,
    )
    upgrade(values)
    monkeypatch.setattr(auth, "lookup_principal", lambda name, _group: PEOPLE.get(name))
    # Fake people have no Unix account for PAM to check.
    monkeypatch.setattr(auth, "account_refusal", lambda _who, _settings: None)
    monkeypatch.setattr(job_pages, "read_chunk", _fake_chunk)
    monkeypatch.setattr(file_pages, "FileService", FakeFiles)
    monkeypatch.setattr(session_service, "output_tail", _fake_log)
    _seed_sessions(values)
    return values


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, start_refresher=False)
    adapter = RecordedAdapter()
    services = replace(services_of(app), adapter=adapter)
    services.snapshot.adapter = adapter
    install(app, services)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        assert test_client.portal is not None
        test_client.portal.call(services.snapshot.refresh)
        yield test_client


def log_in(client: TestClient, settings: Settings, who: Principal, lang: str = "en") -> None:
    client.cookies.set(settings.cookie_name, auth.issue_token(settings, who).token)
    client.cookies.set(auth.CSRF_COOKIE, CSRF)
    client.cookies.set("hpcportal_lang", lang)


# --- Every page, both languages -----------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_page_renders(client: TestClient, settings: Settings, lang: str) -> None:
    log_in(client, settings, ALICE, lang)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-language"] == lang
        assert response.headers["cache-control"] == "no-store"
        if not path.startswith("/partials"):
            assert f'<html lang="{lang}"' in response.text
        if lang == "ko":
            assert untranslated(response.text) == [], path


def test_the_language_follows_the_browser_until_one_is_chosen(
    client: TestClient, settings: Settings
) -> None:
    client.cookies.set(settings.cookie_name, auth.issue_token(settings, ALICE).token)
    korean = client.get("/jobs", headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    assert '<html lang="ko"' in korean.text and "작업" in korean.text
    english = client.get("/jobs", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en"' in english.text
    switched = client.post("/lang", data={"lang": "ko", "next": "/jobs?state=running"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/jobs?state=running"
    assert "hpcportal_lang=ko" in switched.headers["set-cookie"]
    client.cookies.set("hpcportal_lang", "ko")
    assert '<html lang="ko"' in client.get("/jobs", headers={"Accept-Language": "en"}).text
    elsewhere = client.post("/lang", data={"lang": "en", "next": "https://evil.example/"})
    assert elsewhere.headers["location"] == "/"


def test_the_login_page_works_without_a_session(client: TestClient) -> None:
    for lang in ("en", "ko"):
        client.cookies.set("hpcportal_lang", lang)
        page = client.get("/login?next=/jobs&reason=expired")
        assert page.status_code == 200
        assert 'data-testid="login-username"' in page.text
        assert 'name="next" value="/jobs"' in page.text
        assert 'data-testid="login-message"' in page.text
        if lang == "ko":
            assert "세션이 만료되었습니다" in page.text
            assert untranslated(page.text) == []
    assert 'value="/"' in client.get("/login?next=//evil.example/x").text


# --- Sessions -----------------------------------------------------------------------------------


def test_pages_without_a_session_go_to_the_login_page(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/login?next=%2F"
    jobs = client.get("/jobs?state=running")
    assert jobs.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Drunning&reason=required"


def test_an_expired_session_says_so(client: TestClient, settings: Settings) -> None:
    old = auth.issue_token(settings, ALICE, now=datetime.now(UTC) - timedelta(hours=5))
    client.cookies.set(settings.cookie_name, old.token)
    response = client.get("/nodes")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fnodes&reason=expired"
    htmx = client.get("/jobs", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"].startswith("/login?next=%2Fjobs")


def test_logout_needs_the_csrf_value_and_ends_the_session(
    client: TestClient, settings: Settings
) -> None:
    log_in(client, settings, ALICE)
    refused = client.post("/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    done = client.post("/logout", data={"csrf": CSRF})
    assert done.status_code == 303
    assert done.headers["location"] == "/login?reason=logged_out"
    assert client.get("/").status_code == 303  # the token is revoked


# --- Escaping and roles -------------------------------------------------------------------------


def test_job_names_and_output_render_as_text(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    escaped = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
    for path in ("/", "/jobs", "/jobs/6", "/jobs/6?script=true", "/nodes/node001"):
        html = client.get(path).text
        assert "<img src=x" not in html, path
        assert escaped in html, path
    detail = client.get("/jobs/6").text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in detail and "<b>not bold" not in detail
    assert 'data-testid="output"' in detail


def test_admin_toggles_only_for_admins(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    for path in ("/jobs", "/accounting"):
        html = client.get(path).text
        assert 'data-testid="scope-toggle"' not in html
        assert 'data-testid="accounting-scope"' not in html
    everyone = client.get("/jobs?scope=all").text
    users = set(re.findall(r'<tr data-job-id="[^"]+" data-user="([^"]+)"', everyone))
    assert users == {"alice"}, "a user's scope=all still shows only their jobs"

    log_in(client, settings, CAROL)
    assert 'data-testid="scope-toggle"' in client.get("/jobs").text
    assert 'data-testid="accounting-scope"' in client.get("/accounting").text
    everyone = client.get("/jobs?scope=all&arrays=expanded").text
    users = set(re.findall(r'<tr data-job-id="[^"]+" data-user="([^"]+)"', everyone))
    assert users == {"alice", "bob", "dave"}


def test_actions_follow_the_job_state_and_owner(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    running = client.get("/jobs/6").text
    assert 'data-testid="action-cancel">' in running
    assert 'data-testid="action-hold" hidden' in running
    assert 'href="/submit?from=6"' in running
    someone_elses = client.get("/jobs/2_3").text
    assert 'data-testid="job-actions"' not in someone_elses
    assert 'data-testid="output"' not in someone_elses
    prefilled = client.get("/submit?from=6").text
    assert 'value="normal"' in prefilled and "echo 6" in prefilled


def test_job_rows_carry_the_test_ids(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    html = client.get("/jobs?arrays=collapsed").text
    assert '<tr data-job-id="6"' in html
    assert 'data-testid="job-state" data-status="running"' in html
    home = client.get("/").text
    for kind in ("cluster_summary", "my_jobs", "partition_load", "node_heatmap", "storage"):
        assert f'data-widget="{kind}"' in home
    assert 'data-testid="unread-count"' in home and 'id="lang-switch"' in home


def test_htmx_gets_the_job_results_alone(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    fragment = client.get("/jobs?state=running", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<div id="jobs-results"') and "<html" not in fragment
    restore = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    assert "<html" in client.get("/jobs?state=running", headers=restore).text


def test_unknown_things_are_error_pages(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE, "ko")
    for path, status in (("/nodes/nope", 404), ("/jobs/abc", 422), ("/templates/99999", 404)):
        response = client.get(path)
        assert response.status_code == status, path
        assert 'data-testid="error-message"' in response.text
        assert "<html" in response.text


# --- Dashboards ---------------------------------------------------------------------------------


def test_dashboard_layouts_save_and_reset(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    csrf = {"X-CSRF-Token": CSRF}
    first = client.get("/api/v1/dashboard/layouts").json()
    assert first["source"] == "preset" and first["preset"] == "default"
    assert {w["type"] for w in first["widgets"]} >= {"cluster_summary", "my_jobs", "storage"}

    mine = [{"type": "storage", "x": 0, "y": 0, "w": 6, "h": 3}]
    mine.append({"type": "my_jobs", "x": 6, "y": 0, "w": 6, "h": 5})
    assert client.put("/api/v1/dashboard/layouts", json={"widgets": mine}).status_code == 403
    saved = client.put("/api/v1/dashboard/layouts", json={"widgets": mine}, headers=csrf)
    assert saved.status_code == 200, saved.text
    again = client.get("/api/v1/dashboard/layouts").json()
    assert again["source"] == "saved" and again["widgets"] == mine
    home = client.get("/").text
    assert re.findall(r'data-widget="(\w+)"', home)[:2] == ["storage", "my_jobs"]
    assert 'data-widget="cluster_summary"' not in home

    bare = client.put("/api/v1/dashboard/layouts", json=mine[:1], headers=csrf)
    assert bare.status_code == 200 and bare.json()["widgets"] == mine[:1]

    minimal = client.post(
        "/api/v1/dashboard/layouts/reset", json={"preset": "minimal"}, headers=csrf
    ).json()
    assert minimal["source"] == "saved"
    assert [w["type"] for w in minimal["widgets"]] == ["my_jobs", "cluster_summary"]
    reset = client.post("/api/v1/dashboard/layouts/reset", headers=csrf).json()
    assert reset["source"] == "preset"
    assert client.get("/api/v1/dashboard/layouts").json()["source"] == "preset"

    log_in(client, settings, BOB)
    assert client.get("/api/v1/dashboard/layouts").json()["source"] == "preset"


@pytest.mark.parametrize(
    "widgets",
    [
        [{"type": "storage", "x": 0, "y": 0, "w": 3, "h": 3}] * 2,
        [{"type": "storage", "x": 10, "y": 0, "w": 3, "h": 3}],
        [{"type": "nonsense", "x": 0, "y": 0, "w": 3, "h": 3}],
        [{"type": "storage", "x": 0, "y": 0, "w": 0, "h": 3}],
        [{"type": "storage", "x": 0, "y": 0, "w": 3, "h": 3, "extra": 1}],
    ],
)
def test_bad_layouts_are_refused(
    client: TestClient, settings: Settings, widgets: list[dict[str, Any]]
) -> None:
    log_in(client, settings, ALICE)
    csrf = {"X-CSRF-Token": CSRF}
    for body in ({"widgets": widgets}, widgets):
        response = client.put("/api/v1/dashboard/layouts", json=body, headers=csrf)
        assert response.status_code == 422, (body, response.text)


def test_presets(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    presets = client.get("/api/v1/dashboard/presets").json()
    assert {"default", "minimal"} <= {p["name"] for p in presets}
    bad = client.post(
        "/api/v1/dashboard/layouts/reset", json={"preset": "nope"}, headers={"X-CSRF-Token": CSRF}
    )
    assert bad.status_code == 422


# --- Assets -------------------------------------------------------------------------------------


def test_every_page_stays_under_the_asset_budget(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, CAROL)
    for path in [*PAGES, "/login"]:
        if path.startswith("/partials"):
            continue
        html = client.get(path).text
        assets = page_assets(html)
        total = sum(assets.values())
        assert total < BUDGET_BYTES, (path, total, assets)
        assert gzipped_size(assets) < BUDGET_BYTES / 2
        assert "js/app.js" in assets and "css/app.css" in assets


def test_static_files_are_served_with_types(client: TestClient) -> None:
    script = client.get("/static/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "text/css" in client.get("/static/css/app.css").headers["content-type"]
    assert client.get("/static/vendor/htmx/htmx.min.js").status_code == 200


def test_the_import_map_names_every_module() -> None:
    imports = common.import_map()["imports"]
    modules = {p.name for p in (STATIC_DIR / "js").glob("*.js")}
    assert {k.rsplit("/", 1)[1] for k in imports} == modules
    assert all(v.startswith(k + "?v=") for k, v in imports.items())


def test_the_vendor_readme_lists_every_vendored_file() -> None:
    vendor = STATIC_DIR / "vendor"
    readme = (vendor / "README.md").read_text()
    for path in sorted(vendor.rglob("*")):
        if path.is_file() and path.name != "README.md":
            name = str(path.relative_to(vendor))
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert f"`{name}`" in readme and digest in readme, name


# --- Helpers ------------------------------------------------------------------------------------


def test_safe_next_only_allows_local_paths() -> None:
    assert safe_next("/jobs?state=running") == "/jobs?state=running"
    for bad in (None, "", "https://evil.example", "//evil.example", "/\\evil", "jobs", "/x\n"):
        assert safe_next(bad) == "/"


def test_expand_hostlist() -> None:
    assert expand_hostlist("node[001-003,007],gpu001") == [
        "node001",
        "node002",
        "node003",
        "node007",
        "gpu001",
    ]
    assert expand_hostlist("viz-node001") == ["viz-node001"]


def test_accounting_series_counts_per_day() -> None:
    records = parse.parse_sacct(recorded("sacct.json"))
    day = date(2026, 11, 21)
    series = accounting_series(records, day - timedelta(days=1), day, UTC)
    assert series["days"] == ["2026-11-20", "2026-11-21"]
    counted = sum(sum(values) for values in series["jobs"].values())
    assert counted == len(records)
    assert series["jobs"]["completed"][1] >= 1
    assert all(v >= 0 for v in series["cpu_hours"])


# --- Files ----------------------------------------------------------------------------------


def test_file_names_render_as_text(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    for path in ("/files", "/files/home", "/files/home/data"):
        html = client.get(path).text
        assert "<img src=x" not in html, path
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.txt" in html, path
        assert 'data-testid="nav-files" aria-current="page"' in html
    data = client.get("/files/home/data").text
    assert 'data-folder="data"' in data
    assert '<a href="/files/home/data" aria-current="location">data</a>' in data
    link = "/files/home/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"
    assert f'href="{link}"' in client.get("/files").text


def test_a_file_in_the_url_opens_its_folder_with_the_file_selected(
    client: TestClient, settings: Settings
) -> None:
    log_in(client, settings, ALICE)
    html = client.get("/files/home/notes.txt").text
    assert 'data-selected="notes.txt"' in html and 'data-folder=""' in html
    assert 'aria-selected="true"' in html


def test_file_listing_sort_links(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    html = client.get("/files/home?sort=size").text
    assert 'aria-sort="ascending"' in html
    assert 'href="/files/home?sort=-size"' in html
    assert client.get("/files/home?sort=owner").status_code == 422


def test_unknown_file_areas_and_paths_are_error_pages(
    client: TestClient, settings: Settings
) -> None:
    log_in(client, settings, ALICE, "ko")
    for path in ("/files/nowhere", "/files/home/missing"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert '<html lang="ko"' in response.text


def test_human_size_and_file_href() -> None:
    fmt = i18n.Formatter("en", UTC)
    assert human_size(0, fmt) == "0 B"
    assert human_size(1536, fmt) == "1.5 KB"
    assert human_size(5 * 1024**3, fmt) == "5.0 GB"
    assert file_href("home") == "/files/home"
    assert (
        file_href("home", "a b/c#?.txt", download=1) == "/files/home/a%20b/c%23%3F.txt?download=1"
    )
    assert file_href("home", "x", hidden=False) == "/files/home/x"


# --- Interactive apps and sessions --------------------------------------------------------------

READY, PENDING, FAILED = "a1" * 8, "b2" * 8, "c3" * 8


def _select(html: str, element_id: str) -> str:
    found = re.search(rf'<select id="{element_id}".*?</select>', html, re.S)
    assert found, element_id
    return found.group(0)


def test_apps_page_builds_a_launch_form_per_app(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    html = client.get("/apps").text
    assert 'data-testid="nav-apps" aria-current="page"' in html
    for app in ("desktop", "jupyter", "texteditor"):
        assert f'data-testid="launch-form-{app}"' in html
        assert f'src="/api/v1/apps/{app}/icon"' in html
    # The cluster's partitions, the app's own default chosen.
    partition = _select(html, "app-desktop-partition")
    assert set(re.findall(r'<option value="(\w+)"', partition)) == {"normal", "gpu", "viz"}
    assert '<option value="viz" selected>' in partition
    hours = re.search(r'<input type="number" id="app-desktop-hours"[^>]*>', html)
    assert hours and 'min="1" max="8"' in hours.group(0) and 'value="1"' in hours.group(0)
    assert '<option value="1280x800" selected>' in _select(html, "app-desktop-resolution")
    assert 'data-testid="active-count">2 active<' in html
    log_in(client, settings, ALICE, "ko")
    korean = client.get("/apps").text
    assert "데스크톱" in korean and "대화형 앱" in korean and "화면 크기" in korean


def test_app_forms_fall_back_to_the_clusters_default_partition() -> None:
    from hpcportal.services.apps import AppCatalog

    class Ctx:
        catalog = AppCatalog.load(Settings(jwt_secret=SecretStr(TEST_SECRET)))

    page = common.Page(None, None, ALICE, "en", i18n.Formatter("en"), "auto")  # type: ignore[arg-type]
    groups = session_pages.app_cards(page, Ctx(), ALICE, ["normal", "gpu"], "normal")  # type: ignore[arg-type]
    fields = {a["id"]: a["fields"] for _, apps in groups for a in apps}
    partition = next(f for f in fields["desktop"] if f["name"] == "partition")
    assert partition["options"] == ["normal", "gpu"] and partition["default"] == "normal"
    assert [c for c, _ in groups] == ["Desktops", "Editors", "Notebooks"]


def test_shipped_app_texts_are_in_the_catalog() -> None:
    from hpcportal.services.apps import AppCatalog

    catalog = AppCatalog.load(Settings(jwt_secret=SecretStr(TEST_SECRET)))
    for app in catalog.visible(ALICE):
        d = app.definition
        for text in [d.name, d.description, d.category, *(f.label for f in d.form)]:
            assert text in i18n.SHIPPED_APP_TEXTS, text
            assert i18n.gettext("ko", text) != text or text == "JupyterLab", text


def test_sessions_page_shows_only_your_sessions_and_no_secret(
    client: TestClient, settings: Settings
) -> None:
    log_in(client, settings, ALICE)
    html = client.get("/sessions").text
    assert 'data-testid="nav-sessions" aria-current="page"' in html
    assert re.findall(r'data-session-id="(\w+)"', html) == [READY, PENDING, FAILED]
    for secret in (*SECRETS, "bob-secret"):
        assert secret not in html
    cards = dict(re.findall(r'<article [^>]*data-session-id="(\w+)"(.*?)</article>', html, re.S))
    assert 'data-state="running" data-ready="true"' in cards[READY]
    assert f'data-testid="session-open" href="/sessions/{READY}">' in cards[READY]
    assert 'data-state="pending" data-ready="false"' in cards[PENDING]
    assert re.search(r'data-testid="session-open"[^>]* hidden>', cards[PENDING])
    assert re.search(r'data-testid="session-delete"[^>]* hidden>', cards[FAILED])
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in cards[FAILED]  # error and log, as text
    assert 'data-field="log-box" data-loaded="true"' in cards[FAILED]
    assert re.search(r'data-field="time-left" data-ends-at="[^"]+">55 min left<', cards[READY])
    fragment = client.get("/sessions", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<div id="sessions-list"') and "<html" not in fragment


def test_session_page_for_each_state(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, ALICE)
    ready = client.get(f"/sessions/{READY}").text
    assert re.search(r'data-testid="vnc-panel" aria-labelledby="viewer-title">', ready)
    assert re.search(r'data-testid="session-waiting" [^>]*hidden>', ready)
    assert "js/session.js?v=" in ready and "novnc" not in ready  # noVNC: only when shown
    assert '"shared": true' in ready and 'data-testid="share-revoke">' in ready
    for secret in SECRETS:
        assert secret not in ready
    pending = client.get(f"/sessions/{PENDING}").text
    assert 'data-testid="session-waiting" aria-labelledby="waiting-title">' in pending
    assert re.search(r'data-testid="web-panel" [^>]*hidden>', pending)
    assert f'href="/node/{PENDING}/" target="_blank" rel="noopener"' in pending
    assert 'data-testid="vnc-panel"' not in pending
    failed = client.get(f"/sessions/{FAILED}").text
    assert 'data-testid="session-ended" aria-labelledby="ended-title">' in failed
    assert "Xvnc: cannot open display" in failed and "<img src=x" not in failed


def test_someone_elses_session_is_a_403_page(client: TestClient, settings: Settings) -> None:
    log_in(client, settings, BOB, "ko")
    theirs = client.get(f"/sessions/{READY}")
    assert theirs.status_code == 403
    assert '<html lang="ko"' in theirs.text and "다른 사람의 세션입니다." in theirs.text
    assert untranslated(theirs.text) == []
    for path in ("/sessions/0000000000000000", "/sessions/../etc", "/sessions/x"):
        assert client.get(path).status_code == 404, path


def test_share_links_open_for_anyone_logged_in_until_revoked(
    client: TestClient, settings: Settings
) -> None:
    """The link's token is in the fragment: it is posted once and exchanged for a
    cookie scoped to the share, then every address is token-free."""
    sid = hashlib.sha256(SHARE_TOKEN.encode()).hexdigest()[:16]
    landing = client.get("/shares/open")  # no login needed to open the link
    assert landing.status_code == 200 and "js/share_open.js" in landing.text
    opened = client.post("/shares/open", json={"token": SHARE_TOKEN})
    assert opened.status_code == 200 and opened.json() == {"url": f"/shares/{sid}"}
    cookies = opened.headers.get_list("set-cookie")
    assert sorted(re.findall(r"[Pp]ath=([^;]+)", " ".join(cookies))) == [
        f"/api/v1/shares/{sid}",
        f"/shares/{sid}",
    ]
    for cookie in cookies:
        assert cookie.startswith("hpcportal_share=") and SHARE_TOKEN not in cookie
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    page = client.get(f"/shares/{sid}", follow_redirects=False)
    assert page.status_code == 303  # log in first; the way back names no token
    assert page.headers["location"] == f"/login?next=%2Fshares%2F{sid}&reason=required"
    log_in(client, settings, BOB)
    html = client.get(f"/shares/{sid}").text
    assert 'data-status="ready"' in html and "Desktop of alice, view-only" in html
    assert f'data-share="{sid}"' in html and SHARE_TOKEN not in html
    assert re.search(r'data-testid="share-gone"[^>]* hidden>', html)
    for secret in SECRETS:
        assert secret not in html
    assert READY not in html  # the viewer never learns the session's id
    assert client.get(f"/shares/{sid}/status").json() == {"status": "ready"}
    # Without the cookie (another browser that never opened the link): nothing.
    client.cookies.delete("hpcportal_share", path=f"/shares/{sid}")
    client.cookies.delete("hpcportal_share", path=f"/api/v1/shares/{sid}")
    gone = client.get(f"/shares/{sid}")
    assert gone.status_code == 200 and 'data-status="gone"' in gone.text
    assert client.get(f"/shares/{sid}/status").json() == {"status": "gone"}
    # A link of the older form is exchanged and sent to the token-free page.
    old = client.get(f"/shares/{SHARE_TOKEN}", follow_redirects=False)
    assert old.status_code == 303 and old.headers["location"] == f"/shares/{sid}"
    assert client.get(f"/shares/{sid}/status").json() == {"status": "ready"}
    for bad in ("x" * 43, "short", "s" * 42 + "!"):
        assert client.post("/shares/open", json={"token": bad}).status_code == 404
        gone = client.get(f"/shares/{bad}")
        assert gone.status_code == 200 and 'data-status="gone"' in gone.text
        assert re.search(r'data-testid="share-gone">', gone.text)
    # A cookie for another share, or a forged one, opens nothing here.
    client.cookies.set("hpcportal_share", "forged", path=f"/shares/{sid}")
    assert client.get(f"/shares/{sid}/status").json() == {"status": "gone"}


def test_extend_is_offered_only_where_slurm_would_allow_it(
    client: TestClient, settings: Settings
) -> None:
    """Slurm lets alice raise her pending job's limit but not her running one's (she is
    no operator): the running session's page hides Extend, the pending one shows it."""
    log_in(client, settings, ALICE)
    extend = re.compile(
        r'<span class="extend" data-field="extend" data-operator="(\w+)"( hidden)?>'
    )
    running = extend.search(client.get("/sessions/a1a1a1a1a1a1a1a1").text)
    pending = extend.search(client.get("/sessions/b2b2b2b2b2b2b2b2").text)
    assert running is not None and running.groups() == ("false", " hidden")
    assert pending is not None and pending.groups() == ("false", None)


# --- API docs: every asset from the portal itself ---------------------------------------------


def test_api_docs_load_nothing_from_another_site(client: TestClient, settings: Settings) -> None:
    html = client.get("/api/v1/docs").text
    assert "SwaggerUIBundle" in html and "/api/v1/openapi.json" in html
    assert "cdn." not in html and "validatorUrl" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3, assets
    for url in assets:
        assert url.startswith("/static/vendor/swagger-ui/"), url
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) > 500, url
