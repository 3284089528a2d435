"""Relaying a browser's WebSocket to a session's server, and VNC's handshake on the way.

The target (host, port, secret) always comes from ``services.sessions.target``:
the host of the node Slurm runs the session's job on and the port its connection
file names, for the session's owner (or a view-only share). Nothing in the request
URL can name another host or port, so the proxy is no open relay. The connection is
TLS with the target's context: the portal's client certificate, and the session's own
server certificate as the only one accepted (``services.node_tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter as PromCounter
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hpcportal.errors import BadGateway
from hpcportal.services import rfb
from hpcportal.services.sessions import Target

log = logging.getLogger(__name__)

VNC_CONNECTIONS = PromCounter(
    "hpcportal_vnc_connections",
    "VNC connections relayed by the portal, by how: spliced (bytes copied between the "
    "two connections) or relayed (message by message, when splicing is not possible).",
    ["how"],
)

#: Close codes for a proxied socket the portal ends itself.
CLOSE_UPSTREAM_FAILED = 1014  # "bad gateway"
CLOSE_INTERNAL = 1011


async def open_upstream(
    url: str,
    *,
    tls: ssl.SSLContext,
    timeout: float,
    subprotocols: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    keepalive: bool = True,
) -> ClientConnection:
    """Connect to the session's server over TLS (``wss://``), or raise a 502 with a
    plain reason (a refused certificate included)."""
    try:
        return await connect(
            url,
            ssl=tls,
            subprotocols=[p for p in subprotocols] or None,  # type: ignore[misc]
            additional_headers=headers,
            open_timeout=timeout,
            max_size=None,
            compression=None,
            user_agent_header=None,
            proxy=None,
            ping_interval=20 if keepalive else None,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise BadGateway(f"The session's server does not answer ({type(exc).__name__}).") from None


class _Reader:
    """``read_exact`` over WebSocket messages, keeping what is left over."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.buffer = bytearray()

    async def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = await self._receive()
            if isinstance(data, str):
                raise rfb.RfbError("a text frame where RFB bytes were expected")
            self.buffer += data
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


async def _browser_bytes(websocket: WebSocket) -> bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data = message.get("bytes")
    if data is None:
        text = message.get("text") or ""
        return text.encode("latin-1", "replace")
    return bytes(data)


@dataclass
class VncUpstream:
    """A WebSocket to the session's websockify, past VNC authentication."""

    connection: ClientConnection
    leftover: bytes


async def connect_vnc(target: Target, *, timeout: float) -> VncUpstream:
    """Open the session's websockify and authenticate with the session's password.

    Raises ``BadGateway`` when the server cannot be reached or refuses the password
    (``rfb.RfbError`` is its cause), before anything is said to the browser.
    """
    upstream = await open_upstream(
        f"wss://{target.host}:{target.port}/",
        tls=target.tls,
        timeout=timeout,
        subprotocols=["binary"],
        keepalive=False,
    )
    server = _Reader(upstream.recv)

    async def send(data: bytes) -> None:
        await upstream.send(data)

    try:
        await asyncio.wait_for(
            rfb.authenticate_to_server(server.read_exact, send, target.secret), timeout
        )
    except (rfb.RfbError, ConnectionClosed, TimeoutError) as exc:
        await upstream.close()
        raise BadGateway(f"The session's VNC server refused the portal: {exc}") from exc
    return VncUpstream(upstream, bytes(server.buffer))


async def greet_browser(websocket: WebSocket, upstream: VncUpstream) -> None:
    """Be the browser's VNC server up to "security OK" (type None), then pass on any
    bytes either side already sent, so nothing is lost."""
    browser = _Reader(lambda: _browser_bytes(websocket))
    await rfb.greet_client(browser.read_exact, websocket.send_bytes)
    if browser.buffer:
        await upstream.connection.send(bytes(browser.buffer))
    if upstream.leftover:
        await websocket.send_bytes(upstream.leftover)


#: How often a view-only viewer's link is checked again (revocation, session end).
RECHECK_SECONDS = 3.0


async def relay(
    websocket: WebSocket,
    upstream: ClientConnection,
    *,
    still_valid: Callable[[], bool] | None = None,
) -> None:
    """Copy messages both ways (text stays text, bytes stay bytes) until one side ends,
    or until ``still_valid`` (checked every few seconds) says the access was revoked."""

    async def to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            await upstream.send(data if data is not None else (message.get("text") or ""))

    async def to_browser() -> None:
        async for data in upstream:
            if isinstance(data, str):
                await websocket.send_text(data)
            else:
                await websocket.send_bytes(data)

    async def watch() -> None:
        assert still_valid is not None
        while await run_in_threadpool(still_valid):
            await asyncio.sleep(RECHECK_SECONDS)

    tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_browser())]
    if still_valid is not None:
        tasks.append(asyncio.create_task(watch()))
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            with contextlib.suppress(ConnectionClosed, WebSocketDisconnect, RuntimeError):
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()


