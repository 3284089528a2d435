"""Acting on jobs: submit, cancel/hold/release/requeue/signal, output, efficiency.

Everything here runs as the logged-in user through the run-as boundary, and every
action is written to the audit log with its result.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hpcportal.api.params import ByteCount, Offset
from hpcportal.composition import services_of
from hpcportal.db.session import Database
from hpcportal.dependencies import (
    AdapterDep,
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    RunAsDep,
    SettingsDep,
    SnapshotDep,
    SubmitContextDep,
    strict_query,
)
from hpcportal.services import audit
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.identity import Principal
from hpcportal.services.job_control import ControlResult, control
from hpcportal.services.job_output import (
    OutputChunk,
    Stream,
    check_may_read,
    read_chunk,
)
from hpcportal.services.monitoring import job_efficiency as job_efficiency_service
from hpcportal.services.monitoring.job_efficiency import JobEfficiency
from hpcportal.services.output_stream import HEADERS, OutputStream, resume_offset
from hpcportal.services.submit import submit_job
from hpcportal.services.submit_models import JobRequest, SubmitPreview, SubmitResult

router = APIRouter(tags=["jobs"])


@router.post(
    "/jobs",
    response_model=SubmitResult | SubmitPreview,
    status_code=status.HTTP_201_CREATED,
    dependencies=[strict_query("dry_run")],
    responses={200: {"description": "A dry run's preview, or a replayed submission"}},
)
async def submit(
    request_body: Annotated[JobRequest, Body()],
    who: CurrentUser,
    ctx: SubmitContextDep,
    database: DatabaseDep,
    address: ClientAddress,
    response: Response,
    snapshot: SnapshotDep,
    dry_run: bool = False,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> SubmitResult | SubmitPreview:
    """Submit a job as you: a script plus optional form fields (sbatch options).

    ``dry_run=true`` returns the exact script and argv and ``sbatch --test-only``'s
    verdict without submitting. Send an ``Idempotency-Key`` header to make retries safe:
    the same key returns the first job instead of submitting a second, even when the
    first attempt ended in a 503 (the portal asks Slurm before submitting again).
    """
    try:
        result = await run_in_threadpool(
            submit_job, ctx, request_body, who, idempotency_key=idempotency_key, dry_run=dry_run
        )
    except Exception as exc:
        if not dry_run:
            await audit.log(database, audit.Event.of(who, "job.submit", None, address, exc))
        raise
    if isinstance(result, SubmitPreview):
        response.status_code = status.HTTP_200_OK
        return result
    snapshot.request_refresh(result.job_id)
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    else:
        target = f"job:{result.job_id}"
        await audit.log(database, audit.Event.of(who, "job.submit", target, address))
    return result


class SignalBody(BaseModel):
    signal: str


async def _control(
    who: Principal,
    database: Database,
    address: str,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    job_id: str,
    action: Literal["cancel", "hold", "release", "requeue", "signal"],
    signal: str | None = None,
) -> ControlResult:
    target = f"job:{job_id}"
    try:
        result = await run_in_threadpool(control, adapter.actions, who, job_id, action, signal)
    except Exception as exc:
        await audit.log(database, audit.Event.of(who, f"job.{action}", target, address, exc))
        raise
    snapshot.request_refresh(job_id)
    await audit.log(database, audit.Event.of(who, f"job.{action}", target, address))
    return result


@router.post("/jobs/{job_id}/signal", response_model=ControlResult)
async def send_signal(
    job_id: str,
    body: SignalBody,
    who: CurrentUser,
    database: DatabaseDep,
    address: ClientAddress,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
) -> ControlResult:
    return await _control(who, database, address, adapter, snapshot, job_id, "signal", body.signal)


@router.post("/jobs/{job_id}/{action}", response_model=ControlResult)
async def act(
    job_id: str,
    action: Literal["cancel", "hold", "release", "requeue"],
    who: CurrentUser,
    database: DatabaseDep,
    address: ClientAddress,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
) -> ControlResult:
    """Cancel, hold, release or requeue a job or array task, as you.

    Slurm decides whether you may (your own jobs; any job for Slurm operators and
    administrators); its refusal is a 403 with its reason. The job is read again at
    once, so open pages show its new state within about a second.
    """
    return await _control(who, database, address, adapter, snapshot, job_id, action)


async def _detail(
    job_id: str, who: Principal, snapshot: SnapshotDep, adapter: AdapterDep
) -> job_service.JobDetail:
    job_service.validate_job_id(job_id)
    snap = await snapshot.current()
    meta = SnapshotMeta.of(snapshot.health())
    return await run_in_threadpool(job_service.find_job, snap, adapter, job_id, who, meta)


@router.get(
    "/jobs/{job_id}/output",
    response_model=OutputChunk,
    dependencies=[strict_query("stream", "offset", "limit")],
)
async def output(
    job_id: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    runas: RunAsDep,
    settings: SettingsDep,
    stream: Stream = "stdout",
    offset: Offset = 0,
    limit: ByteCount | None = None,
) -> OutputChunk:
    """A chunk of the job's stdout or stderr, read as you."""
    detail = await _detail(job_id, who, snapshot, adapter)
    size = min(limit or settings.output_chunk_bytes, settings.output_chunk_bytes)
    return await run_in_threadpool(read_chunk, runas, who, detail, stream, offset, size)


