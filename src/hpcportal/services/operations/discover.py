"""Which configured servers answer, how ready they are, and their role (``cluster discover``).

Each server is asked over plain HTTP on its configured address, all at once (a dead
server costs one timeout, not one per server): ``/health`` (the process answers),
``/ready`` (database, Slurm and snapshot freshness: HAProxy's check; it also says the
replica's ``version`` and ``role``: ``leader``, ``follower``, or ``single`` for one
server alone). A replica that reports no role is "unknown" here (``cluster status``
reads the lease itself).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from hpcportal.services.operations.cluster_config import ClusterConfig, PortalServer


@dataclass(frozen=True)
class ReplicaProbe:
    """What one server said (or why it said nothing)."""

    name: str
    url: str
    answers: bool
    ready: bool | None = None
    role: str = "unknown"
    version: str | None = None
    snapshot_age_seconds: float | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0


def server_url(server: PortalServer) -> str:
    host = f"[{server.address}]" if server.address.version == 6 else str(server.address)
    return f"http://{host}:{server.port}"


def role_of(ready: dict[str, Any]) -> str:
    """The role a replica reports in ``/ready``, or "unknown" when it reports none."""
    role = ready.get("role")
    if isinstance(role, str) and role:
        return role
    leader = ready.get("leader")
    if isinstance(leader, bool):
        return "leader" if leader else "follower"
    return "unknown"


def probe(server: PortalServer, timeout: float = 2.0) -> ReplicaProbe:
    """Ask one server; never raises (a server that fails is a result, not an error)."""
    url = server_url(server)
    started = time.monotonic()

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:
            health = client.get("/health")
            if health.status_code != 200:
                error = f"/health answered {health.status_code}"
                return ReplicaProbe(server.name, url, False, error=error, elapsed_ms=elapsed())
            ready = client.get("/ready")
            body = _json_object(ready)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ReplicaProbe(server.name, url, False, error=error, elapsed_ms=elapsed())
    snapshot = body.get("snapshot") if isinstance(body.get("snapshot"), dict) else {}
    age = snapshot.get("age_seconds") if snapshot else None
    version = body.get("version")
    problems = body.get("problems")
    return ReplicaProbe(
        server.name,
        url,
        True,
        ready=ready.status_code == 200 and body.get("ready") is True,
        role=role_of(body),
        version=version if isinstance(version, str) else None,
        snapshot_age_seconds=float(age) if isinstance(age, int | float) else None,
        problems=[str(p) for p in problems] if isinstance(problems, list) else [],
        elapsed_ms=elapsed(),
    )


def discover(config: ClusterConfig, timeout: float = 2.0) -> list[ReplicaProbe]:
    """Every configured server's probe, in the file's order."""
    with ThreadPoolExecutor(max_workers=min(16, len(config.servers))) as pool:
        return list(pool.map(lambda server: probe(server, timeout), config.servers))


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
