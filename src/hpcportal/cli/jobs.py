"""``hpcportal jobs ...``: list, submit, control and read jobs through a portal's HTTP API.

Every command talks to ``--url`` (``HPCPORTAL_URL``) with a personal API token
(``--token`` / ``HPCPORTAL_TOKEN``, made under ``POST /api/v1/auth/api-tokens``) sent
as ``Authorization: Bearer``. Errors from the API (``{"detail": ..., "code": ...}``)
are printed as ``Error: <detail>`` on stderr with exit status 1; usage errors exit
with 2. No traceback is ever shown.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hpcportal.cli.job_table import FINISHED_STATUSES, format_table, job_rows
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

#: Seconds between two polls of ``output --follow``.
FOLLOW_INTERVAL = 2.0
#: Jobs per request when listing (the API's maximum).
PAGE_SIZE = 1000

app = typer.Typer(
    help="Work with jobs through a portal's API (needs an API token).", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]
JobIdArgument = Annotated[str, typer.Argument(help="A job id, like 123 or 123_4.")]


def job_path(job_id: str, *rest: str) -> str:
    job_id = job_id.strip()
    if not job_id:
        usage_error("Give a job id, like 123 or 123_4.")
    return "/".join(["/api/v1/jobs", quote(job_id, safe=""), *rest])


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
