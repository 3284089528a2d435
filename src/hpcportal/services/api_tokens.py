"""Personal API tokens: scoped, revocable credentials for scripts and the CLI.

A token is ``hpcp_`` followed by 40 URL-safe random characters. Only its SHA-256 is
stored (``api_tokens.token_hash``), so the database never holds a usable credential;
the token itself is shown once, in the answer that creates it.

Scopes: ``read`` allows safe methods (GET, HEAD, OPTIONS), ``write`` everything else.
A login session has both. Tokens are minted and listed only from a login session, so
a stolen token cannot make more tokens.

Checking a token costs one indexed query; a valid answer is then reused for
``api_token_cache_seconds`` (``ApiTokenCache``), so most requests cost none.
``last_used_at`` is written at most once a minute per token. A revocation clears the
process's cache at once; other replicas stop accepting the token within the cache
lifetime.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import ApiToken
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from hpcportal.services import audit, auth
from hpcportal.services.auth import TokenClaims, utcnow
from hpcportal.services.identity import Principal

TOKEN_PREFIX = "hpcp_"  # noqa: S105 (a format marker, not a secret)
#: ``secrets.token_urlsafe(30)`` is exactly 40 characters (240 random bits).
TOKEN_RANDOM_BYTES = 30
TOKEN_RANDOM_LENGTH = 40
TOKEN_RE = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{{TOKEN_RANDOM_LENGTH}}}")

Scope = Literal["read", "write"]
ALL_SCOPES: tuple[Scope, ...] = ("read", "write")
#: Requests the ``read`` scope allows; every other method needs ``write``.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MAX_EXPIRES_IN_DAYS = 365
NAME_MAX_LENGTH = 100
#: Active (unrevoked) tokens one user may hold.
MAX_TOKENS_PER_USER = 100
#: ``last_used_at`` is written at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)

NOT_VALID = "This API token is not valid."
REVOKED = "This API token has been revoked; create a new one."
EXPIRED = "This API token expired on {when:%Y-%m-%d %H:%M} UTC; create a new one."
READ_ONLY = "This API token may only read."
WRITE_ONLY = "This API token may only write."
SESSION_REQUIRED = (
    "This needs a login session (username and password); an API token cannot be used "
    "here, so a token can never create or list tokens."
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- Tokens and hashes ---------------------------------------------------------------


def generate_token() -> str:
    """A new token: the prefix and 40 URL-safe random characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)


def hash_token(token: str) -> str:
    """What the database stores and is searched by: SHA-256, 64 hex digits.

    A plain hash is enough (no salt, no slow KDF): the token has 240 random bits, so
    there is nothing to guess, and a fast hash keeps the lookup a single index probe.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    """Whether a bearer credential is meant as an API token (rather than a login JWT)."""
    return credential.startswith(TOKEN_PREFIX)


def format_scopes(scopes: Iterable[str]) -> str:
    """Scopes as stored: space-separated, in canonical order."""
    wanted = set(scopes)
    return " ".join(scope for scope in ALL_SCOPES if scope in wanted)


def parse_scopes(stored: str) -> frozenset[str]:
    """The stored scopes; anything unknown (a future scope) grants nothing here."""
    return frozenset(part for part in stored.split() if part in ALL_SCOPES)


# --- Who is asking, and may they ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authentication:
    """How the request authenticated: a login session (JWT) or an API token."""

    username: str
    method: Literal["session", "api_token"]
    scopes: frozenset[str]
    #: The login JWT's claims; ``None`` for an API token.
    claims: TokenClaims | None = None
    #: The API token's id; ``None`` for a session.
    token_id: int | None = None

    @classmethod
    def for_session(cls, claims: TokenClaims) -> Authentication:
        return cls(claims.subject, "session", frozenset(ALL_SCOPES), claims=claims)

    @classmethod
    def for_api_token(cls, token: ValidToken) -> Authentication:
        return cls(token.username, "api_token", token.scopes, token_id=token.id)

    @property
    def is_session(self) -> bool:
        return self.method == "session"


def required_scope(method: str) -> Scope:
    return "read" if method.upper() in SAFE_METHODS else "write"


def check_scope(authentication: Authentication, method: str) -> None:
    """Refuse (403) a request the credential's scopes do not cover."""
    needed = required_scope(method)
    if needed in authentication.scopes:
        return
    raise Forbidden(READ_ONLY if needed == "write" else WRITE_ONLY)


