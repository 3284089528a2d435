"""The helper's answers: its JSON line read, and its errors as typed portal errors.

Every way of running the helper (one exchange in ``boundary``, a stream in
``stream``) reads its answer here, so a missing answer, a sudo refusal and each
error kind the helper names become the same typed error whichever way it ran.
"""

from __future__ import annotations

import json
from typing import Any

from hpcportal.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    InsufficientStorage,
    InvalidInput,
    IsDirectory,
    NotFound,
    PayloadTooLarge,
    PortalError,
    PreconditionFailed,
    PreconditionRequired,
    RunAsUnavailable,
)


def unavailable(stderr: str) -> RunAsUnavailable:
    """sudo refused to start the helper (no sudoers rule, or a user outside its group)."""
    return RunAsUnavailable(
        f"The portal cannot act as users: {stderr} "
        "(is the sudoers rule from `hpcportal runas install` in place, and does "
        "its runas_group admit this user?)"
    )


def decode_answer(line: bytes, stderr: str, path: object) -> dict[str, Any]:
    """The helper's JSON answer line; a failure it reports becomes its typed error, and
    no line or one that is not a JSON object a ``PortalError`` with what the helper
    said on stderr (a crash: the helper itself answers every refusal on stdout)."""
    if not line:
        raise PortalError(f"The run-as helper gave no answer: {stderr[:300]}")
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        said = f": {stderr[:300]}" if stderr else "."
        raise PortalError(f"The run-as helper gave a malformed answer{said}")
    if not answer.get("ok"):
        raise helper_error(answer, path)
    return answer


def helper_error(answer: dict[str, Any], path: object) -> PortalError:
    """The helper's error as the typed error a person can act on.

    ``permission`` is the kernel's own EACCES/EPERM for the user, so the 403 it
    becomes is the system's answer, not a rule of the portal.
    """
    kind = answer.get("error")
    message = str(answer.get("message") or "failed")
    where = f" ({path})" if isinstance(path, str) and path else ""
    if kind == "permission":
        return Forbidden(f"The system refused: permission denied{where}.")
    if kind == "not_found":
        return NotFound(f"No such file or directory{where}.")
    if kind == "exists":
        return Conflict(f"A file with that name exists already{where}; nothing was replaced.")
    if kind in ("no_space", "quota"):
        return InsufficientStorage(f"No space left for you there{where}: {message}.")
    if kind == "refused":
        return Forbidden(f"Refused by the run-as boundary: {message}.")
    if kind == "outside":
        return Forbidden(f"Refused: {message}.")
    if kind == "is_directory":
        return IsDirectory(f"That is a folder, not a file{where}.")
    if kind == "not_regular":
        return Conflict(f"{message[:1].upper()}{message[1:]}.")
    if kind == "not_empty":
        return Conflict(f"The folder is not empty{where}.")
    if kind == "cross_device":
        return Conflict(f"That crosses file systems{where}: {message}.")
    if kind == "read_only":
        return Forbidden(f"The system refused: read-only file system{where}.")
    if kind == "precondition":
        return PreconditionFailed(f"{message[:1].upper()}{message[1:]}.")
    if kind == "precondition_required":
        return PreconditionRequired(f"{message[:1].upper()}{message[1:]}.")
    if kind == "checksum":
        return ChecksumMismatch(f"{message[:1].upper()}{message[1:]}.")
    if kind == "conflict":
        return Conflict(f"{message[:1].upper()}{message[1:]}.")
    if kind == "too_large":
        return PayloadTooLarge(f"{message[:1].upper()}{message[1:]}.")
    if kind in ("invalid", "name_too_long", "symlink"):
        return InvalidInput(f"The system refused{where}: {message}.")
    return PortalError(f"Acting as the user failed{where}: {message}.")
