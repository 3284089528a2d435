"""``hpcportal jobs ...``: list, submit, control and read jobs through a portal's HTTP API.

Every command talks to ``--url`` (``HPCPORTAL_URL``) with a personal API token
(``--token`` / ``HPCPORTAL_TOKEN``, made under ``POST /api/v1/auth/api-tokens``) sent
as ``Authorization: Bearer``. Errors from the API (``{"detail": ..., "code": ...}``)
are printed as ``Error: <detail>`` on stderr with exit status 1; usage errors exit
with 2. No traceback is ever shown.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds to wait for one answer (a submission runs sbatch on the portal's side).
TIMEOUT = 60.0
#: Seconds between two polls of ``output --follow``.
FOLLOW_INTERVAL = 2.0
#: Seconds before the one retry of a request whose connection broke.
RETRY_DELAY = 0.5
#: Jobs per request when listing (the API's maximum).
PAGE_SIZE = 1000
FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout"})
PENDING_STATUSES = frozenset({"queued", "queued_held"})
NAME_WIDTH = 24

app = typer.Typer(
    help="Work with jobs through a portal's API (needs an API token).", no_args_is_help=True
)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="HPCPORTAL_URL", help="The portal's address.", rich_help_panel="Portal"
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HPCPORTAL_TOKEN",
        help="A personal API token (hpcp_...), made in the portal. Prefer the "
        "environment variable: other users can see command lines.",
        show_default=False,
        rich_help_panel="Portal",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]
JobIdArgument = Annotated[str, typer.Argument(help="A job id, like 123 or 123_4.")]


# --- Talking to the portal -----------------------------------------------------------


class CliError(Exception):
    """Something to tell the user, the exit status to leave with, and for an answer of
    the API its HTTP status."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


def usage_error(message: str) -> NoReturn:
    raise CliError(message, exit_code=2)


@contextmanager
def reporting() -> Iterator[None]:
    """Turn every expected failure into ``Error: ...`` on stderr and an exit status."""
    try:
        yield
    except CliError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(130) from None


def api_error_message(response: httpx.Response, url: str) -> str:
    """The API's ``detail``, or a short description of a non-API answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):  # FastAPI's default validation shape
        parts = [
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        ]
        return "; ".join(parts)
    text = " ".join(response.text.split())[:200]
    reason = response.reason_phrase or "error"
    return f"HTTP {response.status_code} {reason} from the portal at {url}" + (
        f": {text}" if text else "."
    )


def describe_transport_error(exc: httpx.TransportError, url: str, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection refused"
        return (
            f"Cannot connect to the portal at {url} ({reason}). Is it running? "
            "Set --url or HPCPORTAL_URL to its address."
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"The portal at {url} did not answer within {timeout:g} s."
    return f"The connection to the portal at {url} failed: {exc or type(exc).__name__}."


class PortalClient:
    """A thin client of the portal's API; every failure becomes a ``CliError``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            usage_error(f"--url must start with http:// or https://, not {url!r}.")
        if not token:
            usage_error("No API token: pass --token or set HPCPORTAL_TOKEN.")
        self.url = url
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 0,
    ) -> httpx.Response:
        """Send one request; on a dropped or refused connection try ``retries`` more times
        (the caller decides when that is safe), then fail with a clear message."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, params=params, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt < retries:
                    attempt += 1
                    if not isinstance(exc, httpx.ConnectError):  # a refusal needs no story
                        typer.echo(
                            f"The connection to {self.url} broke "
                            f"({exc or type(exc).__name__}); trying once more.",
                            err=True,
                        )
                    time.sleep(RETRY_DELAY)
                    continue
                raise CliError(describe_transport_error(exc, self.url, self.timeout)) from None
            except httpx.HTTPError as exc:
                raise CliError(f"Request to {self.url} failed: {exc}") from None
            if response.status_code >= 400:
                raise CliError(api_error_message(response, self.url), status=response.status_code)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"The portal at {self.url} answered HTTP {response.status_code} with "
                "something that is not JSON; is --url the portal's address?"
            ) from None

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        # Reading is safe to repeat, so one dropped connection is retried.
        return self.json("GET", path, params=params, retries=1)


def job_path(job_id: str, *rest: str) -> str:
    job_id = job_id.strip()
    if not job_id:
        usage_error("Give a job id, like 123 or 123_4.")
    return "/".join(["/api/v1/jobs", quote(job_id, safe=""), *rest])


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CliError(f"Unexpected answer from the portal for {what}.")
    return value


# --- list ------------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """Like squeue's TIME: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def job_time(job: Mapping[str, Any], now: datetime) -> str:
    """Run time so far (or in all, for a finished job); ``0:00`` while queued."""
    start = _parse_time(job.get("start_time"))
    if job.get("status") in PENDING_STATUSES or start is None or start > now:
        return "0:00"
    end = _parse_time(job.get("end_time"))
    finished = job.get("status") in FINISHED_STATUSES
    until = end if finished and end is not None and end >= start else now
    return format_duration((until - start).total_seconds())


