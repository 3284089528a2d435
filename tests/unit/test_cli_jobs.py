"""``hpcportal jobs ...`` against a small stand-in of the portal's API over real HTTP.

The stand-in (a FastAPI app on 127.0.0.1, in a thread) implements only the routes the
CLI uses and records every request, so these tests check what the client sends and
how it shows answers and errors; the real endpoints have their own tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from typer.testing import CliRunner

from hpcportal.cli import job_table, portal_client
from hpcportal.cli import jobs as cli_jobs
from hpcportal.cli.main import app

TOKEN = "hpcp_" + "t" * 40


def _job(job_id: int, user: str, status: str, **extra: Any) -> dict[str, Any]:
    state = {"running": "RUNNING", "queued": "PENDING", "completed": "COMPLETED"}[status]
    job: dict[str, Any] = {
        "id": str(job_id),
        "job_id": job_id,
        "name": f"job-{job_id}",
        "user": user,
        "partition": "normal",
        "state": state,
        "status": status,
        "reason": None,
        "nodes": None,
        "start_time": None,
        "end_time": None,
    }
    job.update(extra)
    return job


def jobs_now() -> list[dict[str, Any]]:
    """The queue as of this moment (run times are relative to now)."""
    now = datetime.now(UTC)
    return [
        _job(
            101,
            "alice",
            "running",
            nodes="node001",
            start_time=(now - timedelta(hours=1, minutes=2, seconds=3)).isoformat(),
        ),
        _job(102, "alice", "queued", reason="Priority", name="a-very-long-job-name-that-goes-on"),
        _job(103, "bob", "queued", reason="Resources"),
        _job(
            104,
            "alice",
            "completed",
            nodes="node002",
            start_time=(now - timedelta(days=2)).isoformat(),
            end_time=(now - timedelta(days=1)).isoformat(),
        ),
    ]


@dataclass
class Api:
    """What the stand-in answers, and what it was sent."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[str, int] = field(default_factory=dict)
    drop_next_submit: bool = False
    output: str = ""
    chunk_size: int = 1 << 20
    job_statuses: list[str] = field(default_factory=list)
    output_on_status_check: list[str] = field(default_factory=list)
    send_finished_flag: bool = False
    job_missing: bool = False

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


