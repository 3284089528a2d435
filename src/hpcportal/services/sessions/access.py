"""Who may connect to a session, where, with which secret; view-only share links.

The proxies (``api/node_proxy``, the VNC relay) get their ``Target`` only from here:
the host of the node Slurm says runs the job, the port from its connection file, the
secret opened from the database, and a TLS context that accepts only the certificate
the job wrote (``node_tls``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from hpcportal.db.models import InteractiveSession
from hpcportal.errors import Conflict, NotFound
from hpcportal.services.identity import Principal
from hpcportal.services.secret_box import SecretUnreadable
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import ACTIVE
from hpcportal.services.sessions.sealing import forget_connection, open_secret, rotate_passwords
from hpcportal.services.sessions.views import SessionView, base_url, get_session, owned

log = logging.getLogger(__name__)
SHARE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True)
class Target:
    """Where the proxy may connect for one request, and with which secret."""

    session_id: str
    username: str
    host: str
    port: int
    secret: str
    view_only: bool
    connection: str
    base_url: str
    server_cert: str
    #: Presents the portal's certificate, accepts only ``server_cert`` (node_tls).
    tls: ssl.SSLContext


def token_hash(token: str) -> str:
    """What is stored of a share link's token (and what its viewers' cookies name)."""
    return hashlib.sha256(token.encode()).hexdigest()


def share(ctx: SessionContext, who: Principal, session_id: str) -> str:
    """A new view-only link token (a previous link stops working)."""
    token = secrets.token_urlsafe(32)
    with ctx.database.session() as session:
        row = owned(session, who, session_id)
        if row.connection != "vnc":
            raise Conflict("Only desktop (VNC) sessions can be shared view-only.")
        if row.state not in ACTIVE:
            raise Conflict("The session has ended.")
        row.share_token_hash = token_hash(token)
        row.updated_at = datetime.now(UTC)
    return token


def revoke_share(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """Forget the link and change the view-only password, so no viewer reconnects."""
    with ctx.database.session() as session:
        row = owned(session, who, session_id)
        row.share_token_hash = None
        row.updated_at = datetime.now(UTC)
    rotate_passwords(ctx, session_id, view_only=True)
    return get_session(ctx, who, session_id)


# --- connecting (used by the proxies) ---------------------------------------------------


def target(ctx: SessionContext, who: Principal, session_id: str, connection: str) -> Target:
    """Where ``who`` may connect for this session: only the owner, only while running."""
    with ctx.database.session() as session:
        row = owned(session, who, session_id)
        return _target(ctx, row, connection, view_only=False)


def shared_target(ctx: SessionContext, digest: str | None) -> Target:
    """The view-only target of the share link whose token hashes to ``digest`` (any
    logged-in person who opened the link: ``services.share_links``)."""
    if digest is None:
        raise NotFound("This share link is not valid (it may have been revoked).")
    with ctx.database.session() as session:
        row = shared_row(session, digest)
        if row is None:
            raise NotFound("This share link is not valid (it may have been revoked).")
        return _target(ctx, row, "vnc", view_only=True)


def shared_row(session: Session, digest: str) -> InteractiveSession | None:
    """The session whose view-only link's token hashes to ``digest``, if any (the one
    share lookup: the share's WebSocket and its page both ask here)."""
    return session.scalars(
        select(InteractiveSession).where(InteractiveSession.share_token_hash == digest)
    ).first()


def share_still_valid(ctx: SessionContext, session_id: str, digest: str) -> bool:
    """Whether a viewer's link still names this running session (checked while viewing)."""
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        return row is not None and row.state == "running" and row.share_token_hash == digest


def _target(
    ctx: SessionContext, row: InteractiveSession, connection: str, *, view_only: bool
) -> Target:
    if row.connection != connection:
        raise NotFound(f"This session has no {connection} connection.")
    if row.state != "running" or row.host is None or row.port is None:
        raise Conflict("The session is not running yet (or has ended).")
    try:
        secret = open_secret(ctx.box, row, view_only=view_only)
    except SecretUnreadable as exc:
        # Sealed under another key (the key file was replaced) or altered: read the
        # job's connection file again rather than fail for good.
        log.warning("session %s: its stored secret does not open (%s)", row.id, exc)
        forget_connection(row)
        session = object_session(row)
        if session is not None:
            session.commit()  # kept although this request is refused
        raise Conflict(
            "The portal is reconnecting to this session; try again in a few seconds."
        ) from None
    if secret is None or row.server_cert is None:
        raise Conflict("The session is not running yet (or has ended).")
    return Target(
        row.id,
        row.username,
        row.host,
        row.port,
        secret,
        view_only,
        row.connection,
        base_url(row.id),
        row.server_cert,
        ctx.tls.context(row.server_cert),
    )
