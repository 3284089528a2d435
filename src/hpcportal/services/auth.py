"""Logging in: Unix passwords through PAM, short-lived JWTs, revocation, throttling.

The portal keeps no passwords and no user table: the operating system (NSS + PAM) is
the authority. What the portal does keep, in the database so that every replica sees
it, is which tokens were logged out and which logins failed recently.

Everything here is synchronous on purpose: PAM and NSS block, so the routers are
plain ``def`` functions that FastAPI runs in its thread pool, off the event loop.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from hpcportal.config import Settings
from hpcportal.db.models import ADDRESS_MAX_LENGTH, JTI_MAX_LENGTH, LoginFailure, RevokedToken
from hpcportal.errors import Forbidden, InvalidInput, NotAuthenticated, RateLimited
from hpcportal.services import unix_pam
from hpcportal.services.accounts import AccountPolicy
from hpcportal.services.identity import Principal, Role, lookup_principal

log = logging.getLogger(__name__)

#: POSIX-portable user names (letters, digits, ``.``, ``_``, ``-``; not starting with
#: ``-`` or ``.``), at most 32 characters as on Linux. Checked with ``fullmatch``.
USERNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
#: Refuse absurd passwords before they reach PAM (and the C strings behind it).
MAX_PASSWORD_LENGTH = 4096
#: The per-address limit is this many times the per-user one: an office behind one
#: NAT address has several people mistyping.
ADDRESS_LIMIT_FACTOR = 4
#: Tolerated clock difference between replicas when checking ``iat``/``exp``.
CLOCK_SKEW_SECONDS = 10

CSRF_COOKIE = "hpcportal_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

WRONG_CREDENTIALS = "Wrong username or password."
SESSION_EXPIRED = "Your session has expired; log in again."
SESSION_INVALID = "Your session is not valid; log in again."
SESSION_ENDED = "You have logged out; log in again."
ACCOUNT_REFUSED = "This account may no longer use the portal."
CSRF_REFUSED = (
    f"Missing or wrong {CSRF_HEADER} header: requests authenticated by the session cookie "
    f"must send the value of the {CSRF_COOKIE} cookie in that header."
)


def utcnow() -> datetime:
    """Now, timezone-aware; one function so tests and callers agree on the clock."""
    return datetime.now(UTC)


# --- User names and passwords -------------------------------------------------------


def validate_username(username: str) -> str:
    """Refuse what cannot be a Unix user name, before it reaches NSS, PAM or the DB."""
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            "A user name is 1 to 32 letters, digits, '.', '_' or '-', "
            "and does not start with '.' or '-'."
        )
    return username


def may_log_in(principal: Principal, settings: Settings) -> bool:
    """Root and system accounts never use the portal, whatever their password."""
    return principal.uid >= settings.min_uid and principal.username != "root"


def pam_authenticate(username: str, password: str, service: str) -> bool:
    """Ask PAM's ``auth`` stack only; blocks (about 2 s on failure). Whether the account
    may be used is ``account_refusal``'s question, asked after a right password."""
    return unix_pam.authenticate(service, username, password)


def account_refusal(principal: Principal, settings: Settings) -> str | None:
    """Why this account may not use the portal (for the log only), or None.

    Disabled shell, expired account or password, locked password: see
    ``services.accounts``.
    """
    return AccountPolicy.from_settings(settings).refusal(principal)


def _password_acceptable(password: str) -> bool:
    # A NUL would silently truncate the C string PAM receives.
    return 0 < len(password) <= MAX_PASSWORD_LENGTH and "\x00" not in password


def _check_credentials(principal: Principal | None, password: str, settings: Settings) -> bool:
    if principal is None or not may_log_in(principal, settings):
        return False
    if not _password_acceptable(password):
        return False
    return pam_authenticate(principal.username, password, settings.pam_service)


def _pad_failure(started: float, least_seconds: float) -> None:
    """Make refusals without PAM as slow as PAM's own failure delay.

    Otherwise a quick answer would tell an attacker the user does not exist.
    """
    remaining = least_seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)


def login(
    session: Session, settings: Settings, username: str, password: str, address: str
) -> Principal:
    """Check a login attempt end to end; the caller then issues the token.

    Throttling comes first so a blocked user or address never reaches PAM. Failures
    are committed before raising so the request's rollback cannot lose them.

    An account that may not use the portal (``account_refusal``) is refused only
    after PAM accepted its password, so only the password's holder learns it, and
    the refusal counts as a failure and takes as long as a wrong password.
    """
    started = time.monotonic()
    name = validate_username(username)
    principal = lookup_principal(name, settings.admin_group)
    # Count failures under the canonical name, so "Alice" and "alice" share a budget.
    key = principal.username if principal is not None else name
    check_login_allowed(session, settings, key, address, utcnow())
    session.commit()  # end the read transaction; PAM may take seconds
    message = None
    if not _check_credentials(principal, password, settings):
        message = WRONG_CREDENTIALS
    elif principal is not None and (refusal := account_refusal(principal, settings)):
        log.warning("login of %s refused: %s", principal.username, refusal)
        message = ACCOUNT_REFUSED
    if message is not None:
        record_login_failure(session, settings, key, address, utcnow())
        session.commit()
        _pad_failure(started, settings.login_failure_delay_seconds)
        raise NotAuthenticated(message)
    assert principal is not None  # _check_credentials refused None
    clear_login_failures(session, key)
    session.commit()
    return principal


