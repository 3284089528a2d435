"""The submission form (``/submit``), optionally filled from an earlier job
(``?from=<job id>``, the owner's or an admin's) or a template.

The form posts to the API (``POST /api/v1/jobs``); this page only gathers what it
offers: partitions and their limits, templates, container images, accounts and QoS.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import AdapterDep, ApptainerDep, DatabaseDep, SnapshotDep
from hpcportal.errors import PortalError
from hpcportal.limits import DbId
from hpcportal.services import jobs as job_service
from hpcportal.services import templates as template_service
from hpcportal.services.cluster import SnapshotMeta, partition_loads
from hpcportal.services.jobs import JobDetail
from hpcportal.services.submit_choices import submit_choices
from hpcportal.services.visibility import for_snapshot
from hpcportal.web import i18n
from hpcportal.web.common import PageDep, current_snapshot, in_session
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)


def _minutes_to_time(minutes: int | None) -> str:
    if minutes is None:
        return ""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def _prefill_from(detail: JobDetail) -> dict[str, Any]:
    """The submit form's fields from an earlier job ("resubmit with changes")."""
    values: dict[str, Any] = {}
    source = detail.job or detail.accounting
    if source is not None:
        values.update(
            name=source.name,
            partition=source.partition,
            account=source.account,
            qos=source.qos,
            nodes=source.node_count or None,
            time_limit=_minutes_to_time(source.time_limit_minutes),
        )
    if detail.job is not None:
        j = detail.job
        values.update(
            ntasks=j.tasks or None,
            cpus_per_task=(j.cpus // j.tasks) if j.tasks and j.cpus >= j.tasks else None,
            memory=f"{j.memory_mb}M" if j.memory_mb else None,
            gpus=j.gpus or None,
        )
        if j.private is not None:
            values.update(work_dir=j.private.work_dir, output=j.private.stdout)
            if j.private.stderr and j.private.stderr != j.private.stdout:
                values["error"] = j.private.stderr
    elif detail.accounting is not None:
        r = detail.accounting
        memory = r.memory_requested_mb
        values.update(memory=f"{memory}M" if memory else None, work_dir=r.work_dir)
    if detail.script:
        values["script"] = detail.script
    return {k: v for k, v in values.items() if v not in (None, "")}


DEFAULT_SCRIPT: Final = '#!/bin/bash\n\necho "Hello from $(hostname)"\n'


@router.get("/submit", response_class=HTMLResponse)
async def submit_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    catalog: ApptainerDep,
    from_job: Annotated[str | None, Query(alias="from")] = None,
    template: DbId | None = None,
) -> HTMLResponse:
    """The submission form: partition-aware limits, templates, files, image, preview."""
    who = page.user
    assert who is not None
    snap = await current_snapshot(page, snapshot)
    meta = SnapshotMeta.of(snapshot.health())
    prefill: dict[str, Any] = {}
    notice = None
    if from_job:
        try:
            job_service.validate_job_id(from_job)
            detail = await run_in_threadpool(
                job_service.find_job, snap, adapter, from_job, who, meta, with_script=True
            )
            record = detail.job or detail.accounting
            if record is not None and job_service.can_see_private(record, who):
                prefill = _prefill_from(detail)
                notice = page.gettext(N_("Copied from job %(id)s: change what you need.")) % {
                    "id": from_job
                }
        except PortalError as exc:
            notice = exc.message
    templates = await run_in_threadpool(
        in_session, database, lambda s: template_service.list_templates(s, who)
    )
    try:
        if catalog.needs_scan():
            await run_in_threadpool(catalog.refresh)
        images = catalog.images()
    except PortalError:
        images = []
    choices = await run_in_threadpool(submit_choices, adapter, who)
    partitions = [
        {
            "name": load.partition.name,
            "is_default": load.partition.is_default,
            "state": load.partition.state,
            "max_time_minutes": load.partition.max_time_minutes,
            "default_time_minutes": load.partition.default_time_minutes,
            "max_nodes": load.partition.max_nodes,
            "total_nodes": load.partition.total_nodes,
            "total_cpus": load.partition.total_cpus,
            "gpus_total": load.gpus.total,
            "max_mem_per_node_mb": load.partition.max_mem_per_node_mb,
            "default_mem_per_cpu_mb": load.partition.default_mem_per_cpu_mb,
            "max_time_text": _minutes_to_time(load.partition.max_time_minutes),
            "default_time_text": _minutes_to_time(load.partition.default_time_minutes),
        }
        for load in partition_loads(snap, for_snapshot(who, snap))
        if not load.partition.hidden
    ]
    if "partition" not in prefill:
        default = next((p for p in partitions if p["is_default"]), None)
        if default is not None:
            prefill["partition"] = default["name"]
    return page.render(
        "submit.html",
        page_key="submit",
        prefill=prefill,
        script=prefill.get("script", DEFAULT_SCRIPT),
        notice=notice,
        partitions=partitions,
        templates=[t.model_dump(mode="json") for t in templates.items],
        selected_template=template,
        images=[
            {
                "id": i.id,
                "name": i.name,
                "category": i.category,
                "software": i.metadata.name,
                "version": i.metadata.version,
                "gpu": i.metadata.gpu,
                "description": i.metadata.description,
            }
            for i in images
        ],
        choices=choices,
        idempotency_key=str(uuid.uuid4()),
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        mail_types=["BEGIN", "END", "FAIL", "ALL"],
    )
