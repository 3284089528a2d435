"""Whether a Unix account may use the portal, beyond knowing its password.

A right password is not enough: an account whose shell is disabled (``nologin``,
``false``), that has expired, whose password has expired or must be changed, or
whose password is locked (``usermod -L``) is not meant to be used, and the portal,
which acts as that user on the cluster, must not be a way around that. The checks
run at login (after the password, so only its holder learns that the account is
refused) and whenever a session's or API token's user is looked up again
(``auth.PrincipalCache``), so existing sessions end too.

The sources, and what each needs:

- the shell, from NSS (``Principal.shell``): always readable;
- PAM account management (``unix_pam.account``): expiry, forced password change and
  whatever the site's ``account`` stack adds (SSSD access rules, ``pam_access``).
  pam_unix reads ``/etc/shadow`` as root, or through its setgid helper as the
  service account (which ``hpcportal runas install`` puts in group ``shadow``, as
  pam_unix needs anyway to check other users' passwords);
- the lock mark (``!`` before the hash in ``/etc/shadow``): pam_unix's account
  stack ignores it (a locked password only fails the password check), so an
  already logged-in user would keep their session. It is read where ``/etc/shadow``
  is readable (root, group ``shadow``); elsewhere it is unknown and skipped, and
  ``usermod -e 1`` (expiry, as usermod(8) advises for locking an account) still works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hpcportal.config import Settings
from hpcportal.services import unix_pam
from hpcportal.services.identity import Principal

log = logging.getLogger(__name__)

SHELLS_FILE = Path("/etc/shells")
SHADOW_FILE = Path("/etc/shadow")
#: What an empty shell field means (passwd(5)).
DEFAULT_SHELL = "/bin/sh"


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """The account checks the settings ask for; hashable, so caches can key on it."""

    refuse_shells: frozenset[str]
    require_listed_shell: bool
    check_account: bool
    pam_service: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountPolicy:
        return cls(
            refuse_shells=frozenset(settings.login_refuse_shells),
            require_listed_shell=settings.login_require_listed_shell,
            check_account=settings.login_check_account,
            pam_service=settings.pam_service,
        )

    def refusal(self, principal: Principal) -> str | None:
        """Why this account may not use the portal (for the log), or None if it may."""
        shell = principal.shell or DEFAULT_SHELL
        if shell in self.refuse_shells:
            return f"its shell {shell} is a disabled one"
        if self.require_listed_shell and shell not in listed_shells():
            return f"its shell {shell} is not listed in {SHELLS_FILE}"
        if not self.check_account:
            return None
        usable, reason = unix_pam.account(self.pam_service, principal.username)
        if not usable:
            return f"PAM account management refused it ({reason})"
        if password_locked(principal.username):
            return "its password is locked"
        return None


def listed_shells(path: Path = SHELLS_FILE) -> frozenset[str]:
    """The login shells of ``/etc/shells`` (read each time: it is tiny, and asked only
    when a user is looked up again, not per request)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(s for line in lines if (s := line.strip()) and not s.startswith("#"))


def password_locked(username: str, path: Path = SHADOW_FILE) -> bool | None:
    """Whether the local password of ``username`` is locked (``!`` prefix).

    ``None`` when that cannot be known: ``/etc/shadow`` is not readable by this
    process, or the user is not in it (an LDAP/SSSD account; its directory decides).
    Only the first character of the user's field is looked at and kept.
    """
    prefix = f"{username}:".encode()
    try:
        with path.open("rb") as shadow:
            for line in shadow:
                if line.startswith(prefix):
                    return line[len(prefix) : len(prefix) + 1] == b"!"
    except OSError:
        return None
    return None
