"""Mutual TLS to a session's server, over loopback: who gets through, who does not.

The server side here is Python's ``ssl`` configured as websockify configures it with
``--ssl-only --verify-client --cafile`` (CERT_REQUIRED against the portal's
certificate only); the real websockify and Jupyter are run in
``tests/integration/test_app_runtimes.py``.
"""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcportal.services.node_tls import (
    ClientIdentity,
    NodeTLS,
    _new_client_identity,
    fingerprint,
    server_cert_pem,
)


def _pair(folder: Path, name: str) -> tuple[Path, Path, str]:
    """A client key and certificate like the portal's (another party's)."""
    key_pem, cert_pem = _new_client_identity()
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return key, cert, cert_pem.decode()


def _server_pair(folder: Path, name: str) -> tuple[Path, Path, str]:
    """A server key and certificate made the way the apps' job scripts make them."""
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "366",
            "-subj", "/CN=hpcportal session", "-keyout", str(key), "-out", str(cert),
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert, cert.read_text()


class Server:
    """Accepts TLS connections requiring a client certificate trusted by ``cafile``;
    says ``hello`` to each client that gets through."""

    def __init__(self, key: Path, cert: Path, cafile: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cafile=cafile)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.refused: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError) as exc:
                self.refused.append(type(exc).__name__)

    def close(self) -> None:
        self.sock.close()


def _talk(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.recv(16)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[NodeTLS, Server, str, str]]:
    tls = NodeTLS(ClientIdentity.in_folder(tmp_path / "secrets"))
    job = tmp_path / "job"
    job.mkdir()
    key, cert, server_pem = _server_pair(job, "server")
    cafile = job / "portal-client.crt"
    cafile.write_bytes(tls.identity.cert_file.read_bytes())
    server = Server(key, cert, cafile)
    _, _, other_pem = _server_pair(job, "other")
    yield tls, server, server_pem, other_pem
    server.close()


def test_the_portal_gets_through_with_the_pinned_certificate(
    setup: tuple[NodeTLS, Server, str, str],
) -> None:
    tls, server, server_pem, _ = setup
    assert _talk(server.port, tls.context(server_pem)) == b"hello"
    assert tls.context(server_pem) is tls.context(server_pem)  # cached


def test_another_server_certificate_is_refused_by_the_portal(
    setup: tuple[NodeTLS, Server, str, str],
) -> None:
    """A server that is not the session's (another job on that port) is not believed."""
    tls, server, _, other_pem = setup
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(server.port, tls.context(other_pem))


def test_a_client_without_the_portals_certificate_is_refused(
    setup: tuple[NodeTLS, Server, str, str], tmp_path: Path
) -> None:
    """Knowing the server's certificate (it is public) is not enough: bob's own
    certificate, or none, does not get a byte from the server."""
    _, server, server_pem, _ = setup
    key, cert, _ = _pair(tmp_path, "bob")
    for with_cert in (True, False):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cadata=server_pem)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if with_cert:
            context.load_cert_chain(cert, key)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            assert _talk(server.port, context) != b"hello"
    deadline = time.monotonic() + 10  # the server notes its refusal in its own thread
    while len(server.refused) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.refused) == 2


def test_the_identity_is_private_and_shared(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = ClientIdentity.in_folder(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600
    # Another replica reads the same identity rather than making its own.
    assert ClientIdentity.in_folder(folder).cert_der == first.cert_der
    pem = server_cert_pem(first.cert_base64)
    assert pem is not None and fingerprint(pem) == fingerprint(
        ssl.DER_cert_to_PEM_cert(first.cert_der)
    )
    for bad in ("", "!!", "aGVsbG8=", None, "A" * 20000):
        assert server_cert_pem(bad) is None
