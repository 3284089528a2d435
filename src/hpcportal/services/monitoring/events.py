"""Slurm events to mark on the graphs' time axis.

- a job's: its start and, once it ended, its end (from the snapshot or accounting,
  whichever answered the job's page);
- a node's: the admin changes applied to it through the portal (drain, down, resume,
  reboot, from ``admin_changes``) and, while it is drained or down, the time Slurm set
  its current reason (``reason_time``), within the graph's window.

Nothing here asks Slurm or Prometheus. A reason an admin typed is shown to admins only
(Slurm shows a node's reason to everyone, but the portal's record also keeps who did
it and why in their words).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select

from hpcportal.db.models import AdminChange
from hpcportal.db.session import Database
from hpcportal.slurm import hostlist
from hpcportal.slurm.models import Node
from hpcportal.slurm.states import NodeStatus

#: The most admin changes read for one node's window.
MOST = 200
_DOWN = {NodeStatus.DRAINED, NodeStatus.DRAINING, NodeStatus.DOWN}


class GraphEvent(BaseModel):
    #: Unix seconds.
    at: float
    #: ``job_start``, ``job_end``, ``node_drain``, ``node_down``, ``node_resume``,
    #: ``node_reboot`` (an admin change through the portal) or ``node_reason`` (Slurm
    #: set the node's current drain/down reason).
    kind: str
    detail: str | None = Field(default=None, description="Who and why (admins only).")


class GraphEvents(BaseModel):
    items: list[GraphEvent]


def job_events(start: datetime | None, end: datetime | None) -> GraphEvents:
    items = []
    if start is not None:
        items.append(GraphEvent(at=start.timestamp(), kind="job_start"))
        if end is not None and end >= start:
            items.append(GraphEvent(at=end.timestamp(), kind="job_end"))
    return GraphEvents(items=items)


def node_events(database: Database, node: Node, since: datetime, *, admin: bool) -> GraphEvents:
    """Blocking (a worker thread): the node's events since ``since``, oldest first."""
    with database.session() as session:
        rows: Sequence[AdminChange] = session.scalars(
            select(AdminChange)
            .where(AdminChange.kind.like("node.%"), AdminChange.at >= since)
            .order_by(AdminChange.at.desc())
            .limit(MOST)
        ).all()
        changes = [(r.at, r.kind, r.target, r.username, r.reason) for r in rows]
    items = []
    for at, kind, target, username, reason in changes:
        if node.name not in hostlist.expand(target.removeprefix("node:")):
            continue
        detail = (f"{username}: {reason}" if reason else username) if admin else None
        items.append(GraphEvent(at=at.timestamp(), kind=kind.replace(".", "_"), detail=detail))
    if node.status in _DOWN and node.reason_time is not None and node.reason_time >= since:
        detail = None
        if admin:
            detail = f"{node.reason_set_by or '?'}: {node.reason or ''}".strip()
        items.append(GraphEvent(at=node.reason_time.timestamp(), kind="node_reason",
                                detail=detail))  # fmt: skip
    items.sort(key=lambda e: (e.at, e.kind))
    return GraphEvents(items=items)
