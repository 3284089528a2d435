"""Tables. Each one exists because several replicas must agree on its contents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
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


class Submission(Base):
    """One job submission, keyed by the client's ``Idempotency-Key`` when it sent one.

    The row is written *before* sbatch runs (state ``submitting``) and completed with
    the job id after, so a retried request finds either the finished submission or
    an interrupted one to reconcile against Slurm (the job carries the key in its
    comment) instead of submitting a second job.
    """

    __tablename__ = "submissions"
    __table_args__ = (
        Index(
            "uq_submissions_username_idempotency_key", "username", "idempotency_key", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # submitting | submitted | failed
    job_id: Mapped[int | None] = mapped_column(Integer)
    template_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who did what to which target, with what result, when and from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(16))  # ok | refused | error
    detail: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX_LENGTH))


class ApiToken(Base):
    """A personal, scoped, revocable API token for scripts and the CLI.

    Only a SHA-256 of the token is stored; the token itself is shown once.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))  # space-separated, e.g. "jobs:read jobs:write"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- Job templates (services/templates.py) -------------------------------------------


class JobTemplate(Base):
    """A parameterised job script: ``site`` ones for everyone (admins edit them),
    ``personal`` ones for their owner only.

    ``options`` and ``parameters`` are JSON because their shape belongs to the service
    (``JobRequest`` fields, ``TemplateParameter``) and changes with it; no query looks
    inside them. ``slug`` names the seeded site templates so seeding is idempotent.
    """

    __tablename__ = "job_templates"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'site' AND owner IS NULL) OR (scope = 'personal' AND owner IS NOT NULL)",
            name="scope_owner",
        ),
        Index("ix_job_templates_scope_owner", "scope", "owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # site | personal
    owner: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    script: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))


class JobTemplateVersion(Base):
    """A template as it was before an update: one row per replaced version.

    Rows go with their template (``ON DELETE CASCADE``); the unique pair
    (template, version) also serves the history lookup.
    """

    __tablename__ = "job_template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("job_templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    script: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    edited_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    edited_at: Mapped[datetime] = mapped_column(UtcDateTime)