def require_session(authentication: Authentication) -> TokenClaims:
    """The login session's claims; an API token is refused (403)."""
    if authentication.claims is None:
        raise Forbidden(SESSION_REQUIRED)
    return authentication.claims


def resolve_principal(settings: Settings, username: str) -> Principal:
    """The token's owner as the system sees them now, like a session's user."""
    return auth.usable_principal(settings, username)


# --- Checking a token, with a short in-memory cache -----------------------------------


@dataclass(frozen=True, slots=True)
class ValidToken:
    """What a request needs to know about a token that was valid when checked."""

    id: int
    username: str
    scopes: frozenset[str]
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(slots=True)
class _Entry:
    until: float
    token: ValidToken


@dataclass
class ApiTokenCache:
    """Valid token lookups of this process, by hash, each for ``ttl`` seconds.

    Only valid tokens are kept, never refusals. ``forget`` (on revocation) drops a
    token at once and also discards any lookup that was under way when it ran, so a
    check racing with the revocation cannot put the token back.
    """

    ttl: float
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 4096
    _entries: dict[str, _Entry] = field(default_factory=dict, init=False)
    _generation: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def generation(self) -> int:
        """Changes on every ``forget``; pass the value read before a lookup to ``put``."""
        return self._generation

    def get(self, token_hash: str, now: datetime | None = None) -> ValidToken | None:
        with self._lock:
            entry = self._entries.get(token_hash)
        if entry is None or entry.until <= self.clock():
            return None
        if entry.token.expired(now or utcnow()):
            return None
        return entry.token

    def lookup(self, token: str) -> ValidToken | None:
        """The cached answer for a token, if any: no query, no thread hop."""
        return self.get(hash_token(token))

    def put(self, token_hash: str, token: ValidToken, generation: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # a revocation happened while this lookup ran
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                self._entries = {h: e for h, e in self._entries.items() if e.until > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[token_hash] = _Entry(self.clock() + self.ttl, token)

    def forget(self, token_id: int) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {h: e for h, e in self._entries.items() if e.token.id != token_id}

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def check_token(session: Session, token: str, now: datetime | None = None) -> ValidToken:
    """Look a token up by its hash and refuse (401) unknown, revoked and expired ones.

    Records the use (``last_used_at``) when the last recorded one is over a minute
    old; the caller commits.
    """
    if not TOKEN_RE.fullmatch(token):
        raise NotAuthenticated(NOT_VALID)
    moment = now or utcnow()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise NotAuthenticated(NOT_VALID)
    if row.revoked_at is not None:
        raise NotAuthenticated(REVOKED)
    if row.expires_at is not None and row.expires_at <= moment:
        raise NotAuthenticated(EXPIRED.format(when=row.expires_at))
    touch(session, row, moment)
    return ValidToken(
        id=row.id,
        username=row.username,
        scopes=parse_scopes(row.scopes),
        expires_at=row.expires_at,
    )


def touch(session: Session, row: ApiToken, now: datetime) -> bool:
    """Set ``last_used_at`` unless it was set less than a minute ago; ``True`` if written.

    The condition is repeated in the UPDATE so that replicas racing on the same token
    write once.
    """
    stale_before = now - LAST_USED_RESOLUTION
    if row.last_used_at is not None and row.last_used_at > stale_before:
        return False
    result = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == row.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= stale_before),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def authenticate(database: Database, cache: ApiTokenCache, token: str) -> ValidToken:
    """The token's owner and scopes: from the cache, else from the database (blocking)."""
    token_hash = hash_token(token)
    cached = cache.get(token_hash)
    if cached is not None:
        return cached
    generation = cache.generation
    with database.session() as session:
        valid = check_token(session, token)
    cache.put(token_hash, valid, generation)
    return valid


# --- Managing tokens -------------------------------------------------------------------


def _default_scopes() -> list[Scope]:
    return ["read"]


class ApiTokenCreate(BaseModel):
    """``POST /auth/api-tokens``: what the new token is called and may do."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(description="What the token is for, e.g. 'laptop CLI'.")
    scopes: list[Scope] = Field(
        default_factory=_default_scopes,
        description="read: GET/HEAD/OPTIONS requests; write: everything else.",
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EXPIRES_IN_DAYS,
        description=f"Lifetime in days (at most {MAX_EXPIRES_IN_DAYS}); null: until revoked.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > NAME_MAX_LENGTH or _CONTROL.search(value):
            raise ValueError(
                f"give 1 to {NAME_MAX_LENGTH} printable characters (no newlines or tabs)"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[Scope]) -> list[Scope]:
        if not value:
            raise ValueError("give at least one scope: read, write")
        return [scope for scope in ALL_SCOPES if scope in value]


class ApiTokenInfo(BaseModel):
    """A token as its owner sees it in the list: never the token itself."""

    id: int
    name: str
    username: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    expired: bool

    @classmethod
    def of(cls, row: ApiToken, now: datetime) -> ApiTokenInfo:
        return cls(
            id=row.id,
            name=row.name,
            username=row.username,
            scopes=[scope for scope in ALL_SCOPES if scope in parse_scopes(row.scopes)],
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            expired=row.expires_at is not None and row.expires_at <= now,
        )


class CreatedApiToken(BaseModel):
    """The answer to a create: the only time the token itself is shown."""

    id: int
    name: str
    token: str = Field(description="Shown once; only its hash is stored.")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None


def _active_count(session: Session, username: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ApiToken)
            .where(ApiToken.username == username, ApiToken.revoked_at.is_(None))
        )
        or 0
    )


def create_token(
    session: Session,
    owner: Principal,
    request: ApiTokenCreate,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> CreatedApiToken:
    """Mint a token for ``owner`` and audit it; the caller's transaction commits."""
    if _active_count(session, owner.username) >= MAX_TOKENS_PER_USER:
        raise InvalidInput(
            f"You already have {MAX_TOKENS_PER_USER} API tokens; revoke some you no longer use."
        )
    created = (now or utcnow()).replace(microsecond=0)
    expires = created + timedelta(days=request.expires_in_days) if request.expires_in_days else None
    token = generate_token()
    row = ApiToken(
        username=owner.username,
        name=request.name,
        token_hash=hash_token(token),
        scopes=format_scopes(request.scopes),
        created_at=created,
        expires_at=expires,
    )
    session.add(row)
    session.flush()  # assigns the id
    detail = f"name={request.name!r} scopes={row.scopes}"
    event = audit.Event.of(owner, "api_token.create", f"api_token:{row.id}", address, None, detail)
    audit.add(session, event)
    return CreatedApiToken(
        id=row.id,
        name=row.name,
        token=token,
        scopes=list(request.scopes),
        created_at=created,
        expires_at=expires,
    )


def list_tokens(
    session: Session, owner: Principal, now: datetime | None = None
) -> list[ApiTokenInfo]:
    """The owner's unrevoked tokens (expired ones too, marked), newest first."""
    moment = now or utcnow()
    rows = session.scalars(
        select(ApiToken)
        .where(ApiToken.username == owner.username, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    return [ApiTokenInfo.of(row, moment) for row in rows]


def revoke_token(
    session: Session,
    cache: ApiTokenCache,
    actor: Principal,
    token_id: int,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> None:
    """Revoke one of the actor's tokens (admins: anyone's), audit it, commit, and drop
    it from this process's cache so it is refused from the next request on.

    Someone else's token is "not found" to a non-admin, so ids reveal nothing.
    """
    row = session.get(ApiToken, token_id)
    allowed = row is not None and (row.username == actor.username or actor.is_admin)
    if row is None or not allowed or row.revoked_at is not None:
        raise NotFound(f"No API token {token_id}.")
    row.revoked_at = now or utcnow()
    owner = None if row.username == actor.username else f"owner={row.username}"
    event = audit.Event.of(actor, "api_token.revoke", f"api_token:{row.id}", address, None, owner)
    audit.add(session, event)
    # Commit before dropping the cache entry: a check starting after this sees the
    # revocation, one already under way is discarded by ``forget``.
    session.commit()
    cache.forget(token_id)
