"""``hpcportal reports ...``: ask for usage reports, follow them, download and schedule them.

Talks to a portal's API (``--url``/``HPCPORTAL_URL``, ``--token``/``HPCPORTAL_TOKEN``)
like ``hpcportal jobs``: the portal generates in the background, so ``create`` prints
the new ids at once and ``--wait`` polls ``GET /api/v1/reports/{id}`` until each is done
(``--output DIR`` then downloads them). Errors print as ``Error: ...`` on stderr.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from hpcportal.cli.portal_client import (
    DEFAULT_URL,
    CliError,
    PortalClient,
    TokenOption,
    UrlOption,
    as_dict,
    print_json,
    reporting,
    usage_error,
)
from hpcportal.services.reports import periods

API = "/api/v1/reports"
#: Seconds between two polls of ``--wait``.
POLL_SECONDS = 1.0

app = typer.Typer(
    help="Usage reports through a portal's API (needs an API token).", no_args_is_help=True
)
schedules_app = typer.Typer(
    help="Reports generated every day, week or month.", no_args_is_help=True
)
app.add_typer(schedules_app, name="schedules")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]
ReportId = Annotated[int, typer.Argument(help="A report id (from `reports list`).", min=1)]
Kind = Annotated[
    str, typer.Option("--kind", help="job_usage, efficiency, system, user_activity or custom.")
]
Formats = Annotated[
    list[str] | None,
    typer.Option("--format", "-f", help="pdf, xlsx, csv or json; repeatable (default pdf)."),
]
Language = Annotated[str, typer.Option("--language", help="en or ko.")]
Users = Annotated[
    list[str] | None, typer.Option("--user", help="Only these users' jobs (repeatable).")
]
Accounts = Annotated[
    list[str] | None, typer.Option("--account", help="Only these accounts (repeatable).")
]
Dimensions = Annotated[
    list[str] | None,
    typer.Option(
        "--dimension", help="custom: group by user, account, partition, qos, size_bucket or time."
    ),
]
Measures = Annotated[
    list[str] | None,
    typer.Option("--measure", help="custom: jobs, cpu_hours, gpu_hours, ... (repeatable)."),
]
Zone = Annotated[str, typer.Option("--time-zone", help="IANA time zone of dates and periods.")]


def _day(text: str, tz: ZoneInfo, what: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), clock_time(0), tzinfo=tz).astimezone(UTC)
    except ValueError:
        usage_error(f"{what} must be a date like 2026-11-01, not {text!r}.")


def build_spec(
    kind: str,
    period: str | None,
    start: str | None,
    end: str | None,
    language: str,
    time_zone: str,
    users: list[str] | None,
    accounts: list[str] | None,
    dimensions: list[str] | None,
    measures: list[str] | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``ReportSpec`` JSON the options describe (the portal validates it)."""
    tz = ZoneInfo(time_zone)
    if start or end:
        if period:
            usage_error("Give --period or --start/--end, not both.")
        if not (start and end):
            usage_error("--start and --end go together (end excluded).")
        window = {
            "start": _day(start, tz, "--start").isoformat(),
            "end": _day(end, tz, "--end").isoformat(),
        }
    else:
        found = periods.preset(period or "last_month", time_zone, now)
        window = {"start": found.start.isoformat(), "end": found.end.isoformat()}
    spec: dict[str, Any] = {
        "kind": kind,
        "period": window,
        "language": language,
        "time_zone": time_zone,
        "scope": {"users": users or [], "accounts": accounts or []},
    }
    if dimensions:
        spec["dimensions"] = dimensions
    if measures:
        spec["measures"] = measures
    return spec


def _row(r: dict[str, Any]) -> str:
    size = f"{r['size']} B" if r.get("size") is not None else "-"
    state = r["state"] if r["state"] != "running" else f"running {r['progress']}%"
    return (
        f"{r['id']:>6}  {r['format']:<5} {state:<12} {size:>12}  {r['created_at'][:19]}  "
        f"{r['owner']:<10} {r.get('title') or r['kind']}"
    )


