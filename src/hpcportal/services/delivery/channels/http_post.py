"""The one HTTP POST Slack and webhook channels make: to the checked address only.

The URL is checked (``UrlGuard``) at the moment of sending and the connection goes to
the address that check resolved, with the original name in ``Host`` and in TLS (SNI
and certificate check): a DNS answer that changed since the channel was saved cannot
redirect the request. Redirects are not followed (they could lead anywhere), and every
step has the send timeout.

Certificates are checked against httpx's default store (certifi) and, when
``delivery_https_ca_file`` is set, the site's own CAs as well (``tls_context``): internal
receivers (a chat server, an automation hook) often have certificates of a private CA,
and the default store stays so that Slack and other public receivers keep working.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

import certifi
import httpx

from hpcportal.services.delivery.channels import DeliveryFailed
from hpcportal.services.delivery.url_guard import UrlGuard, UrlRefused

#: Answers that mean "this request will never be accepted": not worth another attempt.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 422})


def tls_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """The certificate check for HTTPS sends: True (httpx's default: certifi) without
    ``ca_file``, else a context trusting certifi's CAs and those in ``ca_file`` (PEM).

    Built once per file version (path, size, modification time): a replaced file is
    read again. A missing or unusable file is a ``DeliveryFailed`` naming it (not
    permanent: the admin can fix the file and the message goes on its next attempt)."""
    if ca_file is None:
        return True
    try:
        stat = ca_file.stat()
        return _context(str(ca_file), stat.st_size, stat.st_mtime_ns)
    except (OSError, ssl.SSLError) as exc:  # SSLError: not PEM certificates
        raise DeliveryFailed(
            f"delivery_https_ca_file {ca_file}: {type(exc).__name__}: {exc}"[:500]
        ) from exc


@functools.lru_cache(maxsize=8)
def _context(ca_file: str, size: int, mtime_ns: int) -> ssl.SSLContext:
    """``size`` and ``mtime_ns`` only key the cache (a new version, a new context)."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.load_verify_locations(cafile=ca_file)
    return context


async def post(
    guard: UrlGuard,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    ca_file: Path | None,
) -> None:
    """POST ``body`` to ``url``; returns on a 2xx answer, else ``DeliveryFailed``.

    ``ca_file``: the site's CAs for an HTTPS server's certificate (``tls_context``),
    read only for an https URL, so a broken CA file stops no plain-HTTP receiver."""
    try:
        target = guard.check(url)
    except UrlRefused as exc:
        raise DeliveryFailed(f"URL refused: {exc}", permanent=True) from exc
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host = (
            f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
        )
    sent_headers = {"Host": host, "Content-Type": "application/json", **headers}
    https = target.scheme == "https"
    extensions = {"sni_hostname": target.host} if https else {}
    verify = tls_context(ca_file) if https else True
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=verify
        ) as client:
            response = await client.post(
                target.pinned_url, content=body, headers=sent_headers, extensions=extensions
            )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
    if 200 <= response.status_code < 300:
        return
    detail = response.text[:200].strip()
    raise DeliveryFailed(
        f"HTTP {response.status_code}{': ' + detail if detail else ''}",
        permanent=response.status_code in PERMANENT_STATUSES,
    )
