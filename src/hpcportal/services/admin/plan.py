"""Plan, then apply: every administrator's change is shown before it runs.

A planner (``services/admin/nodes.py`` for nodes; QoS and the others likewise) turns a
requested change and the current snapshot into a ``Plan``: the exact
``AdminCommand`` values that will run, what they affect (jobs a drain would hit), the
state before, and the commands that would restore it. ``apply`` runs *that plan's*
commands, in order, as the administrator's own Unix user through the run-as boundary
(``SlurmAdmin.run``), so the plan shown equals what runs; Slurm decides whether the
administrator may, and its refusal is raised typed (403 with Slurm's reason).

Every apply, refused or not, is in the audit log (who, why, what ran); an applied
change is also stored as an ``AdminChange`` row with its previous state and revert
commands, from which ``revert_plan`` builds the plan that undoes it (once).

Routers re-plan on apply and compare with the argv the person saw
(``check_expected``): if the cluster changed in between, the answer is 409 with the
new plan rather than running something else than what was shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hpcportal.db.models import AdminChange
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, NotFound, PortalError
from hpcportal.services import audit
from hpcportal.services.identity import Principal
from hpcportal.slurm.admin_actions import AdminCommand, SlurmAdmin, check_reason


@dataclass(frozen=True, slots=True)
class AffectedJob:
    """A job the change would touch (running on a node to drain, pending under a QoS)."""

    job_id: str
    user: str
    name: str
    state: str
    nodes: str | None = None
    #: Why it is affected, when the plan says (a reservation's conflict check).
    conflict: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a change will do, before it is done.

    ``kind`` names the change for the audit log (``node.drain``, ``qos.modify``);
    ``target`` what it is done to (``node:node003``, ``qos:normal``); ``previous`` the
    state before (JSON values), ``revert`` the commands that restore it (empty: the
    change cannot be reverted); ``reverts`` the id of the change this plan undoes.
    """

    kind: str
    target: str
    summary: str
    commands: tuple[AdminCommand, ...]
    affects: tuple[AffectedJob, ...] = ()
    previous: Mapping[str, Any] = field(default_factory=dict)
    revert: tuple[AdminCommand, ...] = ()
    notes: tuple[str, ...] = ()
    reverts: int | None = None

    def argv(self) -> list[list[str]]:
        return [list(c.argv) for c in self.commands]


class CommandView(BaseModel):
    argv: list[str]
    shown: str


class AffectedJobView(BaseModel):
    job_id: str
    user: str
    name: str
    state: str
    nodes: str | None = None
    conflict: str | None = None


class PlanView(BaseModel):
    """A plan as the API and pages show it."""

    kind: str
    target: str
    summary: str
    commands: list[CommandView]
    affects: list[AffectedJobView]
    previous: dict[str, Any]
    revertible: bool
    revert: list[CommandView]
    notes: list[str]
    reverts: int | None = None

    @classmethod
    def of(cls, plan: Plan) -> PlanView:
        def views(commands: Sequence[AdminCommand]) -> list[CommandView]:
            return [CommandView(argv=list(c.argv), shown=c.shown()) for c in commands]

        return cls(
            kind=plan.kind,
            target=plan.target,
            summary=plan.summary,
            commands=views(plan.commands),
            affects=[AffectedJobView(**vars_of(j)) for j in plan.affects],
            previous=dict(plan.previous),
            revertible=bool(plan.revert),
            revert=views(plan.revert),
            notes=list(plan.notes),
            reverts=plan.reverts,
        )


def vars_of(job: AffectedJob) -> dict[str, Any]:
    return {name: getattr(job, name) for name in AffectedJob.__slots__}


class ApplyBody(BaseModel):
    """What an apply request adds to the change: why, and the argv the person saw."""

    reason: str
    expect: list[list[str]] | None = None


class Applied(BaseModel):
    """A change Slurm applied: its id (for revert), what ran and the plan it ran."""

    change_id: int
    ran: list[list[str]]
    plan: PlanView


class ChangeView(BaseModel):
    id: int
    at: datetime
    username: str
    kind: str
    target: str
    reason: str
    commands: list[list[str]]
    previous: dict[str, Any]
    revertible: bool
    #: The commands a revert would run (shown beside the revert button).
    revert: list[list[str]] = []
    reverts: int | None
    reverted_by: int | None


def check_expected(plan: Plan, expect: list[list[str]] | None) -> None:
    """409 when the commands planned now differ from those the person was shown."""
    if expect is not None and expect != plan.argv():
        shown = "; ".join(c.shown() for c in plan.commands) or "nothing"
        raise Conflict(f"The plan changed since it was shown; it is now: {shown}. Review it again.")