@router.get(
    "/jobs/{job_id}/output/stream",
    response_class=StreamingResponse,
    dependencies=[strict_query("stream", "offset")],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow_output(
    job_id: str,
    request: Request,
    who: CurrentUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    runas: RunAsDep,
    settings: SettingsDep,
    stream: Stream = "stdout",
    offset: Offset = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Follow a job's output live (Server-Sent Events) until it has finished.

    Each ``output`` event carries an ``OutputChunk`` as JSON and, as its ``id``, the
    byte offset after it: a browser that reconnects sends it back as ``Last-Event-ID``
    and the stream resumes there. An ``end`` event closes the stream once the job has
    finished and everything was sent; ``: keep-alive`` comments keep a quiet stream
    open. However many streams follow a job, its file is read once per poll.
    """
    start = resume_offset(last_event_id, offset)
    check_may_read(await _detail(job_id, who, snapshot, adapter), who)  # 403 before streaming
    follow = OutputStream(
        hub=services_of(request).live,
        runas=runas,
        who=who,
        job_id=job_id,
        stream=stream,
        position=start,
        chunk_bytes=settings.output_chunk_bytes,
        keepalive=settings.sse_keepalive_seconds,
        detail=partial(_detail, job_id, who, snapshot, adapter),
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(follow.events(), media_type="text/event-stream", headers=HEADERS)


@router.get(
    "/jobs/{job_id}/efficiency",
    response_model=JobEfficiency,
    responses={
        403: {"description": "Another user's job: its figures are for its owner and admins"},
        404: {"description": "No such job in accounting, or accounting hides it from you"},
    },
)
async def job_efficiency(
    job_id: str, who: CurrentUser, adapter: AdapterDep, snapshot: SnapshotDep, request: Request
) -> JobEfficiency:
    """CPU, memory and GPU efficiency of a running or finished job, each figure with
    its source: Prometheus where a per-job exporter measures the job (DCGM exporter's
    ``hpc_job`` for GPUs, cgroup_exporter's ``jobid`` for CPU and memory), else
    ``sstat`` (running jobs' live steps) or ``sacct`` (finished jobs), else null
    with a reason. The accounting fields
    (``cpu_efficiency``, ``memory_efficiency``, ...) are as before. A job ``sacct`` run
    as you would not list (``PrivateData=jobs``) is a 404; another user's job you may
    see is a 403, as for its graphs. Prometheus down is a reason, not an error."""
    snap = await snapshot.current()
    meta = SnapshotMeta.of(snapshot.health())
    base, window, gpus, usage = await run_in_threadpool(
        job_efficiency_service.read, adapter, snap, meta, job_id, who
    )
    monitoring = services_of(request).monitoring
    return await job_efficiency_service.measure(monitoring, base, window, gpus, usage)
