"""QoS changes, planned before they run: create, modify, delete.

A plan reads the QoS's current values from slurmdbd (``admin_qos.read_qos``, never a
cache), builds the one ``sacctmgr`` command of the change (``slurm/admin_qos.py``, the
only place its argv is made), and says what the change touches: the queued and
running jobs of the snapshot under that QoS, and, simply, which pending jobs a limit
change would let start (they wait on exactly that limit and it is raised or removed)
or hold back (a lower MaxWall than their time limit, a lower MaxJobsPerUser than
their owner already runs). The revert is built at plan time from the values read:
a modify is undone by the modify back to them, a create by the delete, a delete by
the create with every recorded value. ``plan.apply`` runs it as the administrator.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.services.admin.plan import AffectedJob, Plan
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import admin_qos
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_qos import QosLimits, QosSpec
from hpcportal.slurm.models import Job

#: Pending reasons (``QOSMaxWallDurationPerJobLimit`` ...) -> the limit they wait on.
_REASON_FIELDS = (
    ("QOSMaxWall", "max_wall_minutes"),
    ("QOSMaxJobsPerUser", "max_jobs_per_user"),
    ("QOSMaxJobsPerAccount", "max_jobs_per_account"),
    ("QOSMaxSubmitJob", "max_submit_jobs_per_user"),
    ("QOSGrpJobs", "grp_jobs"),
    ("QOSGrpSubmit", "grp_submit_jobs"),
    ("QOSGrp", "grp_tres"),
    ("QOSMax", "max_tres_per_job"),  # QOSMaxCpuPerJobLimit; PerUser below
)
_ACTIVE = ("PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING")


class QosChange(BaseModel):
    """A modify: the values to set; a field left out keeps its value, and a limit
    given as null (or a TRES map as {}) is removed."""

    model_config = ConfigDict(extra="forbid")

    priority: int | None = None
    preempt: list[str] | str | None = None
    preempt_mode: str | None = None
    flags: list[str] | str | None = None
    grp_tres: dict[str, int | str] | str | None = None
    grp_jobs: int | None = None
    grp_submit_jobs: int | None = None
    max_tres_per_job: dict[str, int | str] | str | None = None
    max_tres_per_user: dict[str, int | str] | str | None = None
    max_wall_minutes: int | None = None
    max_jobs_per_user: int | None = None
    max_submit_jobs_per_user: int | None = None
    max_jobs_per_account: int | None = None

    def applied_to(self, before: QosLimits) -> QosLimits:
        """``before`` with this change's fields set (checked as a whole again)."""
        values: dict[str, Any] = before.model_dump()
        for name in self.model_fields_set:
            value = getattr(self, name)
            values[name] = 0 if (name == "priority" and value is None) else value
            if value is None and name in ("preempt", "flags"):
                values[name] = ()
            if value is None and name == "preempt_mode":
                values[name] = "cluster"
        return QosLimits.model_validate(values)


class QosRow(BaseModel):
    """A QoS with the jobs under it now (admin list)."""

    qos: QosSpec
    pending: int
    running: int


def _read(adapter: SlurmAdapter, name: str) -> QosSpec | None:
    return admin_qos.read_qos(adapter.executor, _name(name))


def _name(name: str) -> str:
    try:
        return admin_qos.check_qos_name(name)
    except ValueError as exc:
        raise InvalidInput(_said(exc)) from exc


def _check_preempt(adapter: SlurmAdapter, name: str, preempt: tuple[str, ...]) -> None:
    """Every QoS to preempt exists and is not this one (422 before anything runs)."""
    if not preempt:
        return
    if name in preempt:
        raise InvalidInput(f"QoS {name} cannot preempt itself.")
    known = {q.name for q in admin_qos.read_all_qos(adapter.executor)}
    missing = [p for p in preempt if p not in known]
    if missing:
        raise InvalidInput(f"No QoS named {', '.join(missing)} to preempt.")


def jobs_under(snapshot: ClusterSnapshot, name: str) -> list[Job]:
    return [j for j in snapshot.jobs if j.qos == name and j.state in _ACTIVE]


def _affected(job: Job) -> AffectedJob:
    return AffectedJob(job.id, job.user, job.name, job.state, job.nodes)


def _looser(field: str, before: Any, after: Any) -> bool:
    """Is ``after`` a looser limit than ``before`` (raised, or removed)?"""
    if isinstance(before, dict):
        return any(k not in after or after[k] > v for k, v in before.items())
    return before is not None and (after is None or after > before)


def _waits_on(job: Job) -> str | None:
    reason = job.reason or ""
    for prefix, field in _REASON_FIELDS:
        if reason.startswith(prefix):
            return (
                "max_tres_per_user"
                if "PerUser" in reason and field == "max_tres_per_job"
                else field
            )
    return None


def limit_effects(
    jobs: list[Job], before: QosLimits, after: QosLimits
) -> tuple[list[Job], list[Job]]:
    """Pending jobs this change would let start, and those it would hold back.

    Simple on purpose: a job waiting on a limit (its pending reason) that is raised
    or removed is released (unless another limit holds it); a job whose time limit is
    above a new MaxWall, or whose owner already runs as many jobs as a new
    MaxJobsPerUser, is held back."""
    pending = [j for j in jobs if j.state == "PENDING"]
    released = [
        j
        for j in pending
        if (f := _waits_on(j)) is not None and _looser(f, getattr(before, f), getattr(after, f))
    ]
    blocked: list[Job] = []
    if after.max_wall_minutes is not None and after.max_wall_minutes != before.max_wall_minutes:
        blocked += [
            j
            for j in pending
            if j.time_limit_minutes is None or j.time_limit_minutes > after.max_wall_minutes
        ]
    cap = after.max_jobs_per_user
    if cap is not None and cap != before.max_jobs_per_user:
        running = Counter(j.user for j in jobs if j.state == "RUNNING")
        blocked += [j for j in pending if running[j.user] >= cap and j not in blocked]
    return released, blocked


