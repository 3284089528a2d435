"""Read API for the cluster: summary, nodes, partitions, QoS, accounts, fairshare, me.

Every answer is what Slurm would show the caller (``services.visibility``): under
``PrivateData`` the summary counts only their jobs, ``/fairshare`` and ``/accounts``
hold only their rows, ``/nodes`` and ``/partitions`` may be refused. QoS are public
in Slurm.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from hpcportal.api.responses import ModelResponse
from hpcportal.dependencies import AdapterDep, CurrentUser, SnapshotDep, strict_query
from hpcportal.errors import NotFound
from hpcportal.services.cluster import (
    ClusterSummary,
    PartitionLoad,
    SnapshotMeta,
    partition_loads,
    summarize,
)
from hpcportal.services.visibility import for_accounting, for_snapshot
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import QOS, Association, FairshareEntry, Node

router = APIRouter(tags=["cluster"])


class NodeList(BaseModel):
    items: list[Node]
    snapshot: SnapshotMeta


class NodeDetail(BaseModel):
    node: Node
    snapshot: SnapshotMeta


class PartitionList(BaseModel):
    items: list[PartitionLoad]
    snapshot: SnapshotMeta


class Me(BaseModel):
    user: str
    uid: int
    groups: list[str]
    role: str
    accounts: list[str]


@router.get(
    "/cluster",
    response_model=ClusterSummary,
    response_class=ModelResponse,
    dependencies=[strict_query()],
)
async def cluster(who: CurrentUser, snapshot: SnapshotDep) -> ModelResponse:
    """Nodes by state, CPU/GPU/memory allocation, jobs by state, partition load."""
    snap = await snapshot.current()
    return ModelResponse(summarize(snap, snapshot.health(), for_snapshot(who, snap)))


@router.get(
    "/nodes", response_model=NodeList, response_class=ModelResponse, dependencies=[strict_query()]
)
async def nodes(who: CurrentUser, snapshot: SnapshotDep) -> ModelResponse:
    snap = await snapshot.current()
    for_snapshot(who, snap).require("nodes")
    body = NodeList(items=list(snap.nodes), snapshot=SnapshotMeta.of(snapshot.health()))
    return ModelResponse(body)


@router.get("/nodes/{name}", response_model=NodeDetail, dependencies=[strict_query()])
async def node(name: str, who: CurrentUser, snapshot: SnapshotDep) -> NodeDetail:
    snap = await snapshot.current()
    for_snapshot(who, snap).require("nodes")
    found = snap.nodes_by_name.get(name)
    if found is None:
        raise NotFound(f"No node named {name!r}.")
    return NodeDetail(node=found, snapshot=SnapshotMeta.of(snapshot.health()))


@router.get("/partitions", response_model=PartitionList, dependencies=[strict_query()])
async def partitions(who: CurrentUser, snapshot: SnapshotDep) -> PartitionList:
    snap = await snapshot.current()
    vis = for_snapshot(who, snap)
    vis.require("partitions")
    loads = partition_loads(snap, vis)
    return PartitionList(items=loads, snapshot=SnapshotMeta.of(snapshot.health()))


@router.get("/qos", response_model=list[QOS], dependencies=[strict_query()])
async def qos(_: CurrentUser, adapter: AdapterDep) -> list[QOS]:
    return await run_in_threadpool(adapter.qos)


@router.get("/accounts", response_model=list[Association], dependencies=[strict_query("user")])
async def accounts(
    who: CurrentUser, adapter: AdapterDep, user: str | None = None
) -> list[Association]:
    """Slurm associations (account tree and per-user limits), optionally for one user:
    those ``sacctmgr show associations`` run as you lists."""

    def read(adapter: SlurmAdapter) -> list[Association]:
        return for_accounting(who, adapter).associations(adapter.associations())

    rows = await run_in_threadpool(read, adapter)
    return [a for a in rows if user is None or a.user == user]


@router.get("/fairshare", response_model=list[FairshareEntry], dependencies=[strict_query()])
async def fairshare(
    who: CurrentUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> list[FairshareEntry]:
    """Fairshare rows (``sshare --all --long``): under ``PrivateData=usage`` only yours
    and those of accounts you coordinate, as ``sshare`` run as you prints."""
    vis = for_snapshot(who, await snapshot.current())
    rows = await run_in_threadpool(adapter.fairshare)
    return [row for row in rows if vis.sees_usage(row)]


@router.get("/me", response_model=Me, dependencies=[strict_query()])
async def me(who: CurrentUser, adapter: AdapterDep) -> Me:
    """Who the portal thinks you are, and which Slurm accounts you can charge."""
    rows = await run_in_threadpool(adapter.associations)
    mine = [a for a in rows if a.user == who.username]
    return Me(
        user=who.username,
        uid=who.uid,
        groups=list(who.groups),
        role=who.role,
        accounts=sorted({a.account for a in mine}),
    )
