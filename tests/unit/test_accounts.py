"""The shell part of the account policy, and the /etc/shells and /etc/shadow readers.

The PAM part (expiry, forced change) and the lock mark on real accounts are tested
with throwaway Unix users in tests/integration/test_account_refusal.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.services.accounts import AccountPolicy, listed_shells, password_locked
from hpcportal.services.identity import Principal


def principal(shell: str) -> Principal:
    return Principal("alice", 1001, 1001, ("research",), "user", shell=shell)


def policy(**values: object) -> AccountPolicy:
    settings = Settings(jwt_secret=SecretStr("x" * 48), login_check_account=False, **values)  # type: ignore[arg-type]
    return AccountPolicy.from_settings(settings)


@pytest.mark.parametrize("shell", ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"])
def test_disabled_shells_are_refused_by_default(shell: str) -> None:
    assert policy().refusal(principal(shell)) == f"its shell {shell} is a disabled one"


@pytest.mark.parametrize("shell", ["/bin/bash", "", "/usr/local/bin/zsh"])
def test_other_shells_are_let_in_by_default(shell: str) -> None:
    assert policy().refusal(principal(shell)) is None


def test_the_refused_shells_are_configurable() -> None:
    strict = policy(login_refuse_shells=["/usr/bin/rbash"])
    assert strict.refusal(principal("/usr/bin/rbash")) is not None
    assert strict.refusal(principal("/usr/sbin/nologin")) is None


def test_a_shell_not_in_etc_shells_is_refused_only_when_asked() -> None:
    listed = policy(login_require_listed_shell=True)
    assert "/bin/bash" in listed_shells()
    assert listed.refusal(principal("/bin/bash")) is None
    assert listed.refusal(principal("")) is None  # empty means /bin/sh, which is listed
    assert listed.refusal(principal("/opt/weird/shell")) == (
        "its shell /opt/weird/shell is not listed in /etc/shells"
    )


def test_shells_file_comments_and_a_missing_file(tmp_path: Path) -> None:
    shells = tmp_path / "shells"
    shells.write_text("# comment\n/bin/bash\n\n  /bin/zsh  \n")
    assert listed_shells(shells) == {"/bin/bash", "/bin/zsh"}
    assert listed_shells(tmp_path / "absent") == frozenset()


def test_lock_mark_is_read_from_a_shadow_file(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("alice:!$y$hash:20000:0:99999:7:::\nbob:$y$hash:20000::::::\n")
    assert password_locked("alice", shadow) is True
    assert password_locked("bob", shadow) is False
    assert password_locked("al", shadow) is None  # a prefix of a name is not the name
    assert password_locked("carol", shadow) is None  # not a local account
    assert password_locked("alice", tmp_path / "unreadable") is None