def build_api(api: Api) -> Any:
    web = FastAPI()

    @web.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        body = await request.body()
        api.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": json.loads(body) if body else None,
            }
        )
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse(
                {"detail": "This API token is not valid.", "code": "not_authenticated"}, 401
            )
        return await call_next(request)

    @web.get("/api/v1/me")
    async def me() -> dict[str, Any]:
        return {"user": "alice", "uid": 1001, "groups": ["research"], "role": "user"}

    @web.get("/api/v1/jobs")
    async def list_jobs(request: Request) -> dict[str, Any]:
        q = request.query_params
        items = jobs_now()
        if q.get("user"):
            items = [j for j in items if j["user"] in q["user"].split(",")]
        if q.get("state"):
            items = [j for j in items if j["status"] in q["state"].split(",")]
        limit, page = int(q.get("limit", 100)), int(q.get("page", 1))
        return {
            "items": items[(page - 1) * limit : page * limit],
            "total": len(items),
            "page": page,
            "limit": limit,
        }

    @web.post("/api/v1/jobs")
    async def submit(request: Request) -> JSONResponse:
        body = await request.json()
        if "bad" in body.get("script", ""):
            return JSONResponse(
                {"detail": "time_limit: use minutes or HH:MM:SS", "code": "invalid_input"}, 422
            )
        conflicts = []
        if body.get("partition") == "gpu":
            conflicts.append({"option": "partition", "message": "#SBATCH says normal"})
        if request.query_params.get("dry_run") == "true":
            accepted = "refuse" not in body["script"]
            return JSONResponse(
                {
                    "script": body["script"],
                    "argv": ["sbatch", "--parsable", "--job-name=x y"],
                    "conflicts": conflicts,
                    "verdict": {
                        "accepted": accepted,
                        "message": "would start" if accepted else "Requested node config",
                        "start_estimate": "2026-11-21T12:00:00Z" if accepted else None,
                        "nodes": "node001" if accepted else None,
                    },
                }
            )
        key = request.headers.get("idempotency-key", "")
        replayed = key in api.submissions
        job_id = api.submissions.setdefault(key, 5000 + len(api.submissions))
        return JSONResponse(
            {
                "job_id": job_id,
                "script": body["script"],
                "argv": ["sbatch"],
                "conflicts": conflicts,
                "replayed": replayed,
            },
            200 if replayed else 201,
        )

    @web.post("/api/v1/jobs/{job_id}/{action}")
    async def control(job_id: str, action: str, request: Request) -> JSONResponse:
        if job_id == "999":
            return JSONResponse(
                {"detail": "Invalid job id specified", "code": "slurm_invalid_request"}, 400
            )
        body = await request.body()
        signal = json.loads(body)["signal"] if body else None
        message = f"Sent SIG{signal} to job {job_id}." if signal else f"Job {job_id} {action}ed."
        return JSONResponse({"job_id": job_id, "action": action, "ok": True, "message": message})

    @web.get("/api/v1/jobs/{job_id}/output")
    async def output(job_id: str, stream: str = "stdout", offset: int = 0) -> dict[str, Any]:
        data = api.output[offset : offset + api.chunk_size]
        next_offset = offset + len(data)
        chunk: dict[str, Any] = {
            "path": f"/home/alice/slurm-{job_id}.{'err' if stream == 'stderr' else 'out'}",
            "offset": offset,
            "next_offset": next_offset,
            "data": data,
            "eof": next_offset >= len(api.output),
            "size": len(api.output),
        }
        if api.send_finished_flag:
            chunk["finished"] = api.job_statuses[0] == "completed"
            _advance(api)
        return chunk

    @web.get("/api/v1/jobs/{job_id}")
    async def job(job_id: str) -> JSONResponse:
        if api.job_missing:
            return JSONResponse({"detail": "No job 7.", "code": "not_found"}, 404)
        status = api.job_statuses[0]
        _advance(api)
        return JSONResponse(
            {"job": {"id": job_id, "status": status}, "source": "snapshot", "snapshot": {}}
        )

    @web.get("/api/v1/broken")
    async def broken() -> PlainTextResponse:
        return PlainTextResponse("upstream down", 502)

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        """Drop the connection of one submission after the server has processed it."""
        is_submit = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/api/v1/jobs"
        )
        if is_submit and api.drop_next_submit:
            api.drop_next_submit = False
            sent_start = False

            async def send_then_drop(message: dict[str, Any]) -> None:
                nonlocal sent_start
                if message["type"] == "http.response.start":
                    sent_start = True
                    await send(message)
                    return
                raise ConnectionAbortedError("dropped by the test")

            try:
                await web(scope, receive, send_then_drop)
            except ConnectionAbortedError:
                assert sent_start
                raise
            return
        await web(scope, receive, send)

    return asgi


