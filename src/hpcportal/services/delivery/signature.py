"""How a webhook receiver knows a message came from this portal, unchanged and fresh.

The scheme (documented for receivers in the README):

- ``X-Hpcportal-Delivery``: the message's delivery id. The same for every attempt at
  the same message (it derives from the outbox's idempotency key), so a receiver that
  remembers the ids it processed drops a repeat.
- ``X-Hpcportal-Timestamp``: when this attempt was signed, in whole seconds since the
  Unix epoch.
- ``X-Hpcportal-Signature``: ``v1=`` and the lowercase hex HMAC-SHA256, keyed with the
  channel's secret, of ``<timestamp>.<raw body bytes>``.

A receiver recomputes the HMAC over the timestamp header, a dot and the body exactly as
received, compares in constant time, and refuses a timestamp more than five minutes
from its clock: a recorded request cannot be replayed later, and the timestamp cannot
be changed without breaking the signature. ``verify`` is that check in Python.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

DELIVERY_HEADER = "X-Hpcportal-Delivery"
TIMESTAMP_HEADER = "X-Hpcportal-Timestamp"
SIGNATURE_HEADER = "X-Hpcportal-Signature"
VERSION = "v1"
#: Receivers refuse timestamps further than this from their clock (seconds).
TOLERANCE_SECONDS = 300


class SignatureInvalid(Exception):
    """The request is not a fresh, unaltered message of the portal."""


def delivery_id(idempotency_key: str) -> str:
    """The public id of a message: stable across attempts, says nothing of its key."""
    return hashlib.sha256(b"hpcportal-delivery\0" + idempotency_key.encode()).hexdigest()[:32]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def headers(secret: str, delivery: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        DELIVERY_HEADER: delivery,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    request_headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> str:
    """Check a received request; its delivery id, or ``SignatureInvalid``.

    ``request_headers`` must look names up case-insensitively (Starlette's, httpx's,
    aiohttp's headers do), or be given with the names above."""
    stamp = request_headers.get(TIMESTAMP_HEADER, "")
    given = request_headers.get(SIGNATURE_HEADER, "")
    delivery = request_headers.get(DELIVERY_HEADER, "")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise SignatureInvalid("no timestamp") from exc
    if abs(now - timestamp) > tolerance:
        raise SignatureInvalid("timestamp too old or in the future (replayed?)")
    if not hmac.compare_digest(given.encode(), sign(secret, timestamp, body).encode()):
        raise SignatureInvalid("signature does not match")
    if not delivery:
        raise SignatureInvalid("no delivery id")
    return delivery