def _wait(client: PortalClient, ids: list[int], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [as_dict(client.get(f"{API}/{i}"), "a report") for i in ids]
        if all(r["state"] in ("done", "failed") for r in found):
            return found
        if time.monotonic() > deadline:
            raise CliError(f"Report(s) not finished after {timeout:g} s; see `reports status`.")
        time.sleep(POLL_SECONDS)


def _save(client: PortalClient, report_id: int, fmt: str | None, output: Path) -> Path:
    response = client.request(
        "GET", f"{API}/{report_id}/download", params={"format": fmt} if fmt else None, retries=1
    )
    disposition = response.headers.get("content-disposition", "")
    name = (
        disposition.split('filename="', 1)[-1].split('"', 1)[0]
        if 'filename="' in disposition
        else f"report-{report_id}.{fmt or 'bin'}"
    )
    target = output / Path(name).name if output.is_dir() else output
    target.write_bytes(response.content)
    return target


@app.command("list")
def list_reports(
    all_users: Annotated[bool, typer.Option("--all", help="Admins: everyone's reports.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Your reports, newest first: id, format, state, size, when, owner, title."""
    with reporting(), PortalClient(url, token) as client:
        body = as_dict(client.get(API, params={"all": "true"} if all_users else None), "reports")
    if as_json:
        print_json(body)
        return
    for r in body.get("items", []):
        typer.echo(_row(r))


@app.command("create")
def create(
    kind: Kind = "job_usage",
    period: Annotated[
        str | None,
        typer.Option("--period", help=f"One of {', '.join(periods.PRESETS)} (default last_month)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First day, like 2026-11-01.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Day after the last, like 2026-12-01.")
    ] = None,
    formats: Formats = None,
    language: Language = "en",
    time_zone: Zone = "UTC",
    user: Users = None,
    account: Accounts = None,
    dimension: Dimensions = None,
    measure: Measures = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until generated.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="With --wait: save the files in this folder."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")] = 600.0,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Ask for a report; prints its id (one per --format) and returns at once."""
    with reporting():
        spec = build_spec(
            kind,
            period,
            start,
            end,
            language,
            time_zone,
            user,
            account,
            dimension,
            measure,
            datetime.now(UTC),
        )
        with PortalClient(url, token) as client:
            created = as_dict(
                client.json("POST", API, body={"spec": spec, "formats": formats or ["pdf"]}),
                "the new report",
            )
            ids = [int(i) for i in created.get("ids", [created["id"]])]
            if not wait:
                print_json(created) if as_json else typer.echo(" ".join(map(str, ids)))
                return
            found = _wait(client, ids, timeout)
            for r in found:
                if r["state"] == "failed":
                    typer.echo(f"Report {r['id']} failed: {r.get('error')}", err=True)
                elif output is not None:
                    typer.echo(str(_save(client, r["id"], None, output)))
                else:
                    typer.echo(_row(r))
            if any(r["state"] == "failed" for r in found):
                raise CliError("Some reports failed.")


@app.command("store")
def store(
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Up to when reports are complete: the usage store of each cluster, how far behind
    now it is, and its last sacct window."""
    with reporting(), PortalClient(url, token) as client:
        body = as_dict(client.get(f"{API}/store"), "the usage store")
    if as_json:
        print_json(body)
        return
    items = body.get("items", [])
    if not items:
        typer.echo("The usage store is empty: the leader has not read sacct yet.")
    for c in items:
        behind = int(c["behind_seconds"])
        typer.echo(
            f"{c['cluster']}: complete up to {c['complete_until']} "
            f"({behind // 3600} h {behind % 3600 // 60} min behind); last window "
            f"{c['last_window_seconds'] // 60} min, {c['last_window_jobs']} jobs added; "
            f"Slurm {c['slurm_release'] or 'unknown'}"
        )


@app.command("status")
def status(
    report_id: ReportId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until done or failed.")] = False,
    timeout: Annotated[float, typer.Option("--timeout")] = 600.0,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """A report's state and progress."""
    with reporting(), PortalClient(url, token) as client:
        found = (
            _wait(client, [report_id], timeout)[0]
            if wait
            else as_dict(client.get(f"{API}/{report_id}"), "a report")
        )
    if as_json:
        print_json(found)
    else:
        typer.echo(_row(found) + (f"\n{found['error']}" if found.get("error") else ""))


@app.command("download")
def download(
    report_id: ReportId,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="Another format than generated, rendered from the same figures."
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A file, or a folder for the portal's file name.")
    ] = Path("."),
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Save a finished report; prints where."""
    with reporting(), PortalClient(url, token) as client:
        if str(output) == "-":
            response = client.request(
                "GET",
                f"{API}/{report_id}/download",
                params={"format": fmt} if fmt else None,
                retries=1,
            )
            sys.stdout.buffer.write(response.content)
            return
        typer.echo(str(_save(client, report_id, fmt, output)))


@app.command("delete")
def delete(report_id: ReportId, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Delete a report."""
    with reporting(), PortalClient(url, token) as client:
        client.json("DELETE", f"{API}/{report_id}")
    typer.echo(f"Report {report_id} deleted.")


@schedules_app.command("list")
def list_schedules(
    all_users: Annotated[bool, typer.Option("--all", help="Admins: everyone's.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Your schedules: id, frequency, when, next run, name."""
    with reporting(), PortalClient(url, token) as client:
        body = as_dict(
            client.get(f"{API}/schedules", params={"all": "true"} if all_users else None),
            "schedules",
        )
    if as_json:
        print_json(body)
        return
    for s in body.get("items", []):
        typer.echo(
            f"{s['id']:>5}  {s['frequency']:<8} {s['time_of_day']} {s['time_zone']:<20} "
            f"next {s['next_run_at'][:16]}  {','.join(s['formats']):<12} {s['name']}"
        )


@schedules_app.command("create")
def create_schedule(
    name: Annotated[str, typer.Option("--name", help="What the reports are called.")],
    frequency: Annotated[
        str, typer.Option("--frequency", help="daily, weekly (Mondays) or monthly (the 1st).")
    ],
    kind: Kind = "job_usage",
    at: Annotated[str, typer.Option("--at", help="Local time of day, HH:MM.")] = "06:00",
    time_zone: Zone = "UTC",
    formats: Formats = None,
    language: Language = "en",
    user: Users = None,
    account: Accounts = None,
    dimension: Dimensions = None,
    measure: Measures = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Generate a report every period, for the period just ended."""
    with reporting():
        spec = build_spec(
            kind,
            None,
            None,
            None,
            language,
            time_zone,
            user,
            account,
            dimension,
            measure,
            datetime.now(UTC),
        )
        body = {
            "name": name,
            "spec": spec,
            "formats": formats or ["pdf"],
            "frequency": frequency,
            "time_of_day": at,
            "time_zone": time_zone,
            "language": language,
        }
        with PortalClient(url, token) as client:
            made = as_dict(client.json("POST", f"{API}/schedules", body=body), "the schedule")
    if as_json:
        print_json(made)
    else:
        typer.echo(f"Schedule {made['id']}: next run {made['next_run_at']}.")


@schedules_app.command("delete")
def delete_schedule(
    schedule_id: Annotated[int, typer.Argument(min=1)],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Stop a schedule (its reports stay until they expire)."""
    with reporting(), PortalClient(url, token) as client:
        client.json("DELETE", f"{API}/schedules/{schedule_id}")
    typer.echo(f"Schedule {schedule_id} deleted.")
