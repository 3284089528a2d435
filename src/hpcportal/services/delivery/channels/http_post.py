"""The one HTTP POST Slack and webhook channels make: to the checked address only.

The URL is checked (``UrlGuard``) at the moment of sending and the connection goes to
the address that check resolved, with the original name in ``Host`` and in TLS (SNI
and certificate check): a DNS answer that changed since the channel was saved cannot
redirect the request. Redirects are not followed (they could lead anywhere), and every
step has the send timeout.
"""

from __future__ import annotations

import httpx

from hpcportal.services.delivery.channels import DeliveryFailed
from hpcportal.services.delivery.url_guard import UrlGuard, UrlRefused

#: Answers that mean "this request will never be accepted": not worth another attempt.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 422})


async def post(
    guard: UrlGuard,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
) -> None:
    """POST ``body`` to ``url``; returns on a 2xx answer, else ``DeliveryFailed``."""
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
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
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
