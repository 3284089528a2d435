"""Identity: logins, sessions and tokens, who may log in, and per-user rate limits.

PAM and the admin group, the JWT signing key and session cookie, login throttling, the
accounts refused (UIDs, shells, PAM account management), how long checked users and
tokens are reused, how often submissions and session launches are allowed per user,
and how long an opened share link lasts. Used by ``services/auth.py``,
``services/accounts.py``, ``services/browser_session.py``, ``services/share_links.py``,
``services/rate_limits.py`` and the request dependencies (``dependencies.py``).
``jwt_secret_file`` is read into ``jwt_secret`` by ``Settings`` (``hpcportal.config``),
with the other ``*_file`` settings.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class IdentitySettings(BaseModel):
    """Who a user is, how long that holds, and how often they may act."""

    # Identity
    pam_service: str = Field(
        default="hpcportal", description="PAM service used to check passwords."
    )
    admin_group: str = Field(
        default="hpc-admins", description="Unix group whose members are admins."
    )
    jwt_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(48)),
        description="HS256 signing key of logins and share links, the same on every "
        "replica: from a secret file (secrets/jwt_secret, a systemd credential), "
        "jwt_secret_file or HPCPORTAL_JWT_SECRET. Unset: `serve` keeps a generated one "
        "in state_dir/secrets/jwt_secret (beside portal.key), so a restart logs nobody out.",
    )
    jwt_secret_file: Path | None = Field(
        default=None, description="A file holding jwt_secret (first line)."
    )
    jwt_algorithm: Literal["HS256"] = "HS256"
    token_ttl_seconds: int = Field(default=3600, gt=0, le=7 * 24 * 3600)
    cookie_name: str = "hpcportal_session"
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set true behind HTTPS)."
    )
    login_max_failures: int = Field(
        default=5, gt=0, description="Failed logins per user (and 4x per address) per window."
    )
    login_window_seconds: int = Field(default=300, gt=0)
    min_uid: int = Field(default=1000, ge=1, description="Lowest UID allowed to log in.")
    login_failure_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=10,
        description="Least time a failed login takes, so that refusing an unknown user "
        "without asking PAM is as slow as PAM's own failure delay.",
    )
    login_refuse_shells: list[str] = Field(
        default_factory=lambda: [
            "/usr/sbin/nologin",
            "/sbin/nologin",
            "/usr/bin/false",
            "/bin/false",
        ],
        description="Accounts with one of these login shells may not use the portal "
        "(login refused, existing sessions and API tokens end).",
    )
    login_require_listed_shell: bool = Field(
        default=False,
        description="Also refuse accounts whose shell is not listed in /etc/shells. Off "
        "by default: directory (LDAP/SSSD) accounts often name shells this host does "
        "not list, e.g. /usr/local/bin/zsh, and would be locked out.",
    )
    login_check_account: bool = Field(
        default=True,
        description="Run PAM account management (pam_acct_mgmt of pam_service: expired "
        "account or password, forced password change, the site's access rules) at "
        "login and whenever a user is looked up again, and refuse a locked password "
        "('!' in /etc/shadow, where readable).",
    )
    revocation_sync_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How often each replica re-reads logged-out tokens from the database.",
    )
    principal_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="How long a user's groups (hence the admin role) are reused; 0 = not at all.",
    )
    api_token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a checked API token is reused without a query (revocations "
        "in this process apply at once, in other replicas within this time); 0 = not at all.",
    )

    # Per-user rate limits (services/rate_limits.py); 0 = no limit
    rate_limit_jobs_per_minute: int = Field(
        default=30, ge=0, description="Job submissions per user per minute (API, templates)."
    )
    rate_limit_jobs_per_hour: int = Field(
        default=600, ge=0, description="Job submissions per user per hour."
    )
    rate_limit_sessions_per_minute: int = Field(
        default=3, ge=0, description="Interactive session launches per user per minute."
    )
    rate_limit_sessions_per_hour: int = Field(
        default=30, ge=0, description="Interactive session launches per user per hour."
    )
    rate_limit_exempt_admins: bool = Field(
        default=False,
        description="Let members of admin_group submit and launch without the limits.",
    )
    share_cookie_seconds: int = Field(
        default=8 * 3600,
        gt=0,
        le=7 * 24 * 3600,
        description="How long a share link, once opened, lets that browser view the "
        "desktop (an httpOnly cookie scoped to that share) before the link is needed "
        "again. Revoking the link ends it at once.",
    )

    @property
    def jwt_secret_configured(self) -> bool:
        """Was a signing key given (else this process made up one of its own)?"""
        return "jwt_secret" in self.model_fields_set