# --- Throttling failed logins -------------------------------------------------------


def _blocked_until(
    session: Session,
    column: InstrumentedAttribute[str],
    value: str,
    limit: int,
    window: timedelta,
    now: datetime,
) -> datetime | None:
    """When ``value`` may try again, or ``None`` if it has failed fewer than ``limit`` times.

    With the newest ``limit`` failures in the window, the block lifts when the oldest
    of them leaves the window.
    """
    recent = session.scalars(
        select(LoginFailure.failed_at)
        .where(column == value, LoginFailure.failed_at > now - window)
        .order_by(LoginFailure.failed_at.desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return None
    return recent[-1] + window


def describe_wait(seconds: int) -> str:
    """``42 s``, ``3 min``, ``1 min 5 s``: a wait as a person reads it."""
    minutes, rest = divmod(seconds, 60)
    if minutes == 0:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def check_login_allowed(
    session: Session, settings: Settings, username: str, address: str, now: datetime
) -> None:
    """Raise ``RateLimited`` (with ``Retry-After``) if the user or address failed too often."""
    window = timedelta(seconds=settings.login_window_seconds)
    limit = settings.login_max_failures
    candidates = [
        _blocked_until(session, LoginFailure.username, username, limit, window, now),
        _blocked_until(
            session, LoginFailure.address, address, limit * ADDRESS_LIMIT_FACTOR, window, now
        ),
    ]
    blocks = [until for until in candidates if until is not None and until > now]
    if not blocks:
        return
    until = max(blocks)
    wait = max(1, math.ceil((until - now).total_seconds()))
    raise RateLimited(
        f"Too many failed logins; try again in {describe_wait(wait)} (after {until:%H:%M:%S} UTC).",
        headers={"Retry-After": str(wait)},
    )


def _prune_failures(session: Session, settings: Settings, now: datetime) -> None:
    cutoff = now - timedelta(seconds=settings.login_window_seconds)
    session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= cutoff))


def record_login_failure(
    session: Session, settings: Settings, username: str, address: str, now: datetime
) -> None:
    """Remember one failure (and drop those too old to matter). The caller commits."""
    _prune_failures(session, settings, now)
    session.add(
        LoginFailure(username=username, address=address[:ADDRESS_MAX_LENGTH], failed_at=now)
    )


def clear_login_failures(session: Session, username: str) -> None:
    """A successful login forgives that user's earlier mistakes. The caller commits."""
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))


# --- Tokens ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and what the login answer tells about it."""

    token: str
    jti: str
    expires_at: datetime
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of a token. ``role`` is what it was at login, for display;
    authorisation uses the role looked up on each request."""

    subject: str
    jti: str
    role: str
    issued_at: datetime
    expires_at: datetime


def _signing_key(settings: Settings) -> str:
    return settings.jwt_secret.get_secret_value()


def issue_token(
    settings: Settings, principal: Principal, now: datetime | None = None
) -> IssuedToken:
    """Sign a short-lived token; the random ``jti`` is what logout revokes."""
    issued = (now or utcnow()).replace(microsecond=0)
    expires = issued + timedelta(seconds=settings.token_ttl_seconds)
    jti = secrets.token_urlsafe(16)
    role: Role = principal.role
    claims: dict[str, Any] = {
        "sub": principal.username,
        "iat": issued,
        "exp": expires,
        "jti": jti,
        "role": role,
    }
    token = jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)
    return IssuedToken(token, jti, expires, settings.token_ttl_seconds)


def _claims_from_payload(payload: dict[str, Any]) -> TokenClaims:
    subject, jti, role = payload.get("sub"), payload.get("jti"), payload.get("role", "user")
    if not isinstance(subject, str) or not USERNAME_RE.fullmatch(subject):
        raise NotAuthenticated(SESSION_INVALID)
    if not isinstance(jti, str) or not 0 < len(jti) <= JTI_MAX_LENGTH:
        raise NotAuthenticated(SESSION_INVALID)
    return TokenClaims(
        subject=subject,
        jti=jti,
        role=str(role),
        issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
    )


def decode_token(settings: Settings, token: str) -> TokenClaims:
    """Verify signature, algorithm (only the configured one), expiry and required claims."""
    try:
        payload = jwt.decode(
            token,
            _signing_key(settings),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "iat", "exp", "jti"]},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated(SESSION_EXPIRED) from None
    except jwt.InvalidTokenError:
        raise NotAuthenticated(SESSION_INVALID) from None
    return _claims_from_payload(payload)


# --- Revocation -----------------------------------------------------------------------


def is_revoked(session: Session, jti: str) -> bool:
    """One primary-key lookup per authenticated request."""
    return session.get(RevokedToken, jti) is not None


def revoke_token(session: Session, claims: TokenClaims, now: datetime | None = None) -> None:
    """Revoke until the token's own expiry; drop revocations of tokens expired anyway."""
    moment = now or utcnow()
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= moment))
    if session.get(RevokedToken, claims.jti) is None:
        session.add(RevokedToken(jti=claims.jti, expires_at=claims.expires_at))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another replica revoked the same token at the same moment


