"""Reports on a real portal (issue 14.4): asked for through the API, generated in the
background by the portal's own worker from its usage store, downloaded in every format;
nobody else's reports are visible; scopes are checked for users, coordinators and
admins; the bell tells the owner; the CLI does the same through an API token."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from hpcportal.services.reports.document import ReportDocument
from hpcportal.services.reports.ingest import ingest_status
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_web_pages import browser

FORMATS = ("pdf", "xlsx", "csv", "json")


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    # The leader ingests the last 9 days in day-long windows every 2 s, up to 3 s ago,
    # so the usage store soon holds the jobs own_jobs ran (_wait_for_the_store).
    return make_portal(
        report_worker_seconds=0.5,
        report_schedule_check_seconds=1.0,
        reports_ingest_seconds=2.0,
        reports_ingest_lookback_days=9.0,
        reports_ingest_window_minutes=1440,
        reports_ingest_settle_seconds=3.0,
    )


@pytest.fixture(scope="module")
def dave(portal: RunningPortal) -> dict[str, str]:
    return dict(portal.login("dave"))


def spec(**changes: Any) -> dict[str, Any]:
    end = datetime.now(UTC).replace(microsecond=0)
    body: dict[str, Any] = {
        "kind": "job_usage",
        "period": {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat()},
        "language": "en",
    }
    body.update(changes)
    return body


def wait_done(portal: RunningPortal, headers: dict[str, str], report_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with portal.client(headers=headers) as c:
        while time.monotonic() < deadline:
            found = c.get(f"/api/v1/reports/{report_id}")
            assert found.status_code == 200, found.text
            body: dict[str, Any] = found.json()
            if body["state"] in ("done", "failed"):
                return body
            assert body["state"] in ("queued", "running") and 0 <= body["progress"] < 100
            time.sleep(0.3)
    raise AssertionError(f"report {report_id} not done in 120 s")


@pytest.fixture(scope="module")
def alices(portal: RunningPortal, alice: dict[str, str]) -> dict[str, int]:
    """alice's report in every format: format -> id, each generated."""
    with portal.client(headers=alice) as c:
        created = c.post("/api/v1/reports", json={"spec": spec(), "formats": list(FORMATS)})
    assert created.status_code == 202, created.text
    ids = created.json()["ids"]
    assert created.json()["id"] == ids[0] and len(ids) == 4
    for report_id in ids:
        done = wait_done(portal, alice, report_id)
        assert done["state"] == "done", done
        assert done["progress"] == 100 and done["size"] > 0 and done["owner"] == "alice"
    return dict(zip(FORMATS, ids, strict=True))


def test_alice_downloads_each_format(
    portal: RunningPortal, alice: dict[str, str], alices: dict[str, int]
) -> None:
    with portal.client(headers=alice) as c:
        files = {f: c.get(f"/api/v1/reports/{i}/download") for f, i in alices.items()}
        other = c.get(f"/api/v1/reports/{alices['pdf']}/download", params={"format": "csv"})
    for fmt, response in files.items():
        assert response.status_code == 200, response.text
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment;") and f'-{alices[fmt]}.{fmt}"' in disposition
    assert files["pdf"].headers["content-type"] == "application/pdf"
    assert files["pdf"].content.startswith(b"%PDF-")
    assert files["xlsx"].headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip
    assert "xl/workbook.xml" in zipfile.ZipFile(io.BytesIO(files["xlsx"].content)).namelist()
    assert files["csv"].headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(files["csv"].content.decode("utf-8-sig"))))
    assert rows
    document = ReportDocument.model_validate(json.loads(files["json"].content))
    assert document.kind == "job_usage" and "alice" in document.scope
    # The PDF report, downloaded as CSV, is rendered from the same stored document.
    assert other.status_code == 200 and other.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(other.content.decode("utf-8-sig"))))
    assert f'-{alices["pdf"]}.csv"' in other.headers["content-disposition"]


def test_bob_cannot_list_read_download_or_delete_alices(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], alices: dict[str, int]
) -> None:
    report_id = alices["pdf"]
    with portal.client(headers=bob) as c:
        listed = c.get("/api/v1/reports").json()["items"]
        everyone = c.get("/api/v1/reports", params={"all": "true"}).json()["items"]
        status = c.get(f"/api/v1/reports/{report_id}")
        download = c.get(f"/api/v1/reports/{report_id}/download")
        delete = c.delete(f"/api/v1/reports/{report_id}")
    assert [r for r in listed + everyone if r["owner"] == "alice"] == []
    for answer in (status, download, delete):
        assert answer.status_code == 404, answer.text
        assert answer.json()["code"] == "not_found"
    with portal.client(headers=alice) as c:
        assert c.get(f"/api/v1/reports/{report_id}").json()["state"] == "done"


