"""The terminal's pieces that need no shell: the helper's input frames and the
service's time-outs (integration tests run real shells: test_terminal.py)."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import time
from typing import cast

import pytest

from hpcportal.config import Settings
from hpcportal.runas import helper
from hpcportal.runas.helper_walk import Refused
from hpcportal.runas.stream import HelperStream
from hpcportal.services.terminal import Terminal, TerminalService


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "big") + body


def test_whole_frames_are_taken_and_a_partial_one_waits() -> None:
    master, slave = os.openpty()
    try:
        data = frame(b"d", b"ls\r") + frame(
            b"w", (40).to_bytes(2, "big") + (120).to_bytes(2, "big")
        )
        buffer, pending = bytearray(data + frame(b"d", b"more")[:6]), bytearray()
        helper.take_frames(buffer, pending, master)
        assert pending == b"ls\r" and buffer == frame(b"d", b"more")[:6]
        size = fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8)
        assert struct.unpack("HHHH", size)[:2] == (40, 120)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    "data",
    [
        frame(b"x", b"?"),  # an unknown kind
        frame(b"w", b"\0\1"),  # a size of the wrong length
        b"d" + (helper.TERMINAL_FRAME + 1).to_bytes(4, "big"),  # too large
    ],
)
def test_malformed_frames_are_refused(data: bytes) -> None:
    with pytest.raises(Refused):
        helper.take_frames(bytearray(data), bytearray(), -1)


def service(**values: object) -> TerminalService:
    settings = Settings(jwt_secret="x" * 40, **values)  # type: ignore[arg-type]
    return TerminalService(settings, runas=None, database=None)  # type: ignore[arg-type]


def terminal() -> Terminal:
    stream = cast(HelperStream, None)
    return Terminal(id="t", owner="alice", address="127.0.0.1", cwd="/", shell="", stream=stream)


def test_idle_and_unattached_terminals_are_due() -> None:
    now = time.monotonic()
    shell = terminal()
    shell.detached_at = None  # attached
    shell.last_input = now - 10
    assert service(terminal_idle_seconds=11).due(shell, now) is None
    assert service(terminal_idle_seconds=10).due(shell, now) == "idle"
    assert service(terminal_idle_seconds=0).due(shell, now) is None  # 0: never
    shell.last_input = now
    shell.detached_at = now - 5
    assert service(terminal_reconnect_seconds=6).due(shell, now) is None
    assert service(terminal_reconnect_seconds=5).due(shell, now) == "detached"