# --- VNC after its handshake: splicing the two connections --------------------------------
#
# Once RFB's handshake is over, both hops carry the same WebSocket frames: the server's
# frames are unmasked towards the portal and towards the browser alike, and a server
# accepts the browser's masked frames whatever the mask. So when neither hop uses an
# extension (compression), the portal can copy bytes between the two TCP connections
# instead of decoding every WebSocket message and encoding it again. That halves the
# portal's CPU per byte of screen (bench/vnc_proxy.py). It needs the transport under
# uvicorn's WebSocket; where that is not available, ``relay`` does the same job slower.
# Towards the session the transport is asyncio's TLS transport: the splice copies the
# plaintext frames and that transport encrypts and decrypts them.


class _Splice(asyncio.Protocol):
    """Copies what one transport receives into ``peer``, with back-pressure both ways."""

    def __init__(self, peer: asyncio.Transport, done: asyncio.Future[None]) -> None:
        self.peer = peer
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def eof_received(self) -> bool | None:
        self.peer.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:  # our transport is full: stop reading the peer
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


def _uvicorn_protocol(websocket: WebSocket) -> Any:
    """uvicorn's protocol object under this WebSocket, if it is one we can take over."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:  # pragma: no cover - another uvicorn
        return None
    proto = getattr(websocket._receive, "__self__", None)
    if not isinstance(proto, WebSocketsSansIOProtocol):
        return None
    if proto.conn.extensions or not _spliceable(proto.transport):
        return None
    return proto


def _spliceable(transport: object) -> bool:
    """A transport we can hand to another protocol (asyncio's or uvloop's)."""
    needed = ("set_protocol", "pause_reading", "resume_reading", "write", "close")
    return all(callable(getattr(transport, name, None)) for name in needed)


async def _server_init(reader: _Reader) -> bytes:
    """RFB's ServerInit: 24 bytes (size, pixel format, name length), then the name."""
    head = await reader.read_exact(24)
    (length,) = struct.unpack(">I", head[20:24])
    return head + await reader.read_exact(min(length, 1 << 20))


async def relay_vnc(
    websocket: WebSocket,
    upstream: VncUpstream,
    *,
    still_valid: Callable[[], bool] | None = None,
) -> None:
    """After the security handshake: pass ClientInit and ServerInit as messages, then
    splice the two connections (or relay messages when splicing is not possible)."""
    proto = _uvicorn_protocol(websocket)
    connection = upstream.connection
    if proto is None or connection.protocol.extensions or upstream.leftover:
        VNC_CONNECTIONS.labels("relayed").inc()
        await relay(websocket, connection, still_valid=still_valid)
        return
    try:
        await connection.send(await _browser_bytes(websocket))  # ClientInit
        server = _Reader(connection.recv)
        server_init = await _server_init(server)
    except (WebSocketDisconnect, ConnectionClosed, rfb.RfbError):
        await connection.close()
        return
    # The browser speaks next, and only after ServerInit: stop reading it now, so
    # everything it sends from here on waits in the kernel for the splice.
    browser = proto.transport
    browser.pause_reading()
    await websocket.send_bytes(server_init + bytes(server.buffer))
    quiet = proto.queue.empty() and len(connection.recv_messages.frames) == 0
    upstream_transport = connection.transport
    if not quiet or not _spliceable(upstream_transport):
        browser.resume_reading()
        VNC_CONNECTIONS.labels("relayed").inc()
        await relay(websocket, connection, still_valid=still_valid)
        return
    VNC_CONNECTIONS.labels("spliced").inc()
    await _splice(proto, browser, connection, upstream_transport, still_valid)


async def _splice(
    proto: Any,
    browser: asyncio.Transport,
    connection: ClientConnection,
    upstream: asyncio.Transport,
    still_valid: Callable[[], bool] | None,
) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    upstream.pause_reading()
    proto.stop_keepalive()  # its pings and pong timer would act on bytes it no longer sees
    browser.set_protocol(_Splice(upstream, done))
    upstream.set_protocol(_Splice(browser, done))
    browser.resume_reading()
    upstream.resume_reading()
    watcher = None
    if still_valid is not None:

        async def watch() -> None:
            while await run_in_threadpool(still_valid):
                await asyncio.sleep(RECHECK_SECONDS)
            browser.close()

        watcher = asyncio.create_task(watch())
    try:
        await done
    finally:
        if watcher is not None:
            watcher.cancel()
        browser.close()
        upstream.close()
        # The protocols we replaced never heard the connections end: tell them, so
        # uvicorn forgets the connection and the client's waiters finish.
        proto.connection_lost(None)
        connection.connection_lost(None)