def test_carol_sees_everyones(
    portal: RunningPortal, carol: dict[str, str], alices: dict[str, int]
) -> None:
    with portal.client(headers=carol) as c:
        mine = c.get("/api/v1/reports").json()["items"]
        everyone = c.get("/api/v1/reports", params={"all": "true"}).json()["items"]
        status = c.get(f"/api/v1/reports/{alices['csv']}")
    assert all(r["owner"] == "carol" for r in mine)
    assert set(alices.values()) <= {r["id"] for r in everyone}
    assert status.status_code == 200


def test_scopes_are_checked_before_anything_is_queued(
    portal: RunningPortal, bob: dict[str, str], dave: dict[str, str], carol: dict[str, str]
) -> None:
    def ask(headers: dict[str, str], scope: dict[str, list[str]]) -> int:
        with portal.client(headers=headers) as c:
            r = c.post("/api/v1/reports", json={"spec": spec(scope=scope), "formats": ["csv"]})
        return r.status_code

    assert ask(bob, {"users": ["alice"]}) == 403
    assert ask(bob, {"accounts": ["research"]}) == 403
    assert ask(bob, {"users": ["bob"]}) == 202
    with portal.client(headers=bob) as c:
        system = c.post("/api/v1/reports", json={"spec": spec(kind="system")})
    assert system.status_code == 403, system.text
    assert ask(dave, {"accounts": ["research"]}) == 403
    assert ask(dave, {"accounts": ["physics"]}) == 202
    assert ask(carol, {"accounts": ["research"], "users": ["alice"]}) == 202
    with portal.client(headers=bob) as c:
        assert all(r["owner"] == "bob" for r in c.get("/api/v1/reports").json()["items"])


def test_the_bell_tells_alice_once_per_report(
    portal: RunningPortal, alice: dict[str, str], alices: dict[str, int]
) -> None:
    with portal.client(headers=alice) as c:
        items = c.get("/api/v1/notifications", params={"limit": 200}).json()["items"]
    told = [n for n in items if n["kind"] == "report"]
    assert sorted(n["params"]["report_id"] for n in told) == sorted(alices.values())
    assert {n["event"] for n in told} == {"report_ready"}
    assert all(n["target"] == f"report:{n['params']['report_id']}" for n in told)


def test_preview_returns_the_document(portal: RunningPortal, alice: dict[str, str]) -> None:
    with portal.client(headers=alice) as c:
        found = c.post("/api/v1/reports/preview", json=spec(kind="custom",
                       dimensions=["user"], measures=["jobs", "cpu_hours"]))  # fmt: skip
        refused = c.post("/api/v1/reports/preview", json=spec(scope={"users": ["bob"]}))
    assert found.status_code == 200, found.text
    assert ReportDocument.model_validate(found.json()).kind == "custom"
    assert refused.status_code == 403


def test_schedules_are_owned(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str]
) -> None:
    body = {"name": "Weekly usage", "spec": spec(), "formats": ["pdf", "csv"],
            "frequency": "weekly", "time_of_day": "06:00", "time_zone": "Asia/Seoul"}  # fmt: skip
    with portal.client(headers=alice) as c:
        made = c.post("/api/v1/reports/schedules", json=body)
        assert made.status_code == 201, made.text
        bad = c.post("/api/v1/reports/schedules", json={**body, "time_zone": "/etc/passwd"})
        assert bad.status_code == 422
    schedule = made.json()
    next_run = datetime.fromisoformat(schedule["next_run_at"])
    assert next_run.astimezone(UTC).hour == 21 and next_run.weekday() == 6  # Mon 06:00 KST
    with portal.client(headers=bob) as c:
        assert c.get("/api/v1/reports/schedules").json()["items"] == []
        assert c.delete(f"/api/v1/reports/schedules/{schedule['id']}").status_code == 404
    with portal.client(headers=alice) as c:
        assert c.delete(f"/api/v1/reports/schedules/{schedule['id']}").status_code == 204
        assert c.get("/api/v1/reports/schedules").json()["items"] == []