def nodes_or_reason(job: Mapping[str, Any]) -> str:
    if job.get("status") in PENDING_STATUSES:
        return f"({job.get('reason') or 'None'})"
    return str(job.get("nodes") or "")


def job_rows(jobs: Sequence[Mapping[str, Any]], now: datetime) -> list[list[str]]:
    rows = []
    for job in jobs:
        name = str(job.get("name") or "")
        if len(name) > NAME_WIDTH:
            name = name[: NAME_WIDTH - 1] + "…"
        rows.append(
            [
                str(job.get("id", job.get("job_id", ""))),
                name,
                str(job.get("user") or ""),
                str(job.get("partition") or ""),
                str(job.get("state") or ""),
                job_time(job, now),
                nodes_or_reason(job),
            ]
        )
    return rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = []
    for cells in [list(header), *rows]:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def fetch_jobs(client: PortalClient, filters: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every matching job, page by page."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        body = as_dict(
            client.get("/api/v1/jobs", params={**filters, "limit": PAGE_SIZE, "page": page}),
            "the job list",
        )
        batch = body.get("items") or []
        items.extend(batch)
        if not batch or len(items) >= int(body.get("total", 0)):
            return items
        page += 1


def _csv(values: Sequence[str] | None) -> str:
    return ",".join(v.strip() for value in values or () for v in value.split(",") if v.strip())


