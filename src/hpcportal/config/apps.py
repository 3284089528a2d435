"""Interactive apps and the terminal: what runs as the user behind the browser.

Where apps are found, where sessions' folders go and how long a session may take to
start, the WebSocket and proxy options of the session proxy, the key that seals
sessions' secrets, and the in-browser terminal. Used by ``services/apps.py``,
``services/sessions/``, ``api/node_proxy.py``, ``api/sessions.py`` and
``services/terminal.py`` (with ``api/terminal.py``). ``Settings.secret_key_path``
(``hpcportal.config``) gives ``secret_key_file``'s default from the storage settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class AppSettings(BaseModel):
    """Interactive app sessions and the terminal in the browser."""

    # Interactive apps
    app_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders holding one folder per interactive app (app.yaml + "
        "script.sh.j2). The shipped apps come first; a site app with the same id wins.",
    )
    include_shipped_apps: bool = Field(
        default=True, description="Offer the apps shipped with the portal (desktop, ...)."
    )
    session_root: str = Field(
        default="{home}/hpcportal/sessions",
        description="Where each session's folder (script, output, connection file) is "
        "made, as the user.",
    )
    session_start_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a running session may take to write its connection file "
        "before it is reported as failed.",
    )
    websocket_compression: bool = Field(
        default=False,
        description="permessage-deflate on the portal's WebSockets (`serve`). Off: the "
        "VNC proxy can then copy bytes between browser and session instead of decoding "
        "and encoding every message (VNC data is compressed already); on shrinks "
        "live-update traffic on slow links at the cost of the portal's CPU.",
    )
    proxy_connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to reach a session's node through the proxy."
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="The key (AES-256-GCM) that seals session passwords and app tokens in "
        "the database; beside it, the portal's TLS client certificate for sessions' "
        "servers. Made on first use (0600 in a 0700 folder); every replica must use the "
        "same file. Unset: secrets/portal.key beside the SQLite database, else "
        "./secrets/portal.key.",
    )

    # The terminal in the browser (services/terminal.py)
    terminal_enabled: bool = Field(
        default=True,
        description="Offer a login shell in the browser (/terminal), started as the user "
        "through the run-as helper. Off: the page, the API and the socket say so (403).",
    )
    terminal_idle_seconds: float = Field(
        default=1800.0,
        ge=0,
        description="A terminal nobody typed into (or resized) for this many seconds is "
        "closed and its shell hung up; 0 never closes one for idleness.",
    )
    terminal_reconnect_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A shell whose browser left (reload, lost network) waits this many "
        "seconds for its owner to reattach, then is hung up.",
    )
    terminal_max_per_user: int = Field(
        default=4, gt=0, le=64, description="Shells one person may have open at once."
    )
