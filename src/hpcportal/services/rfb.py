"""The little of the RFB (VNC) protocol the portal speaks: VNC authentication.

The portal's VNC proxy authenticates to the session's server itself, with the
password only the server side knows, and then offers the browser the "None"
security type. So the password never reaches a browser, a URL or a log line.

VNC authentication is DES over a 16-byte challenge, keyed with the password's
first 8 bytes, each byte's bits reversed (the reference implementation's DES took
its key bits in the other order). The password file TigerVNC's ``-rfbauth`` reads
(what ``vncpasswd -f`` writes) is the password encrypted with a fixed, public key
the same way: obfuscation, not secrecy, so it must stay private to the user.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Awaitable, Callable

# cryptography keeps DES in its "decrepit" corner, where it belongs (pyproject pins a
# release that has it); nothing here silences its warnings.
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
#: The fixed key of VNC's password obfuscation (d3des byte order).
_OBFUSCATION_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105

ReadExact = Callable[[int], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


class RfbError(Exception):
    """The VNC server answered something other than a successful handshake."""


def new_password() -> str:
    """8 random characters: VNC authentication uses no more than 8."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(8))


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def _des_encrypt(key: bytes, data: bytes) -> bytes:
    """DES-ECB with a d3des-order key.

    Triple DES (encrypt, decrypt, encrypt) with the same 8-byte key three times is
    single DES. The full 24-byte key is passed because cryptography deprecates the
    short forms of the TripleDES key.
    """
    standard_key = bytes(_reverse_bits(b) for b in key)
    encryptor = Cipher(TripleDES(standard_key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(data) + encryptor.finalize()


def _password_bytes(password: str) -> bytes:
    return password.encode("latin-1", "replace")[:8].ljust(8, b"\0")


def auth_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication challenge."""
    if len(challenge) != 16:
        raise RfbError("the VNC challenge is not 16 bytes")
    return _des_encrypt(_password_bytes(password), challenge)


def password_file(full: str, view_only: str | None = None) -> bytes:
    """What ``vncpasswd -f`` writes for these passwords (full control, then view-only)."""
    data = _des_encrypt(_OBFUSCATION_KEY, _password_bytes(full))
    if view_only is not None:
        data += _des_encrypt(_OBFUSCATION_KEY, _password_bytes(view_only))
    return data


async def _reason(read_exact: ReadExact) -> str:
    (length,) = struct.unpack(">I", await read_exact(4))
    return (await read_exact(min(length, 4096))).decode("utf-8", "replace")


async def authenticate_to_server(read_exact: ReadExact, send: Send, password: str) -> None:
    """Be the client up to a successful SecurityResult, using VNC authentication."""
    version = await read_exact(12)
    if not version.startswith(b"RFB 003."):
        raise RfbError("the session's server does not speak RFB")
    await send(VERSION)
    (count,) = await read_exact(1)
    if count == 0:
        raise RfbError(f"the VNC server refused: {await _reason(read_exact)}")
    types = await read_exact(count)
    if SECURITY_VNC_AUTH not in types:
        raise RfbError("the VNC server does not offer VNC authentication")
    await send(bytes([SECURITY_VNC_AUTH]))
    await send(auth_response(password, await read_exact(16)))
    (result,) = struct.unpack(">I", await read_exact(4))
    if result != 0:
        raise RfbError(f"the VNC server refused the password: {await _reason(read_exact)}")


async def greet_client(read_exact: ReadExact, send: Send) -> None:
    """Be the server up to a successful SecurityResult, offering only "None"."""
    await send(VERSION)
    version = await read_exact(12)
    if not version.startswith(b"RFB 003."):
        raise RfbError("the browser does not speak RFB")
    await send(bytes([1, SECURITY_NONE]))
    (chosen,) = await read_exact(1)
    if chosen != SECURITY_NONE:
        raise RfbError("the browser chose a security type that was not offered")
    await send(struct.pack(">I", 0))
