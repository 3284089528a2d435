"""Nodes (``/nodes``, one node's panel) and partitions (``/partitions``), as far as
Slurm's ``PrivateData`` lets the person see them (``services.visibility``)."""

from __future__ import annotations

from collections import Counter, defaultdict

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import SnapshotDep
from hpcportal.errors import PortalError
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import partition_loads
from hpcportal.services.monitoring import history as cluster_history
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.services.visibility import Visibility, for_snapshot, visible_jobs
from hpcportal.slurm import hostlist
from hpcportal.slurm.models import Job, Node
from hpcportal.slurm.states import JobStatus
from hpcportal.web.common import Page, PageDep, PageError, current_snapshot, page_error
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(
    page: PageDep, snapshot: SnapshotDep, partition: str | None = None
) -> HTMLResponse:
    return await _nodes(page, snapshot, partition, None)


@router.get("/nodes/{name}", response_class=HTMLResponse)
async def node_page(
    name: str, page: PageDep, snapshot: SnapshotDep, partition: str | None = None
) -> HTMLResponse:
    return await _nodes(page, snapshot, partition, name)


async def _nodes(
    page: Page, snapshot: SnapshotService, partition: str | None, selected: str | None
) -> HTMLResponse:
    snap, vis = await _allowed(page, snapshot, "nodes")
    nodes = sorted(snap.nodes, key=lambda n: n.name)
    if partition:
        nodes = [n for n in nodes if partition in n.partitions]
    node = _node(page, snap, selected) if selected is not None else None
    counts = Counter(n.status.value for n in nodes)
    return page.render(
        "nodes.html",
        page_key="nodes",
        nodes=nodes,
        counts=sorted(counts.items()),
        partitions=[] if vis.hides("partitions") else [p.name for p in snap.partitions],
        partition=partition,
        node=node,
        node_jobs=_jobs_on(snap, node.name, page) if node else [],
    )


async def _allowed(
    page: Page, snapshot: SnapshotService, what: str
) -> tuple[ClusterSnapshot, Visibility]:
    """The current snapshot and what the person sees of it; an error page when
    ``PrivateData`` hides ``what`` (nodes, partitions) from them."""
    snap = await current_snapshot(page, snapshot)
    assert page.user is not None
    vis = for_snapshot(page.user, snap)
    try:
        vis.require(what)
    except PortalError as exc:
        raise page_error(exc) from None
    return snap, vis


def _node(page: Page, snap: ClusterSnapshot, name: str) -> Node:
    node = snap.nodes_by_name.get(name)
    if node is None:
        raise PageError(404, page.gettext(N_("No node named %(name)s.")) % {"name": name})
    return node


def expand_hostlist(spec: str) -> list[str]:
    """Slurm's compact host lists: ``node[001-003,007],gpu001`` -> every name.

    Expanded by the Slurm boundary (ClusterShell); models already carry
    ``node_names``, so pages rarely need this.
    """
    return hostlist.expand(spec)


def _jobs_on(snap: ClusterSnapshot, node_name: str, page: Page) -> list[Job]:
    """Running jobs with a share of this node, of those the user sees."""
    assert page.user is not None
    vis = for_snapshot(page.user, snap)

    def compute() -> dict[str, list[Job]]:
        by_node: dict[str, list[Job]] = defaultdict(list)
        for job in snap.jobs:
            if job.status is JobStatus.RUNNING:
                for name in job.node_names:
                    by_node[name].append(job)
        return by_node

    by_node: dict[str, list[Job]] = snap.memo("web:jobs_by_node", compute)
    jobs = visible_jobs(snap, vis, by_node.get(node_name, []))
    return [job_service.visible(j, page.user, snap) for j in jobs[:50]]


@router.get("/partials/nodes/{name}", response_class=HTMLResponse)
async def node_partial(name: str, page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    snap, _ = await _allowed(page, snapshot, "nodes")
    node = _node(page, snap, name)
    return page.render("node_detail.html", node=node, node_jobs=_jobs_on(snap, name, page))


@router.get("/partitions", response_class=HTMLResponse)
async def partitions_page(page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    snap, vis = await _allowed(page, snapshot, "partitions")
    return page.render("partitions.html", page_key="partitions", loads=partition_loads(snap, vis))


@router.get("/cluster/history", response_class=HTMLResponse)
async def history_page(page: PageDep, snapshot: SnapshotDep, range: str = "day") -> HTMLResponse:
    """Utilisation by partition and jobs by state over an hour, day, week or month,
    drawn in the browser from ``/api/v1/monitoring/history`` (the portal's gauges as
    Prometheus kept them)."""
    _, vis = await _allowed(page, snapshot, "partitions")
    if range not in cluster_history.RANGES:
        range = "day"
    return page.render(
        "cluster_history.html",
        page_key="partitions",
        ranges=cluster_history.RANGES,
        range=range,
        panels=[p for p in cluster_history.PANELS if not vis.hides(p.needs)],
    )
