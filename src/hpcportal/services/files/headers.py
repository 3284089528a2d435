"""HTTP headers of file answers and requests: the security headers every file answer
carries, ``Content-Disposition``, dates, and the ``Range`` and ``If-Match`` parsers."""

from __future__ import annotations

import re
from email.utils import formatdate
from urllib.parse import quote

# --- HTTP helpers that belong with the files ------------------------------------------

#: Sent with every file answer: no sniffing, and nothing the file contains may run.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}
#: PDF viewers do not run in a sandboxed document; scripts and everything else stay off.
PDF_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'; form-action 'none'",
}


def content_disposition(name: str, inline: bool) -> str:
    kind = "inline" if inline else "attachment"
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name) or "download"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def parse_range(header: str | None) -> dict[str, int | None] | None:
    """One ``bytes=`` range as ``{"start", "end"}`` (``-N``: start None, end N), or None
    to send the whole file (no header, several ranges, or a malformed one: RFC 9110
    lets a server ignore those)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or not (match.group(1) or match.group(2)):
        return None
    start = int(match.group(1)) if match.group(1) else None
    end = int(match.group(2)) if match.group(2) else None
    if start is not None and end is not None and end < start:
        return None
    return {"start": start, "end": end}


def parse_etags(header: str | None) -> list[str] | str | None:
    """``If-Match``: ``*`` or the strong entity tags listed (weak ones never match)."""
    if header is None:
        return None
    if header.strip() == "*":
        return "*"
    tags = [t.strip() for t in header.split(",")]
    return [t.strip('"') for t in tags if t.startswith('"') and t.endswith('"') and len(t) >= 2]
