"""VNC authentication pieces, checked against TigerVNC's own ``vncpasswd``."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess

import pytest

from hpcportal.services import rfb


@pytest.mark.skipif(shutil.which("vncpasswd") is None, reason="tigervnc-tools not installed")
@pytest.mark.parametrize(
    ("full", "view"), [("secret12", "viewonly"), ("a", "b"), ("longer-than-8", "Zz9")]
)
def test_password_file_matches_vncpasswd(full: str, view: str) -> None:
    made = subprocess.run(
        ["vncpasswd", "-f"], input=f"{full}\n{view}\n".encode(), capture_output=True, check=True
    ).stdout
    assert rfb.password_file(full, view) == made


def test_new_passwords_are_random_and_eight_characters() -> None:
    seen = {rfb.new_password() for _ in range(50)}
    assert len(seen) == 50
    assert all(len(p) == 8 and p.isalnum() for p in seen)


class _Pipe:
    """Two in-memory byte streams joining a client coroutine and a server coroutine."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.to_client: asyncio.Queue[bytes] = asyncio.Queue()
        self.server_buf = bytearray()
        self.client_buf = bytearray()

    @staticmethod
    async def _read(queue: asyncio.Queue[bytes], buf: bytearray, n: int) -> bytes:
        while len(buf) < n:
            buf += await queue.get()
        out = bytes(buf[:n])
        del buf[:n]
        return out

    async def server_read(self, n: int) -> bytes:
        return await self._read(self.to_server, self.server_buf, n)

    async def client_read(self, n: int) -> bytes:
        return await self._read(self.to_client, self.client_buf, n)

    async def server_send(self, data: bytes) -> None:
        await self.to_client.put(data)

    async def client_send(self, data: bytes) -> None:
        await self.to_server.put(data)


async def _vnc_server(pipe: _Pipe, password: str, challenge: bytes) -> bytes:
    """A VNC server's side of the handshake; returns what the client answered."""
    await pipe.server_send(b"RFB 003.008\n")
    assert await pipe.server_read(12) == b"RFB 003.008\n"
    await pipe.server_send(bytes([2, 19, 2]))  # VeNCrypt and VNC auth offered
    assert await pipe.server_read(1) == bytes([2])
    await pipe.server_send(challenge)
    answer = await pipe.server_read(16)
    ok = answer == rfb.auth_response(password, challenge)
    await pipe.server_send(struct.pack(">I", 0 if ok else 1))
    if not ok:
        reason = b"Authentication failure"
        await pipe.server_send(struct.pack(">I", len(reason)) + reason)
    return answer


def test_client_side_handshake_answers_the_challenge_and_reports_refusal() -> None:
    async def run(client_password: str) -> None:
        pipe = _Pipe()
        server = asyncio.create_task(_vnc_server(pipe, "right123", bytes(range(16))))
        try:
            await rfb.authenticate_to_server(pipe.client_read, pipe.client_send, client_password)
        finally:
            await server

    asyncio.run(run("right123"))
    with pytest.raises(rfb.RfbError, match="Authentication failure"):
        asyncio.run(run("wrong456"))


def test_browser_side_offers_only_none_and_refuses_other_choices() -> None:
    async def run(choice: int) -> bytes:
        pipe = _Pipe()
        greeting = asyncio.create_task(rfb.greet_client(pipe.server_read, pipe.server_send))
        assert await pipe.client_read(12) == b"RFB 003.008\n"
        await pipe.client_send(b"RFB 003.008\n")
        offered = await pipe.client_read(2)
        await pipe.client_send(bytes([choice]))
        if choice == rfb.SECURITY_NONE:
            await greeting
            return offered + await pipe.client_read(4)
        with pytest.raises(rfb.RfbError):
            await greeting
        return offered

    assert asyncio.run(run(1)) == bytes([1, 1]) + b"\0\0\0\0"
    assert asyncio.run(run(2)) == bytes([1, 1])
