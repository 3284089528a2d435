"""Sessions' secrets sealed at rest; the certificate of each session's server.

Until now ``interactive_sessions.secret`` and ``view_secret`` held VNC passwords and
app tokens as they are, so reading the database (or a backup) was enough to take
over a running session. From here on they are sealed with the portal's key
(``services.secret_box``). This migration cannot seal what is stored (the key is a
file, not in the database), so it forgets every stored secret instead and clears
``port``: the session tracker then reads the session's ``connection.json`` again, as
its owner, and seals what it finds. A session started before this version wrote no
TLS certificate there, and the proxy now talks to sessions' servers only over mutual
TLS, so the tracker ends such a session with a message to relaunch it.

``server_cert`` is new: the certificate (PEM) the session's job made, the only one
the proxy accepts from that session's server.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SESSIONS = sa.table(
    "interactive_sessions",
    sa.column("secret", sa.Text),
    sa.column("view_secret", sa.Text),
    sa.column("port", sa.Integer),
)


def upgrade() -> None:
    with op.batch_alter_table("interactive_sessions") as batch:
        batch.add_column(sa.Column("server_cert", sa.Text(), nullable=True))
    op.execute(
        SESSIONS.update()
        .where(sa.or_(SESSIONS.c.secret.is_not(None), SESSIONS.c.view_secret.is_not(None)))
        .values(secret=None, view_secret=None, port=None)
    )


def downgrade() -> None:
    # Sealed values mean nothing to the older code: forget them the same way.
    op.execute(
        SESSIONS.update()
        .where(sa.or_(SESSIONS.c.secret.is_not(None), SESSIONS.c.view_secret.is_not(None)))
        .values(secret=None, view_secret=None, port=None)
    )
    with op.batch_alter_table("interactive_sessions") as batch:
        batch.drop_column("server_cert")
