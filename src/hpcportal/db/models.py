"""Tables. Each one exists because several replicas must agree on its contents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hpcportal.db.base import Base, UtcDateTime

#: Longest ``jti`` we store; ours are 22 characters, the margin is for future formats.
JTI_MAX_LENGTH = 64
#: POSIX user names are at most 32 characters (see ``services.auth.USERNAME_RE``).
USERNAME_MAX_LENGTH = 32
#: Enough for any IPv6 literal with zone id, or a host name from a proxy.
ADDRESS_MAX_LENGTH = 255


class RevokedToken(Base):
    """A logged-out token, kept until it would have expired anyway.

    The primary key on ``jti`` makes the per-request check a single index lookup;
    the index on ``expires_at`` makes pruning cheap.
    """

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(JTI_MAX_LENGTH), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class LoginFailure(Base):
    """One failed login, counted both per user name and per client address.

    A row per failure (rather than a counter) gives a true sliding window and lets
    replicas insert concurrently without read-modify-write races.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_failed_at", "username", "failed_at"),
        Index("ix_login_failures_address_failed_at", "address", "failed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX_LENGTH))
    failed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
