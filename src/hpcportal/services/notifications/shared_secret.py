"""A bearer token equal to a file's first line: how Slurm's MailProg and Alertmanager
prove who they are (neither is a person with a login)."""

from __future__ import annotations

import hmac
from pathlib import Path

from hpcportal.errors import NotAuthenticated


def read_secret(path: Path) -> str | None:
    """The file's first line, read at each request so it can be replaced in place;
    None when unreadable or empty (then nothing matches)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    value = lines[0].strip() if lines else ""
    return value or None


def bearer_matches(secret_file: Path | None, authorization: str | None) -> bool:
    """``Authorization: Bearer <secret>`` with the file's secret, compared in constant time."""
    if secret_file is None or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    expected = read_secret(secret_file)
    return (
        scheme.lower() == "bearer"
        and expected is not None
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def require_bearer(secret_file: Path | None, authorization: str | None, setting: str) -> None:
    """401 unless the caller sent the secret of ``secret_file`` (the setting ``setting``)."""
    if not bearer_matches(secret_file, authorization):
        raise NotAuthenticated(f"A bearer token equal to the contents of {setting} is required.")
