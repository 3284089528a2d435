"""A small RFB (VNC) client for tests and benchmarks, with no dependency to install.

It speaks RFB 3.8 over a plain TCP socket (straight to Xvnc) or over a WebSocket (to
websockify, as noVNC does), authenticates with VNC authentication or security type
None, asks for framebuffer updates in Raw/CopyRect (32-bit true colour) and keeps a
copy of the framebuffer, so a test can check what the remote screen shows.

VNC authentication encrypts the server's 16-byte challenge with DES, keyed by the
password (8 bytes, zero-padded) with the bits of every byte reversed. DES is written
out below in plain Python (a few microseconds do not matter here) because nothing in
the test environment provides it.

Typical use::

    with connect_websocket("ws://127.0.0.1:5901/", password="secret12") as vnc:
        vnc.request_update()
        vnc.read_update()
        print(vnc.width, vnc.height, vnc.distinct_colours())
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

# --- DES (FIPS 46-3), encryption of one block ---------------------------------------------

# fmt: off
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
       62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
       38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
       36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
       34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31,
      32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
        10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
        14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36,
        29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_SBOX = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
     0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
     15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
     3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
     13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
     13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
     1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
     13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
     3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
     14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
     11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
     10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
     4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
     13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
     6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
     1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
     2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)
# fmt: on


def _permute(value: int, table: Sequence[int], width: int) -> int:
    """Bit ``i`` of the result (from the left) is bit ``table[i]`` of ``value`` (1-based)."""
    out = 0
    for position in table:
        out = (out << 1) | ((value >> (width - position)) & 1)
    return out


def _subkeys(key: bytes) -> list[int]:
    cd = _permute(int.from_bytes(key, "big"), _PC1, 64)
    c, d = cd >> 28, cd & 0xFFFFFFF
    keys = []
    for shift in _SHIFTS:
        c = ((c << shift) | (c >> (28 - shift))) & 0xFFFFFFF
        d = ((d << shift) | (d >> (28 - shift))) & 0xFFFFFFF
        keys.append(_permute((c << 28) | d, _PC2, 56))
    return keys


def _feistel(half: int, subkey: int) -> int:
    mixed = _permute(half, _E, 32) ^ subkey
    out = 0
    for box in range(8):
        six = (mixed >> (42 - 6 * box)) & 0x3F
        row = ((six >> 4) & 2) | (six & 1)
        out = (out << 4) | _SBOX[box][row * 16 + ((six >> 1) & 0xF)]
    return _permute(out, _P, 32)


def des_encrypt_block(key: bytes, block: bytes) -> bytes:
    """DES encryption of one 8-byte ``block`` with the 8-byte ``key`` (parity ignored)."""
    if len(key) != 8 or len(block) != 8:
        raise ValueError("DES takes an 8-byte key and an 8-byte block")
    lr = _permute(int.from_bytes(block, "big"), _IP, 64)
    left, right = lr >> 32, lr & 0xFFFFFFFF
    for subkey in _subkeys(key):
        left, right = right, left ^ _feistel(right, subkey)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication ``challenge`` (16 bytes) for ``password``.

    Only the first 8 characters count, as with every VNC server.
    """
    if len(challenge) != 16:
        raise ValueError("the VNC challenge is 16 bytes")
    raw = password.encode("latin-1")[:8].ljust(8, b"\0")
    key = bytes(_reverse_bits(b) for b in raw)
    return des_encrypt_block(key, challenge[:8]) + des_encrypt_block(key, challenge[8:])


