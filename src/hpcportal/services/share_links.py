"""View-only share links whose token never travels in a URL the portal receives.

A share link's token is a bearer secret: whoever holds it may watch the desktop. In
a URL path it would land in the access log, the browser history and proxies' logs.
So the link is ``/shares/open#<token>``: browsers never send the fragment. The open
page's script posts the token once (``POST /shares/open``, in the body), and the
portal answers with a cookie and a token-free address, ``/shares/<share id>``:

- the cookie (``hpcportal_share``) is httpOnly, short-lived (``share_cookie_seconds``)
  and scoped by its ``Path`` to that share's page and WebSocket
  (``/shares/<id>``, ``/api/v1/shares/<id>``), so it is sent nowhere else;
- it holds no token but a signed statement (HS256 with the portal's key, audience
  ``hpcportal-share``) of the token's hash, which is what the database stores; a
  revoked or replaced link changes that hash, so the cookie stops working at once;
- the share id is the first 16 hex digits of that hash: it names the share in
  paths and logs and opens nothing by itself.

Opening the link needs no login (the page then asks for one, with the token-free
address as ``next``); watching needs a login and the cookie. Links of the older
form ``/shares/<token>`` still open, through the same exchange and a redirect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.services.sessions import ACTIVE, SHARE_TOKEN, token_hash, view
from hpcportal.services.sessions.access import shared_row

COOKIE = "hpcportal_share"
AUDIENCE = "hpcportal-share"
SHARE_ID = re.compile(r"^[0-9a-f]{16}$")
OPEN_PATH = "/shares/open"


def link(token: str) -> str:
    """The link a session's owner hands out (the token in the fragment only)."""
    return f"{OPEN_PATH}#{token}"


def share_id(digest: str) -> str:
    return digest[:16]


def page_path(digest: str) -> str:
    return f"/shares/{share_id(digest)}"


def cookie_paths(digest: str) -> tuple[str, ...]:
    """Where the browser sends the cookie: the share's page (and its status) and its
    WebSocket, nothing else."""
    sid = share_id(digest)
    return (f"/shares/{sid}", f"/api/v1/shares/{sid}")


def redeem(database: Database, token: str) -> str | None:
    """The hash of ``token`` if it is the link of a session not ended, else None."""
    if not SHARE_TOKEN.fullmatch(token):
        return None
    digest = token_hash(token)
    with database.session() as session:
        state = session.scalars(
            select(InteractiveSession.state).where(InteractiveSession.share_token_hash == digest)
        ).first()
    return digest if state in ACTIVE else None


def cookie_value(settings: Settings, digest: str, now: datetime | None = None) -> str:
    expires = (now or datetime.now(UTC)) + timedelta(seconds=settings.share_cookie_seconds)
    claims = {"aud": AUDIENCE, "sh": digest, "exp": expires}
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def digest_from_cookie(settings: Settings, value: str | None, sid: str) -> str | None:
    """The token hash a valid, unexpired cookie names for share ``sid``, else None.

    The database decides whether that hash still opens anything.
    """
    if not value or not SHARE_ID.fullmatch(sid):
        return None
    try:
        claims = jwt.decode(
            value,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["aud", "exp", "sh"]},
        )
    except jwt.InvalidTokenError:
        return None
    digest = claims.get("sh")
    if not isinstance(digest, str) or share_id(digest) != sid:
        return None
    return digest


@dataclass(frozen=True)
class SharedSession:
    """What a share link's page shows: never the session's id, job or secrets."""

    app_name: str
    owner: str
    state: str
    ready: bool


def shared_session(database: Database, digest: str | None) -> SharedSession | None:
    """The session of the view-only link whose token hashes to ``digest`` (what the
    share cookie names), or None when there is none (any more)."""
    if digest is None:
        return None
    with database.session() as db:
        row = shared_row(db, digest)
        if row is None:
            return None
        shown = view(row)
        return SharedSession(row.app_name, row.username, shown.state, shown.ready)


def share_status(shared: SharedSession | None) -> Literal["ready", "waiting", "gone"]:
    """Whether the share still opens: ``ready``, ``waiting`` (not yet), or ``gone``."""
    if shared is None or shared.state not in ACTIVE:
        return "gone"
    return "ready" if shared.ready else "waiting"