class RevocationList:
    """This replica's copy of the logged-out tokens that have not expired yet.

    Asking the database on every request would cost a connection and a query per
    read, the largest part of a cached read's time. Instead each replica re-reads the
    (small: at most the logouts of one token lifetime) table every ``sync_seconds``;
    its own logouts apply at once, another replica's within ``sync_seconds``.
    """

    def __init__(self, sync_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.sync_seconds = sync_seconds
        self._clock = clock
        self._revoked: dict[str, datetime] = {}
        self._synced_at: float | None = None
        self._lock = threading.Lock()

    def needs_sync(self) -> bool:
        return self._synced_at is None or self._clock() - self._synced_at >= self.sync_seconds

    def sync(self, session: Session, now: datetime | None = None) -> None:
        moment = now or utcnow()
        rows = session.execute(
            select(RevokedToken.jti, RevokedToken.expires_at).where(
                RevokedToken.expires_at > moment
            )
        ).all()
        with self._lock:
            self._revoked = {jti: expires for jti, expires in rows}
            self._synced_at = self._clock()

    def add(self, jti: str, expires_at: datetime) -> None:
        with self._lock:
            self._revoked[jti] = expires_at

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked


# --- The user behind a token ---------------------------------------------------------


class PrincipalCache:
    """Briefly reuse NSS (and account) answers: listing all groups can be slow with
    LDAP/SSSD, and PAM's account stack costs a few milliseconds.

    Short TTL so that adding someone to (or removing them from) the admin group, or
    disabling, expiring or locking their account, takes effect within seconds,
    without logging out.
    """

    MAX_ENTRIES = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[
            tuple[str, str, AccountPolicy | None], tuple[float, Principal | None]
        ] = {}

    def get(
        self, username: str, admin_group: str, ttl: float, settings: Settings | None = None
    ) -> Principal | None:
        """The user, or None if unknown (or, with ``settings``, if their account may
        not use the portal under those settings' account checks)."""
        policy = AccountPolicy.from_settings(settings) if settings is not None else None
        if ttl <= 0:
            return self._lookup(username, admin_group, settings)
        key, now = (username, admin_group, policy), self._clock()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        principal = self._lookup(username, admin_group, settings)
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + ttl, principal)
        return principal

    @staticmethod
    def _lookup(username: str, admin_group: str, settings: Settings | None) -> Principal | None:
        principal = lookup_principal(username, admin_group)
        if principal is None or settings is None:
            return principal
        if not may_log_in(principal, settings):
            return None
        refusal = account_refusal(principal, settings)
        if refusal is not None:
            log.info("%s may not use the portal: %s", username, refusal)
            return None
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


principal_cache = PrincipalCache()


def usable_principal(settings: Settings, username: str) -> Principal:
    """The user as the system sees them now (groups, hence role, included), if their
    account may still use the portal; else ``NotAuthenticated(ACCOUNT_REFUSED)``.

    Used for every session and API token, so an account disabled, expired or locked
    after logging in stops working within ``principal_cache_seconds``.
    """
    principal = principal_cache.get(
        username, settings.admin_group, settings.principal_cache_seconds, settings
    )
    if principal is None:
        raise NotAuthenticated(ACCOUNT_REFUSED)
    return principal


def resolve_principal(settings: Settings, claims: TokenClaims) -> Principal:
    """The token's user as the system sees them now (see ``usable_principal``)."""
    return usable_principal(settings, claims.subject)


# --- CSRF (double-submit cookie) -----------------------------------------------------


def new_csrf_token() -> str:
    """Random value for the readable CSRF cookie; the page echoes it in a header."""
    return secrets.token_urlsafe(32)


def check_csrf(method: str, cookie_value: str | None, header_value: str | None) -> None:
    """For cookie-authenticated unsafe requests, the header must repeat the cookie.

    Another site can make the browser send our cookies, but cannot read them to
    copy the value into a header.
    """
    if method.upper() not in UNSAFE_METHODS:
        return
    if not cookie_value or not header_value:
        raise Forbidden(CSRF_REFUSED)
    if not hmac.compare_digest(cookie_value.encode(), header_value.encode()):
        raise Forbidden(CSRF_REFUSED)
