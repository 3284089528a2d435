"""Sessions' secrets at rest: sealed in the database, rotated in the job's files.

Each secret is sealed (``secret_box``) bound to its session and column, so a value
copied elsewhere opens nothing; a VNC session's passwords are rotated with a
compare-and-set on the sealed values so only one connection writes the password file.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from hpcportal.db.models import InteractiveSession
from hpcportal.runas import AsUser
from hpcportal.services import rfb
from hpcportal.services.secret_box import SecretBox, SecretUnreadable
from hpcportal.services.sessions.context import SessionContext


def _place(session_id: str, column: str) -> str:
    """What a sealed value is bound to: copied to another row or column, it won't open."""
    return f"interactive_sessions:{session_id}:{column}"


def in_folder(path: str, folder: str) -> str:
    """``path`` (a file of the session, ``tracker.parse_connection`` checked that it lies
    in ``folder``) relative to the session folder: the helper writes it from there."""
    return path.removeprefix(folder.rstrip("/") + "/")


def seal_secrets(
    box: SecretBox, row: InteractiveSession, secret: str, view_secret: str | None
) -> None:
    """Store the session's secrets sealed, each bound to this session and column."""
    row.secret = box.seal(secret, _place(row.id, "secret"))
    row.view_secret = (
        box.seal(view_secret, _place(row.id, "view_secret")) if view_secret is not None else None
    )


def open_secret(box: SecretBox, row: InteractiveSession, *, view_only: bool) -> str | None:
    """The plaintext of the row's (view-only) secret; None if there is none.

    Raises ``SecretUnreadable`` for a value this key does not open (another key file,
    or a value altered in the database)."""
    column = "view_secret" if view_only else "secret"
    sealed = row.view_secret if view_only else row.secret
    if sealed is None:
        return None
    return box.open(sealed, _place(row.id, column))


def forget_connection(row: InteractiveSession) -> None:
    """Make the tracker read the session's connection file again (and seal anew)."""
    row.port = None
    row.secret = row.view_secret = None
    row.server_cert = None
    row.updated_at = datetime.now(UTC)


def rotate_passwords(ctx: SessionContext, session_id: str, *, view_only: bool = False) -> bool:
    """Write new VNC passwords to the session's password file, as its owner.

    TigerVNC reads that file at each new connection, so the old password stops
    working for anyone who saw it. Rotating the view-only one keeps the full one.

    Several connections (tabs, replicas) may rotate at once, so the database row is
    claimed first with a compare-and-set on the current (sealed) passwords: only the
    winner writes the file, and the file never holds other passwords than the row says
    (a failed write puts the old ones back). Returns whether this call rotated.
    """
    box = ctx.box
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is None or row.passwd_file is None or row.secret is None or row.view_secret is None:
            return False
        old_sealed = (row.secret, row.view_secret)
        try:
            full = open_secret(box, row, view_only=False)
            view = open_secret(box, row, view_only=True)
        except SecretUnreadable:
            return False  # the next connection re-reads the session (see _target)
        assert full is not None and view is not None
        username, folder = row.username, row.session_dir
        name = in_folder(row.passwd_file, folder)
    new = (full, rfb.new_password()) if view_only else (rfb.new_password(), view)
    new_sealed = (
        box.seal(new[0], _place(session_id, "secret")),
        box.seal(new[1], _place(session_id, "view_secret")),
    )
    if not _swap_secrets(ctx, session_id, old_sealed, new_sealed):
        return False  # someone else rotated just now: their passwords stand
    data = rfb.password_file(*new)
    try:
        AsUser(ctx.submit.runas, username).write_file(folder, name, data, mode=0o600, replace=True)
    except Exception:
        _swap_secrets(ctx, session_id, new_sealed, old_sealed)
        raise
    return True


def _swap_secrets(
    ctx: SessionContext, session_id: str, old: tuple[str, str], new: tuple[str, str]
) -> bool:
    with ctx.database.session() as session:
        result = session.execute(
            update(InteractiveSession)
            .where(
                InteractiveSession.id == session_id,
                InteractiveSession.secret == old[0],
                InteractiveSession.view_secret == old[1],
            )
            .values(secret=new[0], view_secret=new[1], updated_at=datetime.now(UTC))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
