"""What the web-app proxy passes on, and what it keeps to itself."""

from __future__ import annotations

import ssl

import httpx

from hpcportal.api.node_proxy import _response_headers, upstream_headers
from hpcportal.config import Settings
from hpcportal.services.sessions import Target

SETTINGS = Settings()
TARGET = Target(
    "0123456789abcdef",
    "alice",
    "10.1.2.3",
    8888,
    "s3cret",
    False,
    "web",
    "/",
    "(the server's certificate)",
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
)


def test_request_loses_the_portals_credentials_and_gains_the_apps_token() -> None:
    sent = upstream_headers(
        [
            ("cookie", f"{SETTINGS.cookie_name}=jwt; _xsrf=keep; hpcportal_csrf=x"),
            ("authorization", "Bearer hpcp_portal_token"),
            ("x-csrf-token", "x"),
            ("origin", "https://portal.example"),
            ("connection", "keep-alive"),
            ("accept", "text/html"),
        ],
        TARGET,
        SETTINGS,
    )
    assert sent == {
        "accept": "text/html",
        "Cookie": "_xsrf=keep",
        "Authorization": "token s3cret",
        "Host": "10.1.2.3:8888",
        "Origin": "https://10.1.2.3:8888",
    }


def test_response_keeps_its_encoding_and_cannot_touch_the_portals_cookies() -> None:
    response = httpx.Response(
        200,
        headers=[
            ("content-encoding", "gzip"),
            ("content-length", "123"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", f"{SETTINGS.cookie_name}=stolen; Path=/"),
            ("set-cookie", "_xsrf=abc; Path=/node/0123456789abcdef/"),
        ],
    )
    kept = _response_headers(response, SETTINGS)
    # The body is streamed as it came, so its encoding must stay declared.
    assert ("content-encoding", "gzip") in kept
    assert all(name not in ("content-length", "transfer-encoding") for name, _ in kept)
    assert [v for n, v in kept if n == "set-cookie"] == ["_xsrf=abc; Path=/node/0123456789abcdef/"]


def test_each_session_has_its_own_client_and_all_are_closed() -> None:
    """A client trusts one session's certificate, so sessions never share one; beyond
    the limit the least recently used is retired, and shutdown closes them all."""
    import asyncio
    from dataclasses import replace

    from hpcportal.api.node_proxy import SessionClients

    async def run() -> None:
        clients = SessionClients(SETTINGS, limit=2)
        targets = [replace(TARGET, session_id=f"{i:016x}", server_cert=str(i)) for i in range(3)]
        first, second = clients.get(targets[0]), clients.get(targets[1])
        assert first is not second and clients.get(targets[0]) is first
        third = clients.get(targets[2])  # the second is now the least recently used
        assert clients.get(targets[0]) is first and not second.is_closed
        await clients.aclose()
        assert first.is_closed and second.is_closed and third.is_closed

    asyncio.run(run())
