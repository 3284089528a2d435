"""What is shown of sessions: their views, lists, and the end of their log.

Reading a session is allowed to its owner only (``owned``); nothing here shows a
secret, and nothing here changes a session.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.models import InteractiveSession
from hpcportal.errors import Forbidden, NotFound, PortalError
from hpcportal.runas import AsUser
from hpcportal.services.identity import Principal
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import ACTIVE, SessionState, State

SESSION_ID = re.compile(r"^[a-f0-9]{16}$")
LOG_TAIL_BYTES = 4096


class SessionView(BaseModel):
    """What the API and pages show of a session (never its secrets)."""

    id: str
    app_id: str
    app_name: str
    connection: str
    state: State
    ready: bool
    job_id: int | None
    node: str | None
    options: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    seconds_left: int | None
    error: str | None
    shared: bool
    view_url: str
    proxy_url: str | None


def base_url(session_id: str) -> str:
    return f"/node/{session_id}/"


def view(session: InteractiveSession | SessionState, now: datetime | None = None) -> SessionView:
    """What is shown of a session, from its row or its state (the same either way)."""
    state = session if isinstance(session, SessionState) else SessionState.of(session)
    now = now or datetime.now(UTC)
    left = None
    if state.state == "running" and state.ends_at is not None:
        left = max(0, int((state.ends_at - now).total_seconds()))
    proxy = None
    if state.ready:
        sid = state.id
        proxy = f"/api/v1/sessions/{sid}/vnc" if state.connection == "vnc" else base_url(sid)
    return SessionView(
        id=state.id,
        app_id=state.app_id,
        app_name=state.app_name,
        connection=state.connection,
        state=state.state,
        ready=state.ready,
        job_id=state.job_id,
        node=state.node,
        options=dict(state.options),
        created_at=state.created_at,
        started_at=state.started_at,
        ends_at=state.ends_at,
        ended_at=state.ended_at,
        seconds_left=left,
        error=state.error,
        shared=state.shared,
        view_url=f"/sessions/{state.id}",
        proxy_url=proxy,
    )


def owned(session: Session, who: Principal, session_id: str) -> InteractiveSession:
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound("There is no such session.")
    row = session.get(InteractiveSession, session_id)
    if row is None:
        raise NotFound("There is no such session.")
    if row.username != who.username:
        raise Forbidden("This session belongs to someone else.")
    return row


def list_sessions(
    ctx: SessionContext, who: Principal, *, active_only: bool = False
) -> list[SessionView]:
    with ctx.database.session() as session:
        query = select(InteractiveSession).where(InteractiveSession.username == who.username)
        if active_only:
            query = query.where(InteractiveSession.state.in_(sorted(ACTIVE)))
        rows = session.scalars(query.order_by(InteractiveSession.created_at.desc()).limit(200))
        now = datetime.now(UTC)
        return [view(r, now) for r in rows]


def get_session(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    with ctx.database.session() as session:
        return view(owned(session, who, session_id))


def output_tail(ctx: SessionContext, who: Principal, session_id: str) -> str:
    """The end of the job's log (``output.log``), read as the user; '' if there is none."""
    with ctx.database.session() as session:
        row = owned(session, who, session_id)
        folder = row.session_dir
    return log_tail(ctx, who.username, folder)


def log_tail(ctx: SessionContext, username: str, folder: str) -> str:
    try:
        helper = AsUser(ctx.submit.runas, username)
        head, _ = helper.read_range(folder, "output.log", offset=0, length=0)
        _, data = helper.read_range(
            folder, "output.log", offset=max(0, head.size - LOG_TAIL_BYTES), length=LOG_TAIL_BYTES
        )
    except PortalError:
        return ""
    return data.decode("utf-8", "replace")