def test_the_cli_creates_waits_downloads_and_deletes(
    portal: RunningPortal, alice: dict[str, str], tmp_path: Path
) -> None:
    with portal.client(headers=alice) as c:
        created = c.post("/api/v1/auth/api-tokens", json={"name": "cli-reports",
                                                          "scopes": ["read", "write"]})  # fmt: skip
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()
    create = ["reports", "create", "--period", "last_30_days", "--format", "csv", "--format",
              "xlsx", "--wait", "--output", str(tmp_path)]  # fmt: skip
    made = runner.invoke(cli, create, env=env)
    assert made.exit_code == 0, made.output
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 2 and saved[0].endswith(".csv") and saved[1].endswith(".xlsx")
    listed = runner.invoke(cli, ["reports", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    newest = json.loads(listed.output)["items"][0]
    assert newest["state"] == "done" and newest["owner"] == "alice"
    status = runner.invoke(cli, ["reports", "status", str(newest["id"])], env=env)
    assert status.exit_code == 0 and "done" in status.output
    again = runner.invoke(cli, ["reports", "download", str(newest["id"]), "--format", "json",
                                "-o", str(tmp_path / "r.json")], env=env)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert ReportDocument.model_validate_json((tmp_path / "r.json").read_bytes())
    gone = runner.invoke(cli, ["reports", "delete", str(newest["id"])], env=env)
    assert gone.exit_code == 0, gone.output
    missing = runner.invoke(cli, ["reports", "status", str(newest["id"])], env=env)
    assert missing.exit_code == 1 and "No report" in missing.output


def _generated(
    portal: RunningPortal, headers: dict[str, str], body: dict[str, Any], formats: list[str]
) -> int:
    """Ask for a report generated as ``formats[0]`` and wait for it: its id."""
    with portal.client(headers=headers) as c:
        created = c.post("/api/v1/reports", json={"spec": body, "formats": formats[:1]})
    assert created.status_code == 202, created.text
    report_id = int(created.json()["id"])
    assert wait_done(portal, headers, report_id)["state"] == "done"
    return report_id


def _download(portal: RunningPortal, headers: dict[str, str], report_id: int, fmt: str) -> bytes:
    with portal.client(headers=headers) as c:
        got = c.get(f"/api/v1/reports/{report_id}/download", params={"format": fmt})
    assert got.status_code == 200, got.text
    return got.content


@dataclass(frozen=True)
class OwnJobs:
    """This module's finished jobs: who ran them, and when the last of them had ended."""

    users: frozenset[str]
    ended: datetime


@pytest.fixture(scope="module")
def own_jobs(conf: str) -> OwnJobs:
    """alice (research), bob and dave (physics) each run a job to its end, so the store
    has rows whatever ran on the cluster before; physics runs nothing else while the
    tests compare (no physics job is left pending or running first)."""
    deadline = time.monotonic() + 120
    while slurm_cli.run(conf, ["squeue", "-h", "-A", "physics", "-o", "%i"]).strip():
        assert time.monotonic() < deadline, "physics jobs of earlier tests still queued"
        time.sleep(1)
    users = ("alice", "bob", "dave")
    for user in users:
        slurm_cli.sbatch(conf, user, "--wait", "-J", f"report-{user}", "--wrap", "sleep 1")
    return OwnJobs(frozenset(users), datetime.now(UTC).replace(microsecond=0))


def _wait_for_the_store(portal: RunningPortal, jobs: OwnJobs) -> None:
    """Until the leader's usage store holds everything that ended by ``jobs.ended``."""
    deadline = time.monotonic() + 120
    while True:
        cursors = ingest_status(portal.services.database)
        if cursors and min(c.ingested_until for c in cursors) > jobs.ended:
            return
        assert time.monotonic() < deadline, f"the store never reached {jobs.ended}"
        time.sleep(0.5)


def _week_to_now(**changes: Any) -> dict[str, Any]:
    """The week up to now: the store holds it up to the moment the test waited for
    (the report says so in a note), and the rollups answer it in whole hours."""
    end = datetime.now(UTC).replace(microsecond=0)
    period = {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat()}
    return spec(period=period, compare_previous=False, **changes)


def test_a_korean_report_reads_back_in_every_format(
    portal: RunningPortal, carol: dict[str, str], own_jobs: OwnJobs, tmp_path: Path
) -> None:
    """The generated report, not a synthetic document: pdftotext gives back its Korean
    title and every user name of its by-user table, the CJK font is an embedded subset,
    the XLSX holds numbers as numbers and the CSV holds the JSON document's figures.
    One report, generated as PDF; the other formats are downloaded from its stored
    document, so jobs ending meanwhile cannot make the formats disagree."""
    import shutil
    import subprocess

    import openpyxl  # type: ignore[import-untyped]

    _wait_for_the_store(portal, own_jobs)
    report_id = _generated(portal, carol, _week_to_now(language="ko"), ["pdf"])
    files = {f: _download(portal, carol, report_id, f) for f in ("json", "pdf", "xlsx", "csv")}
    doc = ReportDocument.model_validate(json.loads(files["json"]))
    assert doc.title == "작업 사용량"
    by_user = next(s for s in doc.sections if s.title == "사용자별").tables[0]
    users = [str(r[0]) for r in by_user.rows]
    assert own_jobs.users <= set(users), users
    at = [c.key for c in by_user.columns].index("cpu_hours")

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(files["pdf"])
    for tool in ("pdftotext", "pdffonts"):
        assert shutil.which(tool), f"{tool} missing: apt-get install poppler-utils"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip
    assert "작업 사용량" in text and "사용자별" in text
    words = set(text.split())
    assert [u for u in users if u not in words] == []
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True,
                           check=True, timeout=60).stdout.splitlines()[2:]  # fmt: skip
    cjk = [f.split() for f in fonts if "Nanum" in f]
    assert cjk and all(f[0][6:7] == "+" and f[-5] == "yes" and f[-4] == "yes" for f in cjk), fonts

    sheet = openpyxl.load_workbook(io.BytesIO(files["xlsx"]))[by_user.title]
    grid = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert [str(r[0]) for r in grid] == users
    assert all(isinstance(r[at], int | float) for r in grid)
    assert [r[at] for r in grid] == pytest.approx([r[at] for r in by_user.rows])

    rows = list(csv.reader(io.StringIO(files["csv"].decode("utf-8-sig"))))
    start = rows.index([by_user.title])
    block = rows[start + 2 : start + 2 + len(users)]
    assert [r[0] for r in block] == users
    assert [float(r[at]) for r in block] == pytest.approx([r[at] for r in by_user.rows])


def test_dave_sees_physics_and_nothing_else(
    portal: RunningPortal,
    alice: dict[str, str],
    carol: dict[str, str],
    dave: dict[str, str],
    own_jobs: OwnJobs,
) -> None:
    """dave coordinates physics (sacctmgr): his report scoped to physics has physics
    rows only, with the figures an admin sees for physics; other accounts, and alice
    asking for bob's figures, are refused."""
    _wait_for_the_store(portal, own_jobs)
    body = _week_to_now(scope={"accounts": ["physics"]})

    def document(headers: dict[str, str], spec_body: dict[str, Any]) -> ReportDocument:
        report_id = _generated(portal, headers, spec_body, ["json"])
        return ReportDocument.model_validate(
            json.loads(_download(portal, headers, report_id, "json"))
        )

    mine = document(dave, body)
    everyone = document(carol, {**body, "scope": {}})

    def by_account(doc: ReportDocument) -> dict[str, list[Any]]:
        table = next(s for s in doc.sections if s.title == "By account").tables[0]
        return {str(r[0]): list(r[1:]) for r in table.rows}

    assert "physics" in by_account(everyone), "dave ran a physics job (own_jobs)"
    assert set(by_account(everyone)) - {"physics"}, "alice ran a research job (own_jobs)"
    assert by_account(mine) == {"physics": by_account(everyone)["physics"]}
    with portal.client(headers=dave) as c:
        other = c.post(
            "/api/v1/reports", json={"spec": {**body, "scope": {"accounts": ["research"]}}}
        )
    with portal.client(headers=alice) as c:
        bobs = c.post("/api/v1/reports", json={"spec": {**body, "scope": {"users": ["bob"]}}})
    assert other.status_code == 403, other.text
    assert bobs.status_code == 403, bobs.text


def test_everyone_can_see_how_current_the_store_is(
    portal: RunningPortal, alice: dict[str, str], conf: str, own_jobs: OwnJobs
) -> None:
    """The usage store's state equals its cursor, and the cluster's Slurm release, in
    the API, the CLI and on the reports page; the leader's gauge says the same."""
    _wait_for_the_store(portal, own_jobs)
    with portal.client(headers=alice) as c:
        body = c.get("/api/v1/reports/store").json()
        token = c.post("/api/v1/auth/api-tokens", json={"name": "cli-store", "scopes": ["read"]})
        metrics = c.get("/metrics").text
    [cursor] = ingest_status(portal.services.database)
    [item] = body["items"]
    assert datetime.fromisoformat(item["complete_until"]) == cursor.ingested_until
    assert cursor.ingested_until > own_jobs.ended
    release = slurm_cli.run(conf, ["sinfo", "-V"]).split()[1]  # "slurm 22.05.8"
    assert (item["cluster"], item["slurm_release"]) == (cursor.cluster, release)
    assert 0 <= item["behind_seconds"] < 600
    assert body["settle_seconds"] == portal.settings.reports_ingest_settle_seconds
    gauge = f'hpcportal_usage_store_complete_until_seconds{{cluster="{cursor.cluster}"}}'
    assert any(line.startswith(gauge + " ") for line in metrics.splitlines()), gauge

    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": token.json()["token"]}
    shown = CliRunner().invoke(cli, ["reports", "store"], env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"{cursor.cluster}: complete up to ") and release in shown.output

    page = browser(portal, "alice")
    try:
        html = page.get("/reports").text
    finally:
        page.close()
    assert 'data-testid="report-store"' in html and "Reports hold the jobs that ended" in html
