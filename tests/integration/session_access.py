"""What only the portal holds about a session, for tests that check it (as root).

The database stores a session's passwords sealed and the proxy reaches the session's
server over mutual TLS; a test that connects straight to that server, or checks that
a secret leaks nowhere, needs the plaintext and the portal's TLS identity, both from
the portal's key folder.
"""

from __future__ import annotations

import ssl
from typing import Any

from hpcportal.db.models import InteractiveSession
from hpcportal.services.node_tls import node_tls_for
from hpcportal.services.secret_box import box_for
from hpcportal.services.sessions import open_secret


def stored_secrets(portal: Any, sid: str) -> tuple[str | None, str | None]:
    """The session's current full-control and view-only secrets, opened."""
    box = box_for(portal.settings.secret_key_path)
    with portal.services.database.session() as db:
        row = db.get(InteractiveSession, sid)
        assert row is not None
        return open_secret(box, row, view_only=False), open_secret(box, row, view_only=True)


def portal_context(portal: Any, sid: str) -> ssl.SSLContext:
    """TLS as the portal's proxy makes it for this session (its pinned certificate)."""
    with portal.services.database.session() as db:
        row = db.get(InteractiveSession, sid)
        assert row is not None and row.server_cert is not None
        pem = row.server_cert
    return node_tls_for(portal.settings.secret_key_path.parent).context(pem)
