"""Several replicas: Redis for the shared snapshot, the database lease for the leader.

Set ``redis_url`` (or Sentinels) and the portal runs as one of several replicas: one
leader reads Slurm and runs the background work, the others follow. Used by ``ha/``
(``wiring.py``, ``leadership.py``), ``hpcportal check`` and ``cluster status``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReplicaSettings(BaseModel):
    """Redis and the leader lease, when several replicas serve one portal."""

    # Several replicas (ha/): Redis for the shared snapshot, the database for the leader
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every replica. Unset: one server alone "
        "(it reads Slurm itself and runs all background work, nothing is shared).",
    )
    redis_sentinels: list[str] = Field(
        default_factory=list,
        description="host:port of Redis Sentinels; when set, Redis is their current master "
        "named redis_sentinel_master (and redis_url is not needed).",
    )
    redis_sentinel_master: str = Field(
        default="mymaster", description="The master's name in the Sentinels' configuration."
    )
    redis_prefix: str = Field(
        default="hpcportal:",
        min_length=1,
        max_length=64,
        description="Start of every Redis key and channel, so portals can share one Redis.",
    )
    leader_lease_seconds: float = Field(
        default=6.0,
        ge=1.0,
        le=60.0,
        description="The leader's lease in the database; a dead leader is replaced after at "
        "most this long (plus one renewal period, a third of it).",
    )
    replica_id: str | None = Field(
        default=None,
        max_length=255,
        description="This replica's name in the lease and in `cluster status`; unset: "
        "hostname-pid.",
    )

    @property
    def replicated(self) -> bool:
        """Several replicas share Redis: one leader reads Slurm, the others follow."""
        return bool(self.redis_url or self.redis_sentinels)