@app.command("list")
def list_jobs(
    user: Annotated[
        list[str] | None,
        typer.Option("--user", "-u", help="Jobs of this user (repeat or comma-separate)."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-t", help="Only these states: running, queued, PENDING... (or a,b)."
        ),
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", "-a", help="Everyone's jobs.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """List jobs in the queue (your own unless --user or --all-users), like squeue."""
    with reporting():
        users = _csv(user)
        if users and all_users:
            usage_error("--user and --all-users cannot be used together.")
        with PortalClient(url, token) as client:
            filters: dict[str, str] = {}
            if not all_users:
                if not users:
                    me = as_dict(client.get("/api/v1/me"), "/me")
                    users = str(me.get("user") or "")
                filters["user"] = users
            states = _csv(state)
            if states:
                filters["state"] = states
            jobs = fetch_jobs(client, filters)
        if as_json:
            print_json(jobs)
            return
        header = ["JOBID", "NAME", "USER", "PARTITION", "STATE", "TIME", "NODES(REASON)"]
        typer.echo(format_table(header, job_rows(jobs, datetime.now(UTC))))


# --- submit ----------------------------------------------------------------------------


def read_script(script_file: str) -> str:
    if script_file == "-":
        return sys.stdin.read()
    try:
        with open(script_file, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        usage_error(f"{script_file} is not a UTF-8 text file.")
    except OSError as exc:
        usage_error(f"Cannot read {script_file}: {exc.strerror or exc}.")


def parse_environment(values: Sequence[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` pairs; a bare ``NAME`` takes its value from this environment."""
    environment: dict[str, str] = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not name:
            usage_error(f"--env takes NAME=VALUE, not {item!r}.")
        if not sep:
            if name not in os.environ:
                usage_error(f"--env {name}: {name} is not set here; give NAME=VALUE.")
            value = os.environ[name]
        environment[name] = value
    return environment


def print_preview(preview: Mapping[str, Any]) -> None:
    verdict = preview.get("verdict") or {}
    accepted = bool(verdict.get("accepted"))
    typer.echo(
        "Dry run: Slurm would accept this job."
        if accepted
        else "Dry run: Slurm would NOT accept this job."
    )
    if verdict.get("message"):
        typer.echo(f"  {verdict['message']}")
    if verdict.get("start_estimate"):
        where = f" on {verdict['nodes']}" if verdict.get("nodes") else ""
        typer.echo(f"  Estimated start: {verdict['start_estimate']}{where}")
    argv = preview.get("argv")
    if isinstance(argv, list):
        typer.echo(f"Command: {shlex.join(str(a) for a in argv)}")


def warn_conflicts(answer: Mapping[str, Any]) -> None:
    for conflict in answer.get("conflicts") or ():
        message = conflict.get("message") if isinstance(conflict, dict) else None
        typer.echo(f"Warning: {message or conflict}", err=True)


@app.command()
def submit(
    script_file: Annotated[
        str, typer.Argument(help="The batch script ('-' reads standard input).")
    ],
    name: Annotated[str | None, typer.Option("--name", "-J", help="--job-name")] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    account: Annotated[str | None, typer.Option("--account", "-A")] = None,
    qos: Annotated[str | None, typer.Option("--qos", "-q")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", "-N")] = None,
    ntasks: Annotated[int | None, typer.Option("--ntasks", "-n")] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", "-c")] = None,
    mem: Annotated[str | None, typer.Option("--mem", help="Memory per node, e.g. 4G.")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", "-G")] = None,
    time_limit: Annotated[
        str | None, typer.Option("--time", "-t", help="e.g. 30, 1:00:00, 2-00")
    ] = None,
    array: Annotated[str | None, typer.Option("--array", help="e.g. 0-9%2")] = None,
    dependency: Annotated[
        str | None, typer.Option("--dependency", "-d", help="e.g. afterok:123")
    ] = None,
    chdir: Annotated[
        str | None, typer.Option("--chdir", "-D", help="Working directory (absolute).")
    ] = None,
    output: Annotated[str | None, typer.Option("--output", "-o")] = None,
    error: Annotated[str | None, typer.Option("--error", "-e")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="NAME=VALUE for the job (repeatable; NAME alone: from here)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would run and Slurm's verdict.")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Makes resubmitting safe: the same key returns the first job. "
            "Default: a new key for each invocation (kept for its own retry).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a batch script, like sbatch (warns where options and #SBATCH lines differ)."""
    with reporting():
        fields: dict[str, Any] = {
            "name": name,
            "partition": partition,
            "account": account,
            "qos": qos,
            "nodes": nodes,
            "ntasks": ntasks,
            "cpus_per_task": cpus_per_task,
            "memory": mem,
            "gpus": gpus,
            "time_limit": time_limit,
            "array": array,
            "dependency": dependency,
            "work_dir": chdir,
            "output": output,
            "error": error,
        }
        environment = parse_environment(env)
        body: dict[str, Any] = {"script": read_script(script_file)}
        body.update({key: value for key, value in fields.items() if value is not None})
        if environment:
            body["environment"] = environment
        key = idempotency_key or str(uuid.uuid4())
        with PortalClient(url, token) as client:
            answer = as_dict(
                client.json(
                    "POST",
                    "/api/v1/jobs",
                    params={"dry_run": "true"} if dry_run else None,
                    body=body,
                    headers={"Idempotency-Key": key},
                    # The same key makes a second attempt return the first job, not a new one.
                    retries=1,
                ),
                "the submission",
            )
        if as_json:
            print_json(answer)
        if dry_run:
            if not as_json:
                print_preview(answer)
                warn_conflicts(answer)
            if not (answer.get("verdict") or {}).get("accepted"):
                message = (answer.get("verdict") or {}).get("message") or "no reason given"
                raise CliError(f"Slurm would not accept this job: {message}")
            return
        if as_json:
            return
        warn_conflicts(answer)
        if answer.get("replayed"):
            typer.echo(
                f"Note: Idempotency-Key {key} was used before; this is that submission, "
                "no new job was submitted.",
                err=True,
            )
        typer.echo(f"Submitted batch job {answer.get('job_id')}")


# --- cancel, hold, release, requeue -------------------------------------------------------


def _control(url: str, token: str | None, job_id: str, action: str, done: str) -> None:
    with reporting(), PortalClient(url, token) as client:
        answer = client.json("POST", job_path(job_id, action))
    message = answer.get("message") if isinstance(answer, dict) else None
    typer.echo(message or f"Job {job_id} {done}.")


@app.command()
def cancel(
    job_id: JobIdArgument,
    signal: Annotated[
        str | None,
        typer.Option("--signal", "-s", help="Send this signal (TERM, USR1...) instead."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Cancel a job (or send it a signal), like scancel."""
    if signal is None:
        _control(url, token, job_id, "cancel", "cancelled")
        return
    with reporting(), PortalClient(url, token) as client:
        answer = client.json("POST", job_path(job_id, "signal"), body={"signal": signal})
    message = answer.get("message") if isinstance(answer, dict) else None
    typer.echo(message or f"Sent {signal} to job {job_id}.")


@app.command()
def hold(job_id: JobIdArgument, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Hold a queued job, like scontrol hold."""
    _control(url, token, job_id, "hold", "held")


@app.command()
def release(job_id: JobIdArgument, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Release a held job, like scontrol release."""
    _control(url, token, job_id, "release", "released")


@app.command()
def requeue(job_id: JobIdArgument, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Requeue a job, like scontrol requeue."""
    _control(url, token, job_id, "requeue", "requeued")


# --- output ------------------------------------------------------------------------------


def job_finished(client: PortalClient, job_id: str, chunk: Mapping[str, Any]) -> bool:
    """Whether the job has ended (so no more output will come)."""
    if isinstance(chunk.get("finished"), bool):
        return bool(chunk["finished"])
    try:
        detail = as_dict(client.get(job_path(job_id)), "the job")
    except CliError as exc:
        if exc.status == 404:
            return True  # forgotten by Slurm and accounting alike: nothing more to come
        raise
    if detail.get("source") == "accounting":
        return True
    job = detail.get("job") or {}
    return isinstance(job, dict) and job.get("status") in FINISHED_STATUSES


@app.command("output")
def show_output(
    job_id: JobIdArgument,
    stderr: Annotated[bool, typer.Option("--stderr", help="Read stderr, not stdout.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job has finished.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print a job's output file (read as you by the portal); --follow it like tail -f."""
    stream = "stderr" if stderr else "stdout"
    with reporting(), PortalClient(url, token) as client:
        offset = 0
        finishing = False
        while True:
            chunk = as_dict(
                client.get(job_path(job_id, "output"), params={"stream": stream, "offset": offset}),
                "the output",
            )
            if int(chunk.get("size", 0)) < offset:
                offset = 0  # truncated (the job started or was requeued): from its start
                continue
            data = chunk.get("data") or ""
            if data:
                typer.echo(data, nl=False)
            offset = int(chunk.get("next_offset", offset + len(data.encode())))
            if not chunk.get("eof"):
                continue  # more is there already
            if not follow or finishing:
                return
            if job_finished(client, job_id, chunk):
                finishing = True  # one more read for what was written meanwhile
                continue
            sys.stdout.flush()
            time.sleep(FOLLOW_INTERVAL)
