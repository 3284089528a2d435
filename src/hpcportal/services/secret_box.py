"""Secrets at rest: AES-GCM under the portal's key file, and that file's private folder.

Some values the portal must be able to use again grant access by themselves: a
session's VNC passwords, a web app's token. Stored as they are, anybody who reads
the database or a backup of it holds them. So they are stored sealed: AES-256-GCM
under a key kept in a file only the portal account can read (``secret_key_file``).
The database alone then grants nothing. Values that only need *checking* (share
links, API tokens) are stored as SHA-256 hashes instead and need no key.

The key is a file, not a per-process random value, so every replica opens what
another sealed; replicas share it the way they share the database URL. The first
process that needs it and finds none makes it (0600, in a 0700 folder), atomically,
so two replicas starting at once agree on one key. A key file or folder that others
can read or write is refused: it would undo the point of having it.

A sealed value reads ``v1:<key id>:<base64url(nonce | ciphertext | tag)>``. The
version names the scheme and the key id names the key, so a key can later be rotated
by keeping the old one for reading. The associated data binds a value to its place
(e.g. the session id and column), so a value copied to another row or column does not
open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import stat
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hpcportal.errors import Misconfigured

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A sealed value that does not open with this key (another key, or altered)."""


def private_folder(folder: Path) -> Path:
    """``folder``, made 0700 if missing; refused if others may enter or change it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if foreign := _not_ours(folder, info):
        raise Misconfigured(f"{foreign}; the portal keeps its keys only in a folder of its own.")
    if info.st_mode & 0o077:
        raise Misconfigured(
            f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"make it private: chmod 700 {folder}"
        )
    return folder


def _not_ours(path: Path, info: os.stat_result) -> str | None:
    """Why ``path`` is not the portal's own (another uid owns it), or None."""
    if info.st_uid == os.geteuid():
        return None
    return f"{path} belongs to uid {info.st_uid}, not to the portal's account (uid {os.geteuid()})"


def check_private_file(path: Path) -> None:
    """Refuse a key file that is not the portal's own or that others may read."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise Misconfigured(f"{path} is not a regular file.")
    if foreign := _not_ours(path, info):
        raise Misconfigured(f"{foreign}.")
    if info.st_mode & 0o077:
        raise Misconfigured(
            f"{path} is readable or writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); anyone who can read it can read every "
            f"sealed secret. Make it private (chmod 600 {path}) or use another key file."
        )


def write_private_once(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600) holding ``data`` unless it exists; False if it did.

    Written to a hidden temporary name, flushed, then linked to the final name, so a
    reader never sees half a file and of two processes racing, exactly one wins.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


class SecretBox:
    """Seals and opens short secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"hpcportal-secret-box\0" + key).hexdigest()[:8]

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The key in ``path`` (base64, one line), made first if there is none."""
        path = path.absolute()
        private_folder(path.parent)
        if not path.exists():
            key = base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
            write_private_once(path, key)  # a replica that won the race made it: use that
        check_private_file(path)
        text = path.read_bytes().strip()
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise Misconfigured(
                f"{path} does not hold a key ({KEY_BYTES} bytes in base64 on one line)."
            )
        return cls(key)

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` sealed for the place named by ``context``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        data = self._aead.encrypt(nonce, plaintext.encode(), self._aad(context))
        body = base64.urlsafe_b64encode(nonce + data).decode().rstrip("=")
        return f"{VERSION}:{self.key_id}:{body}"

    def open(self, sealed: str, context: str) -> str:
        """The plaintext of a value ``seal`` made for the same ``context``."""
        version, _, rest = sealed.partition(":")
        key_id, _, body = rest.partition(":")
        if version != VERSION or not body:
            raise SecretUnreadable("not a sealed value (perhaps stored before sealing)")
        if key_id != self.key_id:
            raise SecretUnreadable(f"sealed with another key ({key_id})")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(context))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretUnreadable("altered, or sealed for another place") from exc
        return data.decode()

    @staticmethod
    def _aad(context: str) -> bytes:
        return f"hpcportal:{VERSION}:{context}".encode()


_boxes: dict[Path, SecretBox] = {}
_lock = threading.Lock()


def box_for(path: Path) -> SecretBox:
    """The process's box for the key file ``path`` (read, or made, once)."""
    path = path.absolute()
    with _lock:
        box = _boxes.get(path)
        if box is None:
            box = _boxes[path] = SecretBox.from_file(path)
        return box