# --- Transports ----------------------------------------------------------------------------


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes:
        """Some bytes (never empty); raises ``ConnectionError`` at the end of the stream
        and ``TimeoutError`` when nothing came within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class TcpTransport:
    """RFB straight over TCP (to Xvnc's rfb port)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectionError(str(exc)) from exc
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


class WebSocketTransport:
    """RFB in binary WebSocket messages (to websockify, or a proxy in front of it)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        subprotocols: Sequence[str] | None = ("binary",),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        self._stack = ExitStack()
        self.ws = self._stack.enter_context(
            connect(
                url,
                additional_headers=dict(headers or {}),
                subprotocols=[Subprotocol(p) for p in subprotocols or ()] or None,
                open_timeout=timeout,
                max_size=None,
                compression=None,
                ssl=tls,
            )
        )

    def send(self, data: bytes) -> None:
        self.ws.send(data)

    def recv(self, timeout: float) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            message = self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise ConnectionError(f"the WebSocket closed: {exc}") from exc
        if isinstance(message, str):
            return message.encode("latin-1")
        return message

    def close(self) -> None:
        self._stack.close()


# --- RFB -----------------------------------------------------------------------------------

SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
ENCODING_RAW = 0
ENCODING_COPYRECT = 1
ENCODING_DESKTOP_SIZE = -223
#: Key and button codes for ``send_key`` and ``send_pointer``.
KEY_RETURN = 0xFF0D
BUTTON_LEFT = 1


class RFBError(Exception):
    """The server refused or spoke something this client does not understand."""


class AuthenticationFailed(RFBError):
    """The server answered the security handshake with a failure (wrong password...)."""


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int
    encoding: int


class RFBClient:
    """One RFB connection after the handshake; a context manager that closes it."""

    def __init__(self, transport: Transport, timeout: float = 10.0) -> None:
        self.transport = transport
        self.timeout = timeout
        self.buffer = bytearray()
        self.bytes_received = 0
        self.width = 0
        self.height = 0
        self.name = ""
        self.security_types: list[int] = []
        self.framebuffer = bytearray()
        self.cut_text: list[bytes] = []
        self.bells = 0

    # -- I/O

    def _read(self, size: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"RFB: waited for {size} bytes, have {len(self.buffer)}")
            data = self.transport.recv(left)
            self.bytes_received += len(data)
            self.buffer += data
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def _u8(self) -> int:
        return self._read(1)[0]

    def _u32(self) -> int:
        value: int = struct.unpack(">I", self._read(4))[0]
        return value

    def _reason(self) -> str:
        return self._read(self._u32()).decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        self.transport.send(data)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RFBClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- Handshake

    def handshake(self, password: str | None = None, shared: bool = True) -> None:
        """RFB 3.8 up to ServerInit: VNC authentication with ``password``, else None.

        Raises ``AuthenticationFailed`` when the server says no, ``RFBError`` when it
        does not offer the security type asked for.
        """
        version = self._read(12)
        if not version.startswith(b"RFB 003."):
            raise RFBError(f"not an RFB server: {version!r}")
        self.send(b"RFB 003.008\n")
        count = self._u8()
        if count == 0:
            raise RFBError(f"the server refused the connection: {self._reason()}")
        self.security_types = list(self._read(count))
        wanted = SECURITY_VNC_AUTH if password is not None else SECURITY_NONE
        if wanted not in self.security_types:
            raise RFBError(f"the server offers security types {self.security_types}, not {wanted}")
        self.send(bytes([wanted]))
        if password is not None:
            self.send(vnc_auth_response(password, self._read(16)))
        if self._u32() != 0:
            raise AuthenticationFailed(self._reason())
        self.send(bytes([1 if shared else 0]))
        self.width, self.height = struct.unpack(">HH", self._read(4))
        self._read(16)  # the server's pixel format: we set our own below
        self.name = self._reason()
        self.set_pixel_format()
        self.set_encodings([ENCODING_RAW, ENCODING_COPYRECT, ENCODING_DESKTOP_SIZE])
        self.framebuffer = bytearray(self.width * self.height * 4)

    def set_pixel_format(self) -> None:
        """32 bits per pixel, depth 24, little-endian true colour: 0x00RRGGBB words."""
        fmt = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        self.send(struct.pack(">B3x", 0) + fmt)

    def set_encodings(self, encodings: Iterable[int]) -> None:
        codes = list(encodings)
        self.send(struct.pack(f">BxH{len(codes)}i", 2, len(codes), *codes))

    # -- Client messages

    def request_update(
        self, incremental: bool = False, region: tuple[int, int, int, int] | None = None
    ) -> None:
        """FramebufferUpdateRequest for ``region`` (x, y, width, height), else all."""
        x, y, w, h = region or (0, 0, self.width, self.height)
        self.send(struct.pack(">BBHHHH", 3, 1 if incremental else 0, x, y, w, h))

    def send_key(self, keysym: int, down: bool) -> None:
        self.send(struct.pack(">BBxxI", 4, 1 if down else 0, keysym))

    def type_text(self, text: str) -> None:
        """Press and release the key of each (Latin-1) character of ``text``."""
        for ch in text:
            keysym = KEY_RETURN if ch == "\n" else ord(ch)
            self.send_key(keysym, True)
            self.send_key(keysym, False)

    def send_pointer(self, x: int, y: int, buttons: int = 0) -> None:
        self.send(struct.pack(">BBHH", 5, buttons, x, y))

    def send_cut_text(self, text: bytes) -> None:
        self.send(struct.pack(">B3xI", 6, len(text)) + text)

    # -- Server messages

    def read_update(self, timeout: float | None = None) -> list[Rect]:
        """Read server messages until a FramebufferUpdate, apply it, return its rects."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            kind = self._read(1, max(0.0, deadline - time.monotonic()))[0]
            if kind == 0:
                return self._framebuffer_update()
            if kind == 1:  # SetColourMapEntries: not used in true colour, skip
                _, _, count = struct.unpack(">BHH", self._read(5))
                self._read(6 * count)
            elif kind == 2:
                self.bells += 1
            elif kind == 3:
                self._read(3)
                self.cut_text.append(self._read(self._u32()))
            else:
                raise RFBError(f"unexpected server message type {kind}")

    def _framebuffer_update(self) -> list[Rect]:
        self._read(1)
        (count,) = struct.unpack(">H", self._read(2))
        rects = []
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
            rect = Rect(x, y, w, h, encoding)
            if encoding == ENCODING_RAW:
                self._raw(rect, self._read(w * h * 4))
            elif encoding == ENCODING_COPYRECT:
                sx, sy = struct.unpack(">HH", self._read(4))
                self._copy(rect, sx, sy)
            elif encoding == ENCODING_DESKTOP_SIZE:
                self.width, self.height = w, h
                self.framebuffer = bytearray(w * h * 4)
            else:
                raise RFBError(f"unexpected encoding {encoding}")
            rects.append(rect)
        return rects

    def _raw(self, rect: Rect, pixels: bytes) -> None:
        stride, row = self.width * 4, rect.width * 4
        for line in range(rect.height):
            start = (rect.y + line) * stride + rect.x * 4
            self.framebuffer[start : start + row] = pixels[line * row : (line + 1) * row]

    def _copy(self, rect: Rect, sx: int, sy: int) -> None:
        stride, row = self.width * 4, rect.width * 4
        rows = [
            bytes(self.framebuffer[(sy + i) * stride + sx * 4 :][:row]) for i in range(rect.height)
        ]
        for i, data in enumerate(rows):
            start = (rect.y + i) * stride + rect.x * 4
            self.framebuffer[start : start + row] = data

    def read_full_frame(self, timeout: float | None = None) -> None:
        """Ask for the whole screen and read updates until every pixel came at least once."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self.request_update(incremental=False)
        covered = 0
        while covered < self.width * self.height:
            rects = self.read_update(max(0.0, deadline - time.monotonic()))
            covered += sum(r.width * r.height for r in rects if r.encoding >= 0)
            if covered < self.width * self.height:
                self.request_update(incremental=True)

    def png(self) -> bytes:
        """The framebuffer as a PNG image (to look at what a test saw)."""
        rows = bytearray()
        stride = self.width * 4
        for y in range(self.height):
            rows.append(0)  # filter: none
            line = self.framebuffer[y * stride : (y + 1) * stride]
            rgb = bytearray(self.width * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = line[2::4], line[1::4], line[0::4]
            rows += rgb

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
            + chunk(b"IEND", b"")
        )

    def distinct_colours(self, limit: int = 1000) -> int:
        """How many different pixel values the framebuffer holds (counting stops at ``limit``)."""
        seen: set[bytes] = set()
        view = memoryview(self.framebuffer)
        for i in range(0, len(view), 4):
            seen.add(bytes(view[i : i + 3]))
            if len(seen) >= limit:
                break
        return len(seen)


def connect_tcp(
    host: str, port: int, password: str | None = None, timeout: float = 10.0, shared: bool = True
) -> RFBClient:
    """An RFB connection straight to a VNC server, after the handshake."""
    client = RFBClient(TcpTransport(host, port, timeout), timeout)
    try:
        client.handshake(password, shared)
    except BaseException:
        client.close()
        raise
    return client


def connect_websocket(
    url: str,
    password: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    shared: bool = True,
    tls: ssl.SSLContext | None = None,
) -> RFBClient:
    """An RFB connection through websockify (``wss://node:port/`` with ``tls``, the
    portal's client certificate and the session's pinned one), after the handshake."""
    client = RFBClient(WebSocketTransport(url, headers, timeout, tls=tls), timeout)
    try:
        client.handshake(password, shared)
    except BaseException:
        client.close()
        raise
    return client
