"""Test peers for the delivery tests: the outside receivers a portal sends to, run on
loopback by the tests (stand-ins for a site's mail server, a team's webhook endpoint
and Slack, which cannot exist here).

- ``SmtpTestPeer``: a real SMTP server (``aiosmtpd``) on 127.0.0.1 that demands
  STARTTLS (its own self-signed certificate, given to the portal as its CA) and a
  login before it accepts mail, and keeps what it received.
- ``WebhookTestPeer``: an HTTP server on 127.0.0.1 that checks each request the way a
  receiver following the README would: the HMAC-SHA256 of ``timestamp.body`` under the
  shared secret (computed here with ``hmac``, not with the portal's code), a timestamp
  within five minutes, and counts messages by their delivery id. In ``slack`` mode it
  checks the incoming-webhook JSON instead (``text`` and ``blocks``). It can be told to
  fail (HTTP 503) a number of times first, or always, and to answer slowly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.pki import TestCa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- SMTP --------------------------------------------------------------------------------


@dataclass
class SmtpTestPeer:
    """aiosmtpd on loopback: STARTTLS required (or, ``implicit``, TLS from the first
    byte as on port 465), then AUTH (``user``/``password``)."""

    folder: Path
    implicit: bool = False
    user: str = "portal"
    password: str = "smtp-peer-password"
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    port: int = 0
    ca_file: Path | None = None
    _controller: Controller | None = None

    def start(self) -> SmtpTestPeer:
        ca = TestCa(self.folder, "smtp test peer CA")
        cert, key = ca.issue("smtp-peer", ip="127.0.0.1")
        self.ca_file = ca.ca_file
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        peer = self

        class Handler:
            async def handle_DATA(
                self, server: SmtpServer, session: Session, envelope: Envelope
            ) -> str:
                raw = envelope.original_content or b""
                parsed = message_from_bytes(raw, policy=policy.default)
                assert isinstance(parsed, EmailMessage)
                peer.messages.append(parsed)
                return "250 OK"

        def authenticate(
            server: SmtpServer, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == self.user
                and data.password.decode() == self.password
            )
            if ok:
                peer.logins.append(data.login.decode())
            return AuthResult(success=ok)

        # aiosmtpd counts only STARTTLS as TLS for AUTH; with implicit TLS the whole
        # connection is already encrypted, so its auth_require_tls is turned off.
        tls: dict[str, Any] = (
            {"ssl_context": context, "auth_require_tls": False}
            if self.implicit
            else {"tls_context": context, "require_starttls": True}
        )
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_required=True,
            **({"auth_require_tls": True} | tls),
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def settings(self) -> dict[str, object]:
        """The portal's settings to send through this peer."""
        return {
            "delivery_smtp_host": "127.0.0.1",
            "delivery_smtp_port": self.port,
            "delivery_smtp_security": "tls" if self.implicit else "starttls",
            "delivery_smtp_username": self.user,
            "delivery_smtp_password": self.password,
            "delivery_smtp_ca_file": self.ca_file,
            "delivery_from": "portal@hpc.example.org",
        }

    def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


# --- HTTP (webhooks, Slack) ------------------------------------------------------------


@dataclass
class Received:
    delivery_id: str
    body: dict[str, Any]
    headers: dict[str, str]


class WebhookTestPeer:
    """A webhook (or Slack-format) receiver on 127.0.0.1."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        slack: bool = False,
        fail_first: int = 0,
        fail_always: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.secret = secret
        self.slack = slack
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.delay = delay
        self.requests = 0
        self.accepted: list[Received] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(r.delivery_id for r in self.accepted)

    def start(self) -> WebhookTestPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, why = peer.receive(dict(self.headers.items()), body)
                if peer.delay:
                    time.sleep(peer.delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(why.encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def receive(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests += 1
            if self.fail_always or self.requests <= self.fail_first:
                return 503, "test peer: failing on purpose"
            try:
                received = self._check(lower, body)
            except ValueError as exc:
                self.rejected.append(str(exc))
                return 400, str(exc)
            self.accepted.append(received)
            return 200, "ok"

    def _check(self, headers: dict[str, str], body: bytes) -> Received:
        document = json.loads(body)
        delivery = headers.get("x-hpcportal-delivery", "")
        if not delivery:
            raise ValueError("no delivery id")
        if self.slack:
            if not isinstance(document.get("text"), str) or not isinstance(
                document.get("blocks"), list
            ):
                raise ValueError("not an incoming-webhook message (text, blocks)")
        elif self.secret is not None:
            stamp = headers.get("x-hpcportal-timestamp", "")
            if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
                raise ValueError("stale or missing timestamp")
            expected = hmac.new(
                self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            given = headers.get("x-hpcportal-signature", "")
            if not hmac.compare_digest(given, f"v1={expected}"):
                raise ValueError("bad signature")
            if document.get("id") != delivery:
                raise ValueError("body id differs from the header")
        return Received(delivery, document, headers)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.accepted) >= count:
                    break
            time.sleep(0.05)
        with self._lock:
            return list(self.accepted)