def _advance(api: Api) -> None:
    if api.output_on_status_check:
        api.output += api.output_on_status_check.pop(0)
    if len(api.job_statuses) > 1:
        api.job_statuses.pop(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StandIn:
    url: str
    api: Api
    asgi: Any = None

    def reset(self) -> Api:
        """A fresh stand-in state (and app) for the next test."""
        self.api = Api()
        self.asgi = build_api(self.api)
        return self.api


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    holder = StandIn(url="", api=Api())
    holder.reset()

    async def app_of_the_moment(scope: Any, receive: Any, send: Any) -> None:
        await holder.asgi(scope, receive, send)

    port = _free_port()
    config = uvicorn.Config(
        app_of_the_moment, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="api-stand-in", daemon=True)
    thread.start()
    holder.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "the stand-in API did not start"
        time.sleep(0.02)
    yield holder
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def api(server: StandIn, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setattr(cli_jobs, "FOLLOW_INTERVAL", 0.01)
    monkeypatch.setattr(portal_client, "RETRY_DELAY", 0.01)
    return server.reset()


@pytest.fixture
def run(server: StandIn, api: Api) -> Any:
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
        environment = {"HPCPORTAL_URL": server.url, "HPCPORTAL_TOKEN": TOKEN, **(env or {})}
        return runner.invoke(app, ["jobs", *args], env=environment, input=stdin)

    return invoke


def _no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- list ---------------------------------------------------------------------------------


def test_list_shows_own_jobs_by_default(run: Any, api: Api) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "JOBID",
        "NAME",
        "USER",
        "PARTITION",
        "STATE",
        "TIME",
        "NODES(REASON)",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["101", "102", "104"]
    running = lines[1].split()
    assert running[4] == "RUNNING" and running[6] == "node001"
    assert running[5] in ("1:02:03", "1:02:04", "1:02:05")
    assert lines[2].split()[-1] == "(Priority)"
    assert "a-very-long-job-name-th…" in lines[2]
    assert lines[3].split()[-2:] == ["1-00:00:00", "node002"]
    assert api.calls("GET", "/api/v1/me")
    listing = api.calls("GET", "/api/v1/jobs")[0]
    assert listing["query"]["user"] == "alice"
    assert listing["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_list_filters_and_json(run: Any, api: Api) -> None:
    result = run("list", "--user", "bob", "--user", "alice", "--state", "queued", "--json")
    assert result.exit_code == 0, result.output
    assert [j["id"] for j in json.loads(result.stdout)] == ["102", "103"]
    query = api.calls("GET", "/api/v1/jobs")[0]["query"]
    assert (query["user"], query["state"]) == ("bob,alice", "queued")
    assert not api.calls("GET", "/api/v1/me")


def test_list_all_users_sends_no_user_filter(run: Any, api: Api) -> None:
    result = run("list", "--all-users", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 4
    assert "user" not in api.calls("GET", "/api/v1/jobs")[0]["query"]


def test_list_pages_through_everything(run: Any, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_jobs, "PAGE_SIZE", 1)
    result = run("list", "--all-users", "--json")
    assert len(json.loads(result.stdout)) == 4
    assert [c["query"]["page"] for c in api.calls("GET", "/api/v1/jobs")] == ["1", "2", "3", "4"]


def test_user_and_all_users_exclude_each_other(run: Any, api: Api) -> None:
    result = run("list", "--user", "bob", "--all-users")
    assert result.exit_code == 2
    assert "Error: --user and --all-users" in result.stderr
    assert api.requests == []


# --- submit --------------------------------------------------------------------------------


def test_submit_sends_the_job_request(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH -n 1\nhostname\n")
    result = run(
        "submit", str(script), "--name", "demo", "--partition", "normal", "--account",
        "research", "--qos", "high", "--nodes", "2", "--ntasks", "4", "--cpus-per-task", "2",
        "--mem", "4G", "--gpus", "1", "--time", "1:00:00", "--array", "0-9%2",
        "--dependency", "afterok:1", "--chdir", "/home/alice", "--output", "/tmp/o-%j",
        "--error", "/tmp/e-%j", "--env", "A=1", "--env", "B=x=y",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "Submitted batch job 5000\n"
    call = api.calls("POST", "/api/v1/jobs")[0]
    assert call["json"] == {
        "script": "#!/bin/bash\n#SBATCH -n 1\nhostname\n",
        "name": "demo",
        "partition": "normal",
        "account": "research",
        "qos": "high",
        "nodes": 2,
        "ntasks": 4,
        "cpus_per_task": 2,
        "memory": "4G",
        "gpus": 1,
        "time_limit": "1:00:00",
        "array": "0-9%2",
        "dependency": "afterok:1",
        "work_dir": "/home/alice",
        "output": "/tmp/o-%j",
        "error": "/tmp/e-%j",
        "environment": {"A": "1", "B": "x=y"},
    }
    assert call["query"] == {}
    assert len(call["headers"]["idempotency-key"]) == 36  # a UUID


def test_each_submit_gets_a_fresh_key_unless_given(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    assert run("submit", str(script)).stdout == "Submitted batch job 5000\n"
    assert run("submit", str(script)).stdout == "Submitted batch job 5001\n"
    first = run("submit", str(script), "--idempotency-key", "nightly-1")
    again = run("submit", str(script), "--idempotency-key", "nightly-1")
    assert first.stdout == again.stdout == "Submitted batch job 5002\n"
    assert "no new job was submitted" in again.stderr
    keys = [c["headers"]["idempotency-key"] for c in api.calls("POST", "/api/v1/jobs")]
    assert len(set(keys[:2])) == 2 and keys[2:] == ["nightly-1", "nightly-1"]


def test_a_dropped_submission_is_retried_with_the_same_key(
    run: Any, api: Api, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    api.drop_next_submit = True
    result = run("submit", str(script))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Submitted batch job 5000\n"
    calls = api.calls("POST", "/api/v1/jobs")
    assert len(calls) == 2
    assert calls[0]["headers"]["idempotency-key"] == calls[1]["headers"]["idempotency-key"]
    assert api.submissions == {calls[0]["headers"]["idempotency-key"]: 5000}  # one job only
    assert "trying once more" in result.stderr


def test_submit_reads_stdin_and_warns_about_conflicts(run: Any, api: Api) -> None:
    result = run("submit", "-", "--partition", "gpu", stdin="#!/bin/bash\nhostname\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Submitted batch job 5000\n"
    assert "Warning: #SBATCH says normal" in result.stderr
    assert api.calls("POST", "/api/v1/jobs")[0]["json"]["script"] == "#!/bin/bash\nhostname\n"


def test_submit_json(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    result = run("submit", str(script), "--json")
    assert json.loads(result.stdout)["job_id"] == 5000


def test_dry_run(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    result = run("submit", str(script), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Slurm would accept this job" in result.stdout
    assert "Estimated start: 2026-11-21T12:00:00Z on node001" in result.stdout
    assert "Command: sbatch --parsable '--job-name=x y'" in result.stdout
    assert api.calls("POST", "/api/v1/jobs")[0]["query"] == {"dry_run": "true"}
    assert api.submissions == {}


def test_refused_dry_run_exits_1(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("refuse me\n")
    result = run("submit", str(script), "--dry-run", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"]["accepted"] is False
    assert "Error: Slurm would not accept this job: Requested node config" in result.stderr


def test_submit_shows_the_apis_error(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("bad\n")
    result = run("submit", str(script))
    assert result.exit_code == 1
    assert result.stderr == "Error: time_limit: use minutes or HH:MM:SS\n"
    assert result.stdout == ""
    _no_traceback(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/job.sh"], "Error: Cannot read /nonexistent/job.sh"),
        (["JOB", "--env", "=1"], "Error: --env takes NAME=VALUE"),
        (["JOB", "--env", "SURELY_NOT_SET_ANYWHERE"], "is not set here"),
    ],
)
def test_submit_usage_errors_exit_2(
    run: Any, api: Api, tmp_path: Path, args: list[str], message: str
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    result = run("submit", *[str(script) if a == "JOB" else a for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_env_name_alone_takes_the_local_value(run: Any, api: Api, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("hostname\n")
    result = run("submit", str(script), "--env", "MY_SETTING", env={"MY_SETTING": "42"})
    assert result.exit_code == 0, result.output
    assert api.calls("POST", "/api/v1/jobs")[0]["json"]["environment"] == {"MY_SETTING": "42"}


# --- control -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "hold", "release", "requeue"])
def test_control_commands(run: Any, api: Api, action: str) -> None:
    result = run(action, "123_4")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Job 123_4 {action}ed.\n"
    assert api.calls("POST", f"/api/v1/jobs/123_4/{action}")


def test_cancel_with_a_signal(run: Any, api: Api) -> None:
    result = run("cancel", "123", "--signal", "USR1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Sent SIGUSR1 to job 123.\n"
    assert api.calls("POST", "/api/v1/jobs/123/signal")[0]["json"] == {"signal": "USR1"}
    assert not api.calls("POST", "/api/v1/jobs/123/cancel")


def test_control_errors(run: Any, api: Api) -> None:
    result = run("cancel", "999")
    assert (result.exit_code, result.stderr) == (1, "Error: Invalid job id specified\n")
    _no_traceback(result)


# --- output --------------------------------------------------------------------------------


def test_output_reads_everything_in_chunks(run: Any, api: Api) -> None:
    api.output = "hello\nworld\n"
    api.chunk_size = 5
    result = run("output", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello\nworld\n"
    offsets = [c["query"]["offset"] for c in api.calls("GET", "/api/v1/jobs/7/output")]
    assert offsets == ["0", "5", "10"]
    assert api.calls("GET", "/api/v1/jobs/7/output")[0]["query"]["stream"] == "stdout"
    assert not api.calls("GET", "/api/v1/jobs/7")


def test_output_stderr(run: Any, api: Api) -> None:
    api.output = "oops\n"
    result = run("output", "7", "--stderr")
    assert result.stdout == "oops\n"
    assert api.calls("GET", "/api/v1/jobs/7/output")[0]["query"]["stream"] == "stderr"


def test_follow_polls_until_the_job_has_finished(run: Any, api: Api) -> None:
    api.output = "line1\n"
    api.job_statuses = ["running", "completed"]
    # Output appears while the job runs, and some just before it ends.
    api.output_on_status_check = ["line2\n", "line3\n"]
    result = run("output", "7", "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout == "line1\nline2\nline3\n"
    offsets = [c["query"]["offset"] for c in api.calls("GET", "/api/v1/jobs/7/output")]
    assert offsets == ["0", "6", "12"]  # the last read, after "completed", finds line3
    assert len(api.calls("GET", "/api/v1/jobs/7")) == 2


def test_follow_uses_the_finished_flag_when_the_api_sends_it(run: Any, api: Api) -> None:
    api.output = "a\n"
    api.send_finished_flag = True
    api.job_statuses = ["running", "completed"]
    result = run("output", "7", "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout == "a\n"
    assert not api.calls("GET", "/api/v1/jobs/7")


def test_follow_stops_when_the_job_is_gone(run: Any, api: Api) -> None:
    api.output = "x\n"
    api.job_missing = True
    result = run("output", "7", "--follow")
    assert (result.exit_code, result.stdout) == (0, "x\n")


# --- errors and configuration --------------------------------------------------------------


def test_missing_token_is_a_usage_error(run: Any, api: Api) -> None:
    result = run("list", env={"HPCPORTAL_TOKEN": ""})
    assert result.exit_code == 2
    assert "Error: No API token: pass --token or set HPCPORTAL_TOKEN." in result.stderr
    assert api.requests == []


def test_wrong_token_shows_the_apis_detail(run: Any, api: Api) -> None:
    result = run("list", "--token", "hpcp_wrong")
    assert (result.exit_code, result.stderr) == (1, "Error: This API token is not valid.\n")
    assert api.requests[0]["headers"]["authorization"] == "Bearer hpcp_wrong"


def test_options_beat_the_environment(run: Any, server: StandIn, api: Api) -> None:
    result = run("list", "--url", server.url, "--token", TOKEN, env={"HPCPORTAL_URL": "nope"})
    assert result.exit_code == 0, result.output


def test_bad_url_is_a_usage_error(run: Any) -> None:
    result = run("list", "--url", "127.0.0.1:8080")
    assert result.exit_code == 2
    assert "must start with http:// or https://" in result.stderr


def test_connection_refused_names_the_url(run: Any) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = run("list", "--url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: Cannot connect to the portal at {url}")
    _no_traceback(result)


def test_a_non_api_answer_is_described(server: StandIn, api: Api) -> None:
    with (
        portal_client.PortalClient(server.url, TOKEN) as client,
        pytest.raises(portal_client.CliError) as caught,
    ):
        client.get("/api/v1/broken")
    assert caught.value.message == (
        f"HTTP 502 Bad Gateway from the portal at {server.url}: upstream down"
    )
    assert caught.value.status == 502


def test_a_timeout_is_described(server: StandIn) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = cli_jobs.PortalClient(
        server.url, TOKEN, timeout=3, transport=httpx.MockTransport(hang)
    )
    with client, pytest.raises(cli_jobs.CliError, match=r"did not answer within 3 s"):
        client.get("/api/v1/me")


def test_squeue_style_durations() -> None:
    assert job_table.format_duration(59) == "0:59"
    assert job_table.format_duration(3600 + 62) == "1:01:02"
    assert job_table.format_duration(2 * 86400 + 5) == "2-00:00:05"
    assert job_table.format_duration(-5) == "0:00"