def apply(
    admin: SlurmAdmin,
    database: Database,
    plan: Plan,
    who: Principal,
    reason: str,
    address: str | None = None,
) -> Applied:
    """Run ``plan.commands`` as ``who``; audit it; store it for revert. Blocking.

    The first refusal stops the plan (later commands do not run) and is raised after
    it is audited with what had already run.
    """
    why = check_reason(reason)
    ran: list[list[str]] = []
    action = f"admin.{plan.kind}"
    if plan.reverts is not None:
        _claim(database, plan.reverts, CLAIMED)  # two reverts at once: one runs
    try:
        for command in plan.commands:
            ran.append(list(admin.run(command, as_user=who.username).argv))
    except PortalError as exc:
        if plan.reverts is not None:
            _claim(database, plan.reverts, None)  # not (wholly) undone: it may be tried again
        detail = f"reason: {why}; ran: {ran or 'nothing'}; refused at {command.shown()}"
        event = audit.Event.of(who, action, plan.target, address, exc, detail)
        audit.write(database, event)
        raise

    def store(session: Session) -> int:
        row = AdminChange(
            at=datetime.now(UTC),
            username=who.username,
            kind=plan.kind,
            target=plan.target[:512],
            reason=why,
            commands=ran,
            previous=dict(plan.previous),
            revert=[list(c.argv) for c in plan.revert],
            reverts=plan.reverts,
        )
        session.add(row)
        session.flush()
        if plan.reverts is not None:
            undone = session.get(AdminChange, plan.reverts)
            if undone is not None:
                undone.reverted_by = row.id
        detail = f"change {row.id}; reason: {why}; ran: {ran}; previous: {dict(plan.previous)}"
        audit.add(session, audit.Event.of(who, action, plan.target, address, detail=detail))
        return row.id

    change_id = database.write(store, what="admin change")
    return Applied(change_id=change_id, ran=ran, plan=PlanView.of(plan))


#: ``reverted_by`` while a revert runs (no change has this id).
CLAIMED = -1


def _claim(database: Database, change_id: int, value: int | None) -> None:
    """Mark change ``change_id`` as being reverted (``CLAIMED``), in one conditional
    UPDATE so two reverts at once cannot both run; ``None`` releases the claim."""
    held = (
        AdminChange.reverted_by.is_(None)
        if value is not None
        else (AdminChange.reverted_by == CLAIMED)
    )
    query = update(AdminChange).where(AdminChange.id == change_id, held)

    def work(session: Session) -> int:
        return session.execute(query.values(reverted_by=value)).rowcount  # type: ignore[attr-defined,no-any-return]

    if database.write(work, what="admin revert claim") == 0 and value is not None:
        raise Conflict(f"Change {change_id} is already reverted, or being reverted.")


def _command(argv: Sequence[str]) -> AdminCommand:
    program, *args = argv
    if program not in ("scontrol", "sacctmgr"):
        raise Conflict(f"Change holds a command the portal does not run: {program!r}.")
    return AdminCommand(program, tuple(args))  # type: ignore[arg-type]


def revert_plan(database: Database, change_id: int) -> Plan:
    """The plan that undoes change ``change_id``: its recorded revert commands.

    404 for an unknown change, 409 for one already reverted or not revertible.
    """
    with database.session() as session:
        row = session.get(AdminChange, change_id)
        if row is None:
            raise NotFound(f"No admin change {change_id}.")
        if row.reverted_by == CLAIMED:
            raise Conflict(f"Change {change_id} is being reverted.")
        if row.reverted_by is not None:
            raise Conflict(f"Change {change_id} was already reverted by change {row.reverted_by}.")
        if not row.revert:
            raise Conflict(f"Change {change_id} ({row.kind}) cannot be reverted.")
        return Plan(
            kind=f"{row.kind}.revert",
            target=row.target,
            summary=f"Undo change {change_id} ({row.kind} on {row.target} by {row.username})",
            commands=tuple(_command(argv) for argv in row.revert),
            previous={"change": change_id, "commands": row.commands},
            revert=tuple(_command(argv) for argv in row.commands),
            reverts=change_id,
        )


def changes(database: Database, *, kind_prefix: str = "", limit: int = 50) -> list[ChangeView]:
    """The latest applied changes, newest first (``kind_prefix``: ``node.``, ``qos.``)."""
    with database.session() as session:
        query = select(AdminChange).order_by(AdminChange.id.desc()).limit(limit)
        if kind_prefix:
            query = query.where(AdminChange.kind.startswith(kind_prefix))
        return [change_view(row) for row in session.scalars(query)]


def change_view(row: AdminChange) -> ChangeView:
    """A stored change as the API, the pages and the audit log show it."""
    return ChangeView(
        id=row.id,
        at=row.at,
        username=row.username,
        kind=row.kind,
        target=row.target,
        reason=row.reason,
        commands=row.commands,
        previous=row.previous,
        revertible=bool(row.revert) and row.reverted_by is None,
        revert=row.revert,
        reverts=row.reverts,
        reverted_by=row.reverted_by,
    )
