"""Migration 0009: session secrets stored in plaintext are forgotten, not kept.

The key that seals them is a file the migration does not have, so it clears the
secrets (and the port, which makes the tracker read the session's connection file
again); rows of ended sessions, which hold no secret, are left as they were.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database

INSERT = text(
    "INSERT INTO interactive_sessions (id, username, app_id, app_name, connection, state, "
    "options, session_dir, job_id, host, port, secret, view_secret, created_at, updated_at) "
    "VALUES (:id, 'alice', 'desktop', 'Desktop', 'vnc', :state, '{}', '/home/alice/s', 7, "
    "'10.0.0.1', :port, :secret, :view, :now, :now)"
)


def test_plaintext_secrets_are_cleared(db_settings: Settings) -> None:
    upgrade(db_settings, "0008")
    database = Database(db_settings)
    engine = database.engine
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                INSERT,
                [
                    {"id": "a" * 16, "state": "running", "port": 5901, "secret": "full1234",
                     "view": "view1234", "now": now},
                    {"id": "b" * 16, "state": "completed", "port": 5902, "secret": None,
                     "view": None, "now": now},
                ],
            )  # fmt: skip
        upgrade(db_settings)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, port, secret, view_secret, server_cert FROM interactive_sessions")
            ).all()
            columns = {c["name"] for c in inspect(conn).get_columns("interactive_sessions")}
    finally:
        database.dispose()
    assert "server_cert" in columns
    assert sorted(tuple(r) for r in rows) == [
        ("a" * 16, None, None, None, None),
        ("b" * 16, 5902, None, None, None),
    ]
