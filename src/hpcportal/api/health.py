"""Liveness, readiness and Prometheus metrics (no login needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from hpcportal import __version__
from hpcportal.api import http_metrics
from hpcportal.composition import services_of
from hpcportal.db.session import Database
from hpcportal.dependencies import DatabaseDep, SnapshotDep
from hpcportal.services.cluster import SnapshotMeta

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    database: str
    slurm: str
    snapshot: SnapshotMeta
    problems: list[str]
    refresh_interval_seconds: float | None = None
    #: Why the snapshot refreshes less often than configured (slurmctld slow or
    #: rate-limiting). Not a problem: every replica sees the same slurmctld, and failing
    #: them all at once would take the portal down over a slow Slurm.
    backoff: str | None = None
    #: With several replicas: ``leader`` or ``follower`` (``single`` alone), this
    #: replica's name, and whether it reaches Redis.
    role: str = "single"
    replica: str | None = None
    redis: str | None = None
    #: With several replicas: what every replica shares (Slurm failing, the snapshot
    #: stale because of it). Said, but it does not make a replica unready: HAProxy
    #: would take them all out at once and answer 503 instead of stale reads.
    shared_problems: list[str] = []
    #: The portal release this replica runs (``cluster discover``/``status`` show it,
    #: so a rolling upgrade can be followed).
    version: str = __version__


@router.get("/health", response_model=Health)
def health() -> Health:
    """The process is alive and answering."""
    return Health(status="ok")


def _database_problem(database: Database) -> str | None:
    try:
        with database.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # report any database failure, whatever the driver raises
        return f"database: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request, database: DatabaseDep, snapshot: SnapshotDep) -> JSONResponse:
    """Ready to serve: the database answers, Slurm answered the last refresh, data is
    fresh. With several replicas (HAProxy checks this): the database and Redis answer,
    the replica has a snapshot and keeps up with the leader's; Slurm's failures and the
    staleness they cause are every replica's alike, so they are ``shared_problems``."""
    problems: list[str] = []
    shared: list[str] = []
    db_problem = await run_in_threadpool(_database_problem, database)
    db_state = "ok" if db_problem is None else "unreachable"
    if db_problem is not None:
        problems.append(db_problem)
    services = services_of(request)
    leadership, replicator = services.leadership, services.replicator
    role, redis_state = "single", None
    if replicator is not None:
        role = "leader" if leadership.is_leader() else "follower"
        redis_state = "ok" if await replicator.bus.ping() else "unreachable"
        if redis_state != "ok":
            problems.append("redis: no answer")
        if (behind := replicator.behind()) is not None:
            problems.append(f"snapshot: {behind:.0f} s behind the leader's")
    # Whose problem a Slurm failure is: one server's own, or all replicas' alike.
    slurm_problems = shared if replicator is not None else problems
    state = snapshot.health()
    slurm_state = "ok" if state.last_error is None and state.taken_at else "unreachable"
    if state.last_error_code == "slurm_unsupported":
        slurm_state = "unsupported"  # a release or JSON format the portal does not read
    if state.last_error:
        slurm_problems.append(f"slurm: {state.last_error}")
    if state.taken_at is None:
        problems.append("snapshot: the cluster has not been read yet")
    elif state.stale:
        slurm_problems.append(f"snapshot: stale, {state.age_seconds:.0f} s old")
    body = Readiness(
        ready=not problems,
        database=db_state,
        slurm=slurm_state,
        snapshot=SnapshotMeta.of(state),
        problems=problems,
        refresh_interval_seconds=state.interval,
        backoff=state.backoff,
        role=role,
        replica=leadership.replica_id if replicator is not None else None,
        redis=redis_state,
        shared_problems=shared,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format: HTTP requests by route, the build, refreshes, their
    duration and interval (with back-offs), Slurm calls, snapshot age. Only for the
    configured networks or the metrics token (``api/http_metrics.py``)."""
    http_metrics.check_access(request, services_of(request).settings)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
