"""Shells in the browser: each terminal is one login shell started as its owner.

The shell runs under the run-as helper's ``terminal`` operation (``runas/helper.py``):
the helper is started as the user (sudo or runuser), checks that it holds exactly the
user's groups, enters the asked folder as the user (so the kernel decides whether they
may), and relays a pseudo-terminal over its stdin and stdout. The portal never holds
the terminal itself, never runs anything as root and never sees a descriptor of the
user's: it only moves bytes between the WebSocket and the helper's pipes.

A terminal belongs to the replica that started it and outlives its WebSocket: a
browser that reloads or loses the network reattaches within
``terminal_reconnect_seconds`` and is shown what the shell printed meanwhile (the last
``BACKLOG_BYTES``). One socket is attached at a time; a second one of the owner's
takes the terminal over. A terminal nobody typed into for ``terminal_idle_seconds``
is closed. Opening, reattaching, refusals and closing are written to the audit log
with who and from which address.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, Forbidden, NotFound, PortalError
from hpcportal.lifecycle import cancel_task
from hpcportal.runas import AsUser, HelperStream, RunAs
from hpcportal.services import audit
from hpcportal.services.identity import Principal

log = logging.getLogger(__name__)

#: What a reattaching browser is shown of the output it missed.
BACKLOG_BYTES = 256 * 1024
#: Output waiting for a slow browser; past this it is detached (and reattaches).
QUEUE_BYTES = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
#: Seconds the helper may take to start the shell and answer.
START_TIMEOUT = 20.0
SWITCHED_OFF = "The terminal is switched off on this portal by its administrators."
NOT_FOUND = "No such terminal; it may have been closed. Open a new one."

Reason = Literal["exit", "idle", "detached", "closed", "stopping", "failed"]


class TerminalDisabled(Forbidden):
    code = "terminal_disabled"


@dataclass(frozen=True, slots=True)
class Ended:
    """The last thing an attached socket hears: why its terminal (or attachment) ended."""

    reason: Reason | Literal["taken", "too_slow"]
    exit_code: int | None = None


Event = bytes | Ended


class TerminalOut(BaseModel):
    """A terminal as the API shows it to its owner."""

    id: str
    cwd: str
    shell: str
    opened_at: datetime
    attached: bool


@dataclass(eq=False)
class Attachment:
    """One socket's view of a terminal: the events it has still to send."""

    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0

    def put(self, event: Event) -> bool:
        """Queue an event; False when output has outgrown ``QUEUE_BYTES``."""
        if isinstance(event, bytes):
            if self.queued_bytes + len(event) > QUEUE_BYTES:
                return False
            self.queued_bytes += len(event)
        self.queue.put_nowait(event)
        return True

    async def next(self) -> Event:
        event = await self.queue.get()
        if isinstance(event, bytes):
            self.queued_bytes -= len(event)
        return event


@dataclass(eq=False)
class Terminal:
    """One running shell, its owner and its output backlog."""

    id: str
    owner: str
    address: str
    cwd: str
    shell: str
    stream: HelperStream
    opened_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_input: float = field(default_factory=time.monotonic)
    detached_at: float | None = field(default_factory=time.monotonic)
    backlog: bytearray = field(default_factory=bytearray)
    attachment: Attachment | None = None
    ended: Ended | None = None

    def view(self) -> TerminalOut:
        return TerminalOut(
            id=self.id,
            cwd=self.cwd,
            shell=self.shell,
            opened_at=self.opened_at,
            attached=self.attachment is not None,
        )

    def output(self, data: bytes) -> None:
        """Keep ``data`` in the backlog and pass it to the attached socket, if any."""
        self.backlog += data
        if len(self.backlog) > BACKLOG_BYTES:
            del self.backlog[: len(self.backlog) - BACKLOG_BYTES]
        if self.attachment is not None and not self.attachment.put(data):
            self.detach(self.attachment, Ended("too_slow"))

    def detach(self, attachment: Attachment, why: Ended | None = None) -> None:
        """Let go of ``attachment`` (if it is still the one); the shell keeps running."""
        if self.attachment is attachment:
            self.attachment = None
            self.detached_at = time.monotonic()
            if why is not None:
                attachment.queue.put_nowait(why)

    async def send_input(self, data: bytes) -> None:
        """Keystrokes and pastes for the shell."""
        self.last_input = time.monotonic()
        for start in range(0, len(data), READ_CHUNK):
            piece = data[start : start + READ_CHUNK]
            await self.stream.write(b"d" + len(piece).to_bytes(4, "big") + piece)

    async def resize(self, rows: int, cols: int) -> None:
        """The browser's terminal size (the kernel tells the shell with SIGWINCH)."""
        self.last_input = time.monotonic()
        rows, cols = min(max(rows, 1), 1000), min(max(cols, 1), 1000)
        size = rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
        await self.stream.write(b"w" + (4).to_bytes(4, "big") + size)