def _diff_notes(before: QosLimits, after: QosLimits) -> list[str]:
    def shown(value: Any) -> str:
        if value is None or value == () or value == {}:
            return "none"
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)

    return [
        f"{admin_qos.SET_KEYS[f]}: {shown(getattr(before, f))} -> {shown(getattr(after, f))}"
        for f in admin_qos.changed_fields(before, after)
    ]


def _counts(jobs: list[Job]) -> str:
    pending = sum(j.state == "PENDING" for j in jobs)
    return f"{pending} pending and {len(jobs) - pending} running or other active jobs use it now"


def plan_create(adapter: SlurmAdapter, snapshot: ClusterSnapshot, spec: QosSpec) -> Plan:
    """``sacctmgr add qos``; reverted by deleting it. 409 if it already exists."""
    if _read(adapter, spec.name) is not None:
        raise Conflict(f"QoS {spec.name} already exists; modify it instead.")
    _check_preempt(adapter, spec.name, spec.preempt)
    notes = _diff_notes(QosLimits(), spec.limits())
    return Plan(
        kind="qos.create",
        target=f"qos:{spec.name}",
        summary=f"Create QoS {spec.name}",
        commands=(admin_qos.qos_create(spec),),
        previous={"exists": False, "after": spec.model_dump(mode="json")},
        revert=(admin_qos.qos_delete(spec.name),),
        notes=tuple(notes),
    )


def plan_modify(
    adapter: SlurmAdapter, snapshot: ClusterSnapshot, name: str, change: QosChange
) -> Plan:
    """``sacctmgr modify qos`` of what changes; reverted by setting the values read."""
    before = _read(adapter, name)
    if before is None:
        raise NotFound(f"There is no QoS {name}.")
    try:
        after = change.applied_to(before.limits())
    except ValueError as exc:
        raise InvalidInput(_said(exc)) from exc
    if after.preempt != before.preempt:
        _check_preempt(adapter, before.name, after.preempt)
    command = admin_qos.qos_modify(before.name, before.limits(), after)
    undo = admin_qos.qos_modify(before.name, after, before.limits())
    if command is None or undo is None:
        raise InvalidInput(f"QoS {before.name} already has these values; nothing to change.")
    jobs = jobs_under(snapshot, before.name)
    released, blocked = limit_effects(jobs, before.limits(), after)
    notes = [*_diff_notes(before.limits(), after), _counts(jobs)]
    if released:
        notes.append("Would let start: " + ", ".join(j.id for j in released))
    if blocked:
        notes.append("Would hold back: " + ", ".join(j.id for j in blocked))
    return Plan(
        kind="qos.modify",
        target=f"qos:{before.name}",
        summary=f"Change QoS {before.name}",
        commands=(command,),
        affects=tuple(_affected(j) for j in [*released, *blocked]),
        previous={
            "qos": before.model_dump(mode="json"),
            "after": {"name": before.name, **after.model_dump(mode="json")},
        },
        revert=(undo,),
        notes=tuple(notes),
    )


def plan_delete(adapter: SlurmAdapter, snapshot: ClusterSnapshot, name: str) -> Plan:
    """``sacctmgr delete qos``; reverted by re-creating it with the values read."""
    before = _read(adapter, name)
    if before is None:
        raise NotFound(f"There is no QoS {name}.")
    jobs = jobs_under(snapshot, before.name)
    notes = [
        _counts(jobs),
        "Associations that allow it lose it; a revert re-creates the QoS with these "
        "values but does not add it back to them.",
    ]
    return Plan(
        kind="qos.delete",
        target=f"qos:{before.name}",
        summary=f"Delete QoS {before.name}",
        commands=(admin_qos.qos_delete(before.name),),
        affects=tuple(_affected(j) for j in jobs),
        previous={"qos": before.model_dump(mode="json")},
        revert=(admin_qos.qos_create(before),),
        notes=tuple(notes),
    )


def qos_rows(adapter: SlurmAdapter, snapshot: ClusterSnapshot) -> list[QosRow]:
    """Every QoS's values and its jobs now (blocking: one ``sacctmgr show qos``)."""
    rows = []
    for spec in admin_qos.read_all_qos(adapter.executor):
        jobs = jobs_under(snapshot, spec.name)
        pending = sum(j.state == "PENDING" for j in jobs)
        rows.append(QosRow(qos=spec, pending=pending, running=len(jobs) - pending))
    return rows


class QosRequest(BaseModel):
    """One QoS change as the API, CLI and page send it: ``values`` are the new QoS's
    (create) or what to change (modify); delete takes none."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "modify", "delete"]
    name: str
    values: QosChange = QosChange()


def plan_request(adapter: SlurmAdapter, snapshot: ClusterSnapshot, request: QosRequest) -> Plan:
    """The plan of ``request`` (blocking: reads the QoS from slurmdbd)."""
    name = _name(request.name)
    if request.action == "delete":
        if request.values.model_fields_set:
            raise InvalidInput("A delete takes no values.")
        return plan_delete(adapter, snapshot, name)
    if request.action == "modify":
        return plan_modify(adapter, snapshot, name, request.values)
    try:
        limits = request.values.applied_to(QosLimits())
    except ValueError as exc:
        raise InvalidInput(_said(exc)) from exc
    return plan_create(adapter, snapshot, QosSpec(name=name, **limits.model_dump()))


def _said(exc: ValueError) -> str:
    """A validation error as one line a person can act on (no pydantic URLs)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)
