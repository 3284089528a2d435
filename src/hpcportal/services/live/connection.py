"""One socket and who is on it; what follows a job's output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from hpcportal.services.identity import Principal
from hpcportal.services.job_output import (
    OutputChunk,
)

# --- Sockets and who is on them ----------------------------------------------------------


class LiveSocket(Protocol):
    """What the hub needs of a WebSocket (Starlette's ``WebSocket`` is one)."""

    async def accept(self) -> None: ...

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveIdentity:
    """Who opened a socket, and with which credential (to close it when that ends)."""

    principal: Principal
    jti: str | None = None
    token_id: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: int
    reason: str


@dataclass(eq=False)
class Connection:
    socket: LiveSocket
    identity: LiveIdentity
    limit: int
    channels: set[str] = field(default_factory=set)
    outputs: dict[str, Follower] = field(default_factory=dict)
    bad_messages: int = 0
    closed: bool = False
    sender: asyncio.Task[None] | None = None
    queue: asyncio.Queue[str | CloseRequest] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue()

    @property
    def user(self) -> str:
        return self.identity.principal.username

    @property
    def is_admin(self) -> bool:
        return self.identity.principal.is_admin

    def behind(self) -> bool:
        return self.queue.qsize() >= self.limit


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """What a follower tells a Server-Sent Events watcher: a chunk it read, that the
    job has finished and everything was read (``end``), or why it stopped (``error``)."""

    kind: Literal["output", "end", "error"]
    chunk: OutputChunk | None = None
    message: str = ""


@dataclass(eq=False)
class OutputWatch:
    """One Server-Sent Events stream watching a follower (``LiveHub.watch_output``)."""

    follower: Follower
    queue: asyncio.Queue[OutputEvent] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class Follower:
    """One user's reading of one job's output, shared by all their sockets and streams;
    its task (``LiveHub._follow_loop``) runs while anyone watches."""

    principal: Principal
    job_id: str
    created: float = field(default_factory=time.monotonic)
    offsets: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    finished_streams: set[str] = field(default_factory=set)
    subscribers: set[Connection] = field(default_factory=set)
    watches: set[OutputWatch] = field(default_factory=set)
    verified: bool = False
    done: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def watched(self) -> bool:
        return bool(self.subscribers or self.watches)