class TerminalService:
    """The process's terminals (``AppServices.terminals``), their reader tasks and reaper."""

    def __init__(self, settings: Settings, runas: RunAs, database: Database) -> None:
        self.settings = settings
        self.runas = runas
        self.database = database
        self.terminals: dict[str, Terminal] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    # --- what the API asks -----------------------------------------------------------

    def check_enabled(self) -> None:
        if not self.settings.terminal_enabled:
            raise TerminalDisabled(SWITCHED_OFF)

    def mine(self, who: Principal) -> list[TerminalOut]:
        self.check_enabled()
        return [t.view() for t in self.terminals.values() if t.owner == who.username]

    async def open(
        self, who: Principal, address: str, cwd: str | None, rows: int, cols: int
    ) -> TerminalOut:
        """Start a login shell for ``who`` in ``cwd`` (default: their home folder)."""
        self.check_enabled()
        try:
            terminal = await self._start(who, address, cwd, rows, cols)
        except PortalError as exc:
            await self._audit(who.username, "terminal.open", "terminal", address, exc)
            raise
        target = f"terminal:{terminal.id}"
        await self._audit(who.username, "terminal.open", target, address, None, terminal.cwd)
        return terminal.view()

    async def attach(
        self, who: Principal, terminal_id: str, address: str
    ) -> tuple[Terminal, Attachment]:
        """Attach a socket of the owner's: its attachment starts with the backlog. Any
        other person's attempt is refused like a terminal that does not exist."""
        self.check_enabled()
        terminal = self.terminals.get(terminal_id)
        target = f"terminal:{terminal_id}"
        if terminal is None or terminal.owner != who.username:
            if terminal is not None:
                error = Forbidden(f"{who.username} tried to attach to {terminal.owner}'s terminal")
                await self._audit(who.username, "terminal.attach", target, address, error)
            raise NotFound(NOT_FOUND)
        if terminal.attachment is not None:
            terminal.detach(terminal.attachment, Ended("taken"))
        attachment = Attachment()
        if terminal.backlog:
            attachment.put(bytes(terminal.backlog))
        terminal.attachment = attachment
        terminal.detached_at = None
        terminal.address = address
        await self._audit(who.username, "terminal.attach", target, address, None)
        return terminal, attachment

    async def close_mine(self, who: Principal, terminal_id: str) -> None:
        self.check_enabled()
        terminal = self.terminals.get(terminal_id)
        if terminal is None or terminal.owner != who.username:
            raise NotFound(NOT_FOUND)
        await self.close(terminal, Ended("closed"))

    # --- lifetime --------------------------------------------------------------------

    async def _start(
        self, who: Principal, address: str, cwd: str | None, rows: int, cols: int
    ) -> Terminal:
        await self._make_room(who)
        stream, started = await AsUser(self.runas, who.username).open_terminal(
            rows=rows, cols=cols, cwd=cwd, timeout=START_TIMEOUT
        )
        terminal = Terminal(
            id=secrets.token_urlsafe(24),
            owner=who.username,
            address=address,
            cwd=started.cwd,
            shell=started.shell,
            stream=stream,
        )
        self.terminals[terminal.id] = terminal
        self._spawn(self._read(terminal))
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="terminal-reaper")
        return terminal

    async def _make_room(self, who: Principal) -> None:
        """At the limit, hang up the person's shell that has waited longest for a
        browser (closed tabs leave theirs waiting); if every one is attached, refuse."""
        mine = [t for t in self.terminals.values() if t.owner == who.username]
        if len(mine) < self.settings.terminal_max_per_user:
            return
        waiting = [t for t in mine if t.detached_at is not None]
        if not waiting:
            raise Conflict(
                f"You have {len(mine)} terminals open, the most this portal allows; "
                "close one first."
            )
        await self.close(min(waiting, key=lambda t: t.detached_at or 0.0), Ended("detached"))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, terminal: Terminal) -> None:
        """Pump the shell's output until it ends, then close the terminal."""
        stdout = terminal.stream.proc.stdout
        assert stdout is not None
        try:
            while data := await stdout.read(READ_CHUNK):
                terminal.output(data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.info("terminal %s: output ended: %s", terminal.id, exc)
        if terminal.ended is None:
            code = await terminal.stream.proc.wait()
            await self.close(terminal, Ended("exit", code))

    async def close(self, terminal: Terminal, why: Ended) -> None:
        """Hang up the shell (the helper sends SIGHUP), tell the socket, audit."""
        if terminal.ended is not None:
            return
        terminal.ended = why
        self.terminals.pop(terminal.id, None)
        if terminal.attachment is not None:
            terminal.attachment.queue.put_nowait(why)
            terminal.attachment = None
        await terminal.stream.aclose()
        seconds = (datetime.now(UTC) - terminal.opened_at).total_seconds()
        detail = f"{why.reason} after {seconds:.0f} s" + (
            f", exit code {why.exit_code}" if why.exit_code is not None else ""
        )
        target = f"terminal:{terminal.id}"
        await self._audit(terminal.owner, "terminal.close", target, terminal.address, None, detail)

    def due(self, terminal: Terminal, now: float) -> Reason | None:
        """Why the reaper should close ``terminal`` now, if it should."""
        idle = self.settings.terminal_idle_seconds
        if idle > 0 and now - terminal.last_input >= idle:
            return "idle"
        grace = self.settings.terminal_reconnect_seconds
        if terminal.detached_at is not None and now - terminal.detached_at >= grace:
            return "detached"
        return None

    async def _reap(self) -> None:
        """Close idle terminals and those nobody reattached in time, twice a second."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for terminal in list(self.terminals.values()):
                reason = self.due(terminal, now)
                if reason is not None:
                    await self.close(terminal, Ended(reason))

    async def stop(self) -> None:
        """The portal is stopping: hang up every shell."""
        await cancel_task(self._reaper)
        self._reaper = None
        for terminal in list(self.terminals.values()):
            await self.close(terminal, Ended("stopping"))
        for task in list(self._tasks):
            task.cancel()

    async def _audit(
        self,
        username: str,
        action: str,
        target: str | None,
        address: str,
        error: BaseException | None,
        detail: str | None = None,
    ) -> None:
        await audit.log(
            self.database, audit.Event.of(username, action, target, address, error, detail)
        )
