"""``/terminal/sessions``: login shells in the browser (service in ``services.terminal``).

``POST`` starts a shell (optionally in a folder), ``GET`` lists the caller's, ``DELETE``
hangs one up. ``/terminal/sessions/{id}/ws`` attaches the owner's browser: binary
messages are keystrokes one way and terminal output the other; the text message
``{"type": "resize", "rows": r, "cols": c}`` sets the size. The server's first text
message is ``{"type": "attached", ...}`` (then the backlog, so a reattaching browser
resets its screen first), its last ``{"type": "closed", "reason": ...}`` (the shell
ended, or this socket's login expired or logged out: the shell then waits for a
reattach).

The socket is checked like the live-update socket (``api/live.py``): the portal's own
Origin, then the login; a terminal that is not the caller's is "not found" (and the
attempt audited). All answers are 403 while ``terminal_enabled`` is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator

from hpcportal.api.live import authenticate, refuse, refused_origin
from hpcportal.composition import services_of
from hpcportal.dependencies import ClientAddress, CurrentUser
from hpcportal.errors import PortalError
from hpcportal.limits import Line
from hpcportal.services.live import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_AUTHENTICATED,
    LiveHub,
    LiveIdentity,
)
from hpcportal.services.terminal import Attachment, Ended, Terminal, TerminalOut, TerminalService

router = APIRouter(tags=["terminal"])

#: The largest message a browser may send at once (a paste); the shell gets it in pieces.
MAX_INPUT = 1024 * 1024
CLOSE_NORMAL = 1000
#: How often an attached socket checks that its login still holds (expiry, logout).
LOGIN_CHECK_SECONDS = 2.0
CLOSE_TOO_BIG = 1009


def get_terminals(request: Request) -> TerminalService:
    return services_of(request).terminals


TerminalsDep = Annotated[TerminalService, Depends(get_terminals)]


class TerminalOpen(BaseModel):
    """Where to start the shell and the browser's terminal size."""

    cwd: Line | None = Field(
        default=None,
        max_length=4096,
        description="An absolute folder, entered as you (the system decides); "
        "default: your home folder.",
    )
    rows: int = Field(default=24, ge=1, le=1000)
    cols: int = Field(default=80, ge=1, le=1000)

    @field_validator("cwd")
    @classmethod
    def absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("the folder must be an absolute path")
        return value or None


@router.get("/terminal/sessions", response_model=list[TerminalOut])
async def list_terminals(user: CurrentUser, terminals: TerminalsDep) -> list[TerminalOut]:
    """Your open shells on this portal replica."""
    return terminals.mine(user)


@router.post("/terminal/sessions", response_model=TerminalOut, status_code=201)
async def open_terminal(
    body: TerminalOpen, user: CurrentUser, terminals: TerminalsDep, address: ClientAddress
) -> TerminalOut:
    """Start your login shell; attach to it with the WebSocket below."""
    return await terminals.open(user, address, body.cwd, body.rows, body.cols)


@router.delete("/terminal/sessions/{terminal_id}", status_code=204)
async def close_terminal(terminal_id: str, user: CurrentUser, terminals: TerminalsDep) -> None:
    """Hang up one of your shells."""
    await terminals.close_mine(user, terminal_id)


@router.websocket("/terminal/sessions/{terminal_id}/ws")
async def terminal_socket(websocket: WebSocket, terminal_id: str) -> None:
    """Attach the owner's browser to a shell (protocol in the module docstring)."""
    hub = services_of(websocket).live
    terminals = services_of(websocket).terminals
    if await refused_origin(websocket, hub):
        return
    address = websocket.client.host if websocket.client else "unknown"
    try:
        terminals.check_enabled()
        identity = await authenticate(websocket, hub.settings, hub)
        terminal, attachment = await terminals.attach(identity.principal, terminal_id, address)
    except PortalError as exc:
        code = CLOSE_NOT_AUTHENTICATED if exc.status == 401 else CLOSE_FORBIDDEN
        await refuse(websocket, code, exc.status, exc)
        return
    await websocket.accept()
    try:
        await _serve(websocket, terminals, terminal, attachment, identity)
    finally:
        terminal.detach(attachment)


async def _serve(
    websocket: WebSocket,
    terminals: TerminalService,
    terminal: Terminal,
    attachment: Attachment,
    identity: LiveIdentity,
) -> None:
    """Relay both ways until the terminal ends, the browser leaves or the login expires."""
    settings, hub = terminals.settings, services_of(websocket).live
    await websocket.send_json(
        {
            "type": "attached",
            "id": terminal.id,
            "cwd": terminal.cwd,
            "idle_seconds": settings.terminal_idle_seconds,
            "reconnect_seconds": settings.terminal_reconnect_seconds,
        }
    )
    watcher = asyncio.create_task(_login_ends(hub, identity))
    tasks = {
        asyncio.create_task(_send(websocket, attachment)),
        asyncio.create_task(_receive(websocket, terminal)),
        watcher,
    }
    done, pending = await asyncio.wait(tasks, return_when="FIRST_COMPLETED")
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if watcher in done:  # the shell waits for a reattach with a fresh login
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "closed", "reason": watcher.result()})
            await websocket.close(CLOSE_NOT_AUTHENTICATED, "Log in again.")


async def _login_ends(hub: LiveHub, identity: LiveIdentity) -> str:
    """Return when the socket's login expires or is logged out (on any replica)."""
    while True:
        await asyncio.sleep(LOGIN_CHECK_SECONDS)
        if identity.expires_at is not None and identity.expires_at <= datetime.now(UTC):
            return "expired"
        if identity.jti is not None:
            if hub.revocations.needs_sync():
                await run_in_threadpool(_sync_logouts, hub)
            if identity.jti in hub.revocations:
                return "logged_out"


def _sync_logouts(hub: LiveHub) -> None:
    with hub.database.session() as session:
        hub.revocations.sync(session)


async def _send(websocket: WebSocket, attachment: Attachment) -> None:
    """Terminal output to the browser; the ``Ended`` event says why it stops."""
    while True:
        event = await attachment.next()
        if isinstance(event, Ended):
            with contextlib.suppress(Exception):
                body = {"type": "closed", "reason": event.reason, "exit_code": event.exit_code}
                await websocket.send_json(body)
                await websocket.close(CLOSE_NORMAL)
            return
        await websocket.send_bytes(event)


async def _receive(websocket: WebSocket, terminal: Terminal) -> None:
    """Keystrokes (binary) and sizes (JSON text) from the browser, until it leaves."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                if len(data) > MAX_INPUT:
                    await websocket.close(CLOSE_TOO_BIG, "That paste is too large.")
                    return
                await terminal.send_input(data)
                continue
            await _control(terminal, message.get("text") or "")


async def _control(terminal: Terminal, text: str) -> None:
    """A text message: only ``resize`` means anything; anything else is ignored."""
    try:
        command = json.loads(text)
        if isinstance(command, dict) and command.get("type") == "resize":
            await terminal.resize(int(command["rows"]), int(command["cols"]))
    except (ValueError, KeyError, TypeError):
        return
