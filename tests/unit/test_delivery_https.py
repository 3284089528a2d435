"""HTTPS sends of webhook and Slack channels, against a real TLS server on 127.0.0.1.

The URL names ``hooks.example.test``; the guard's resolver stand-in maps it to
127.0.0.1 and the request goes to that address, with the name in ``Host`` and as TLS
SNI, so the server's certificate is checked for the name. The certificates come from a
test CA made here: trusted only through ``delivery_https_ca_file`` (``tls_context``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import certifi
import pytest

from hpcportal.config import Settings
from hpcportal.services.delivery import signature
from hpcportal.services.delivery.channels import DeliveryFailed, Destination, Outgoing, http_post
from hpcportal.services.delivery.channels.slack import SlackSender
from hpcportal.services.delivery.channels.webhook import WebhookSender, body
from hpcportal.services.delivery.url_guard import UrlGuard
from tests.pki import TestCa

HOST = "hooks.example.test"
BODY = b'{"id":"abc","event":"job.failed","text":"\xec\x9e\x91\xec\x97\x85"}'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("pki"))


@dataclass
class Seen:
    """What the server saw: one entry per request, and each handshake's SNI."""

    requests: list[dict[str, object]] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    answer: int = 200
    location: str = ""


class TlsServer:
    """``http.server`` on 127.0.0.1 (an ephemeral port) behind TLS, in a thread."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.seen = seen = Seen()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            seen.sni.append(name)

        context.sni_callback = record_sni

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                seen.requests.append(
                    {
                        "client": self.client_address[0],
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(seen.answer)
                if seen.location:
                    self.send_header("Location", seen.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://{HOST}:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TlsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(pki: TestCa) -> Iterator[TlsServer]:
    with TlsServer(*pki.issue(HOST)) as running:
        yield running


def resolve(host: str, port: int) -> list[str]:
    """The resolver stand-in: the test name is this machine."""
    assert host == HOST, host
    return ["127.0.0.1"]


def settings(ca_file: Path | None) -> Settings:
    return Settings(
        delivery_allowed_networks=["127.0.0.0/8"],
        delivery_https_ca_file=ca_file,
        delivery_send_timeout_seconds=10,
    )


def guard(s: Settings) -> UrlGuard:
    return UrlGuard.from_settings(s, resolve)


def post(url: str, ca_file: Path | None, data: bytes = BODY) -> None:
    s = settings(ca_file)
    asyncio.run(
        http_post.post(
            guard(s),
            url,
            data,
            {"X-Test": "1"},
            timeout=s.delivery_send_timeout_seconds,
            ca_file=ca_file,
        )
    )


def test_with_the_site_ca_the_post_reaches_the_address_checked_under_its_name(
    server: TlsServer, pki: TestCa
) -> None:
    post(server.url, pki.ca_file)
    [request] = server.seen.requests
    assert request["client"] == "127.0.0.1"
    assert request["path"] == "/hook"
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["Host"] == f"{HOST}:{server.port}"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Test"] == "1"
    assert request["body"] == BODY
    assert server.seen.sni == [HOST]


def test_without_the_site_ca_the_certificate_is_refused(server: TlsServer) -> None:
    with pytest.raises(DeliveryFailed, match=r"(?i)certificate verify failed") as failed:
        post(server.url, None)
    assert not failed.value.permanent  # the admin may yet set the CA file: try again
    assert server.seen.requests == []
    assert server.seen.sni == [HOST]


def test_a_certificate_for_another_name_is_refused_although_the_connection_goes_to_an_ip(
    pki: TestCa,
) -> None:
    with TlsServer(*pki.issue("other.example.test")) as other:
        with pytest.raises(DeliveryFailed, match=r"(?i)certificate verify failed") as failed:
            post(other.url, pki.ca_file)
        assert other.seen.requests == []
        assert other.seen.sni == [HOST]
    assert "mismatch" in str(failed.value).lower() or HOST in str(failed.value)


def test_a_redirect_is_not_followed(server: TlsServer, pki: TestCa) -> None:
    server.seen.answer = 302
    server.seen.location = f"https://{HOST}:{server.port}/elsewhere"
    with pytest.raises(DeliveryFailed, match="HTTP 302"):
        post(server.url, pki.ca_file)
    assert [r["path"] for r in server.seen.requests] == ["/hook"]


def test_the_webhook_channel_sends_its_signed_json_over_https(
    server: TlsServer, pki: TestCa
) -> None:
    s = settings(pki.ca_file)
    message = Outgoing(
        delivery_id="0123456789abcdef0123456789abcdef",
        event="job.failed",
        recipient="alice",
        subject="작업 실패",
        body_text="job 7 failed",
        body_html=None,
        created_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        payload={"job_id": 7},
    )
    to = Destination(1, "webhook", server.url, "ko", secret="whsec-https-test")
    asyncio.run(WebhookSender(s, guard(s)).send(to, message))
    [request] = server.seen.requests
    headers = request["headers"]
    assert isinstance(headers, dict) and isinstance(request["body"], bytes)
    assert request["body"] == body(message)
    assert headers["Host"] == f"{HOST}:{server.port}"
    assert (
        signature.verify("whsec-https-test", headers, request["body"], now=time.time())
        == message.delivery_id
    )


def test_tls_context_default_cache_and_broken_files(tmp_path: Path, pki: TestCa) -> None:
    assert http_post.tls_context(None) is True
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca_file.read_bytes())
    first = http_post.tls_context(ca_file)
    assert isinstance(first, ssl.SSLContext)
    assert first.check_hostname and first.verify_mode == ssl.CERT_REQUIRED
    assert http_post.tls_context(ca_file) is first, "built once per file version"
    # certifi's CAs stay (Slack keeps working) and the site's CA is added to them
    certifi_only = ssl.create_default_context(cafile=certifi.where()).get_ca_certs()
    trusted = first.get_ca_certs()
    assert len(trusted) == len(certifi_only) + 1 > 50
    assert any("hpcportal test CA" in str(c["subject"]) for c in trusted)
    ca_file.write_bytes(TestCa(tmp_path, "replacement CA").ca_file.read_bytes())
    os.utime(ca_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = http_post.tls_context(ca_file)
    assert second is not first, "a replaced file is read again"

    with pytest.raises(DeliveryFailed, match=r"delivery_https_ca_file .*missing\.pem") as missing:
        http_post.tls_context(tmp_path / "missing.pem")
    assert not missing.value.permanent
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(DeliveryFailed, match=r"delivery_https_ca_file .*junk\.pem"):
        http_post.tls_context(junk)


def test_a_missing_ca_file_fails_a_slack_send_with_its_name(tmp_path: Path) -> None:
    s = settings(tmp_path / "gone.pem")
    message = Outgoing("id", "e", None, "subject", "text", None, dt.datetime.now(dt.UTC))
    to = Destination(2, "slack", f"https://{HOST}/services/T/B/X", "en")
    with pytest.raises(DeliveryFailed, match=r"gone\.pem"):
        asyncio.run(SlackSender(s, guard(s)).send(to, message))


def test_a_broken_ca_file_stops_no_plain_http_receiver(tmp_path: Path) -> None:
    """The CA file is read for https URLs only: a plain-HTTP send (where a site allows
    http) with a missing CA file fails on the connection, not on the file."""
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = settings(tmp_path / "gone.pem").model_copy(
        update={"delivery_allowed_schemes": ["https", "http"]}
    )
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(
            http_post.post(
                guard(s),
                f"http://{HOST}:{port}/hook",
                BODY,
                {},
                timeout=5.0,
                ca_file=s.delivery_https_ca_file,
            )
        )
    assert "ConnectError" in str(failed.value) and "gone.pem" not in str(failed.value)
