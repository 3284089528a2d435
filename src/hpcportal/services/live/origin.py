"""Origin check for the live WebSocket (cross-site WebSocket hijacking)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# --- Origin check (cross-site WebSocket hijacking) ------------------------------------------


#: ``scheme://host[:port]`` and nothing else: no userinfo, path, query or fragment.
_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` (lower case, default port made explicit), or ``None``.

    An ``Origin`` header is exactly a scheme, a host and an optional port (RFC 6454),
    so anything else is refused rather than parsed leniently: ``user@host`` (a lenient
    parser reads ``http://evil.example@127.0.0.1:8080`` as host ``127.0.0.1``), a path,
    query or fragment, ``null``, an empty host, port 0 or above 65535, a port with a
    leading zero, a scheme other than http(s), an IPv6 zone, a dotted number that is
    not an IPv4 address (``127.1``) and surrounding whitespace.
    """
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return None
    scheme, host = match["scheme"].lower(), match["host"].lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[scheme]
    if port > 65535:
        return None
    try:
        if host.startswith("["):
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        elif host.replace(".", "").isdigit() or host.rsplit(".", 1)[-1].isdigit():
            host = str(ipaddress.IPv4Address(host))  # refuses 127.1, 0x7f.1, 256.0.0.1
    except ValueError:
        return None
    return f"{scheme}://{host}:{port}"


def origin_allowed(
    origin: str | None, scheme: str, host: str | None, allowed: Iterable[str] = ()
) -> bool:
    """A browser's ``Origin`` must be the portal's own (scheme, host and port of the
    request) or one of ``allowed``; both are compared as parsed (scheme, host, port)
    triples, never as strings or prefixes. No ``Origin`` at all is a non-browser client.
    """
    if origin is None:
        return True
    theirs = normalize_origin(origin)
    if theirs is None:
        return False  # "null" (sandboxed frames, files), userinfo, paths, garbage
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    own = normalize_origin(f"{http_scheme}://{host}") if host else None
    if theirs == own:
        return True
    # An administrator may have written "https://ui.example.org/" in the settings.
    return theirs in {normalize_origin(a.strip().rstrip("/")) for a in allowed}
