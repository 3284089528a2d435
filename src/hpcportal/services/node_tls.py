"""Mutual TLS between the portal and a session's server on its node.

A session's server (websockify in front of Xvnc, Jupyter) listens on a port of a
compute node that every user of the cluster can reach. Its password or token alone
must not be enough to use it, so it only speaks TLS and only accepts a client that
presents the *portal's* certificate; the VNC password or app token stays as the
second factor.

- The portal's client key and self-signed certificate live beside the secret key
  (``secret_key_file``'s folder, 0700; the key 0600), made on first use and shared by
  replicas like that key. The certificate is public: it goes to the job in its
  rendered script (``portal_client_cert``, base64 DER), which trusts only it.
- The job makes its own key and self-signed server certificate with ``openssl`` in
  its 0700 session folder and writes the certificate (``tls_cert``, base64 DER) into
  ``connection.json``, which the portal reads as the user. The portal then trusts
  exactly that certificate for that session: it is the only trust anchor of the
  connection's TLS context, hostnames are not checked (the node's address comes from
  Slurm, the certificate names no host), and it is made without ``CA:TRUE``, so
  nothing it might sign is trusted.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hpcportal.errors import Misconfigured
from hpcportal.services.secret_box import (
    check_private_file,
    private_folder,
    write_private_once,
)

CLIENT_KEY = "node-client.key"
CLIENT_CERT = "node-client.crt"
CLIENT_NAME = "hpcportal node client"
CLIENT_YEARS = 10
#: A connection.json certificate larger than this is no certificate the job made.
MAX_CERT_BYTES = 8192
CONTEXT_CACHE = 512


def server_cert_pem(encoded: object) -> str | None:
    """The PEM of a job's ``tls_cert`` (base64 DER); None if it is not a certificate."""
    if not isinstance(encoded, str) or not encoded or len(encoded) > MAX_CERT_BYTES:
        return None
    try:
        der = base64.b64decode(encoded, validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        return None
    return ssl.DER_cert_to_PEM_cert(der)


def fingerprint(pem: str) -> str:
    """SHA-256 of the certificate's DER, in hex (how people compare certificates)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _new_client_identity() -> tuple[bytes, bytes]:
    """A P-256 key and a self-signed certificate for TLS client authentication."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CLIENT_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class ClientIdentity:
    """The portal's client key and certificate files (in its private folder)."""

    key_file: Path
    cert_file: Path
    cert_der: bytes

    @property
    def cert_base64(self) -> str:
        """The certificate as one word for a job script (base64 DER, no newlines)."""
        return base64.b64encode(self.cert_der).decode()

    @classmethod
    def in_folder(cls, folder: Path) -> ClientIdentity:
        """The identity in ``folder``, made first if missing (the key before the
        certificate, so a certificate on disk always has its key)."""
        private_folder(folder)
        key_file, cert_file = folder / CLIENT_KEY, folder / CLIENT_CERT
        if not cert_file.exists():
            key_pem, cert_pem = _new_client_identity()
            if write_private_once(key_file, key_pem):
                write_private_once(cert_file, cert_pem)
            else:  # another replica made the key: wait briefly for its certificate
                for _ in range(50):
                    if cert_file.exists():
                        break
                    threading.Event().wait(0.1)
        if not cert_file.exists():
            raise Misconfigured(f"{key_file} exists without {cert_file}; remove it to start over.")
        check_private_file(key_file)
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except ValueError as exc:
            raise Misconfigured(f"{cert_file} or {key_file} is not readable: {exc}") from None
        return cls(key_file, cert_file, cert.public_bytes(serialization.Encoding.DER))


class NodeTLS:
    """TLS client contexts for sessions: the portal's certificate, one pinned server.

    Contexts are cached by server certificate (making one reads the key file), so a
    busy session costs one context, and a finished one's is dropped in time.
    """

    def __init__(self, identity: ClientIdentity) -> None:
        self.identity = identity
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, server_pem: str) -> ssl.SSLContext:
        """Present the portal's certificate; accept the server only with ``server_pem``."""
        with self._lock:
            found = self._contexts.get(server_pem)
            if found is not None:
                self._contexts.move_to_end(server_pem)
                return found
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # the address is Slurm's; the certificate is pinned
        context.verify_mode = ssl.CERT_REQUIRED
        # The pinned certificate is the whole chain: trusted as it is, signing nothing.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.load_verify_locations(cadata=server_pem)
        context.load_cert_chain(self.identity.cert_file, self.identity.key_file)
        with self._lock:
            self._contexts[server_pem] = context
            while len(self._contexts) > CONTEXT_CACHE:
                self._contexts.popitem(last=False)
        return context


_tls: dict[Path, NodeTLS] = {}
_lock = threading.Lock()


def node_tls_for(folder: Path) -> NodeTLS:
    """The process's ``NodeTLS`` for the identity kept in ``folder``."""
    folder = folder.absolute()
    with _lock:
        found = _tls.get(folder)
        if found is None:
            found = _tls[folder] = NodeTLS(ClientIdentity.in_folder(folder))
        return found
