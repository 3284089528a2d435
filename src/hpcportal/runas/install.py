"""Install the run-as helper and its sudoers rule (``hpcportal runas install``).

The helper is copied, root-owned and not writable by anyone else, to a fixed path
that the sudoers rule names; the portal's service account may run that program,
and nothing else, as any user but root, Slurm's daemon accounts and the deny list
(``denied.py``), and, given a group, only as its members. The helper itself refuses
UIDs below ``min_uid``, those denied accounts (fixed in its text), disabled shells
and malformed names. ``--slurm-bin-dir`` fixes the one folder it runs Slurm clients
from (a newer Slurm than the system's), checked to be changeable by root alone.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hpcportal.runas.assemble import SYSTEM_PYTHON, helper_program
from hpcportal.runas.denied import DenyList, DenyListError, deny_list
from hpcportal.runas.slurm_dir import UnsafeSlurmDir, trusted_slurm_dir

SUDOERS_FILE = Path("/etc/sudoers.d/hpcportal")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: A user or group name as sudoers spells it in a Runas list.
_SUDOERS_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


class InstallError(Exception):
    pass


def runas_list(group: str | None, deny: DenyList) -> str:
    """Whom sudo lets the service account become: the group's members (or anyone),
    never root nor a denied name or UID (in sudoers the last match in a list wins)."""
    if group is not None and not _SUDOERS_NAME.fullmatch(group):
        raise InstallError(f"{group!r} is not a valid group name")
    names = sorted(deny.names - {"root"})
    if not all(_SUDOERS_NAME.fullmatch(n) for n in names):
        raise InstallError("the deny list holds a name sudoers cannot spell")
    members = [f"%{group}" if group else "ALL", "!root"]
    members += [f"!{n}" for n in names] + [f"!#{u}" for u in sorted(deny.uids - {0})]
    return ", ".join(members)


def sudoers_rule(
    service_user: str, helper: Path, *, group: str | None = None, deny: DenyList = DenyList()
) -> str:
    """The sudoers text: exactly one program, as the group's members (or anyone) but
    root and the denied accounts, no password."""
    if not _ACCOUNT.fullmatch(service_user):
        raise InstallError(f"{service_user!r} is not a valid account name")
    if not helper.is_absolute() or any(c in str(helper) for c in " ,:=\\\n"):
        raise InstallError(f"{helper} must be an absolute path without spaces or , : = \\")
    whom = f"members of group {group}" if group else "any user"
    return (
        "# Written by `hpcportal runas install`. The portal's service account may run the\n"
        f"# run-as helper, and only it, as {whom} but root and Slurm's daemon\n"
        "# accounts and the deny list, without a password. The helper refuses those too,\n"
        "# and system accounts (UID below its MIN_UID) and disabled shells.\n"
        f"Defaults:{service_user} !requiretty, !lecture\n"
        f"Defaults!{helper} env_reset\n"
        f"{service_user} ALL=({runas_list(group, deny)}) NOPASSWD: {helper}\n"
    )


def helper_text(
    min_uid: int,
    python: str = SYSTEM_PYTHON,
    slurm_dir: Path | None = None,
    deny: DenyList = DenyList(),
) -> str:
    """The helper's source with the interpreter, minimum UID, Slurm folder and deny list
    fixed at install time (``slurm_dir`` must have passed ``trusted_slurm_dir``)."""
    source = helper_program(slurm_dir, deny)
    source = re.sub(r"^MIN_UID = \d+", f"MIN_UID = {int(min_uid)}", source, count=1, flags=re.M)
    return f"#!{python} -IS\n{source}"


#: Lines ``helper_text`` fixes per site (interpreter, minimum UID, deny list, Slurm
#: folder); the rest is this version's program.
_INSTALL_TIME = re.compile(
    r"^(#!.*|MIN_UID = .*|DENY_USERS: .*|DENY_UIDS: .*|SLURM_PATH = .*)$", re.M
)


def _program(text: str) -> str:
    return _INSTALL_TIME.sub("", text).strip()


def installed_helper_matches(path: Path) -> bool:
    """Whether the helper installed at ``path`` is this version's program, whatever the
    site fixed in it at install time (``hpcportal check``: an older or altered copy
    would refuse or misread this version's requests).

    Raises ``OSError`` (``FileNotFoundError`` when nothing is installed there) when the
    file cannot be read, so the caller can say which it is.
    """
    installed = path.read_text(errors="replace")
    return _program(installed) == _program(helper_program(None, DenyList()))


@dataclass(frozen=True)
class Installed:
    helper: Path
    sudoers: Path
    service_user: str
    slurm_dir: Path | None = None
    denied: frozenset[str] = frozenset()
    group: str | None = None


def _write_root_file(path: Path, text: str, mode: int) -> None:
    """Write atomically, owned by root, not writable by anyone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chown(temp, 0, 0)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def ensure_service_account(name: str) -> None:
    """Create the unprivileged system account the portal runs as, if missing.

    It joins group ``shadow`` so PAM (pam_unix) can check other users' passwords.
    """
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    try:
        members = grp.getgrnam("shadow").gr_mem
    except KeyError:
        return
    if name not in members:
        subprocess.run(["usermod", "-a", "-G", "shadow", name], check=True, capture_output=True)


def install(
    service_user: str,
    helper: Path = Path("/usr/local/libexec/hpcportal-runas"),
    *,
    min_uid: int = 1000,
    sudoers: Path = SUDOERS_FILE,
    slurm_bin_dir: Path | None = None,
    slurm_conf: Path | None = None,
    deny_users: Iterable[str] = (),
    group: str | None = None,
) -> Installed:
    """Install (or refresh) the helper and the sudoers rule; idempotent.

    ``slurm_bin_dir`` is the folder of Slurm clients the helper runs (before its fixed
    PATH); it is refused unless only root can change it (``slurm_dir.py``).
    ``SlurmUser`` and ``SlurmdUser`` are read from ``slurm_conf`` (None: not read) and
    refused with ``deny_users`` by the helper and by sudo; ``group`` (which must exist)
    limits sudo to its members.
    """
    if os.geteuid() != 0:
        raise InstallError("run this as root")
    try:
        deny = deny_list(deny_users, slurm_conf)
    except DenyListError as exc:
        raise InstallError(f"refusing the deny list: {exc}") from exc
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise InstallError(f"there is no group {group!r} (runas_group)") from None
    rule = sudoers_rule(service_user, helper, group=group, deny=deny)
    slurm_dir = None
    if slurm_bin_dir is not None:
        try:
            slurm_dir = trusted_slurm_dir(slurm_bin_dir)
        except (UnsafeSlurmDir, OSError) as exc:
            raise InstallError(f"refusing --slurm-bin-dir: {exc}") from exc
    _write_root_file(helper, helper_text(min_uid, slurm_dir=slurm_dir, deny=deny), 0o755)
    check = subprocess.run(
        ["visudo", "-cf", "-"], input=rule, text=True, capture_output=True, check=False
    )
    if check.returncode != 0:
        raise InstallError(f"visudo rejected the rule: {check.stderr.strip() or check.stdout}")
    _write_root_file(sudoers, rule, 0o440)
    return Installed(helper, sudoers, service_user, slurm_dir, deny.names, group)


@dataclass(frozen=True)
class Uninstalled:
    """What ``uninstall`` removed: each path, or None when it was already gone."""

    helper: Path | None
    sudoers: Path | None


def _is_our_helper(path: Path) -> bool:
    """A helper ``helper_text`` wrote (an ``-IS`` interpreter line, then the helper's
    docstring), so ``uninstall`` never deletes a program it did not install."""
    try:
        with path.open(errors="replace") as handle:
            first, second = handle.readline(), handle.readline()
    except OSError:
        return False
    return (
        first.startswith("#!")
        and first.rstrip().endswith(" -IS")
        and (second.startswith('"""hpcportal-runas:'))
    )


def _is_our_rule(path: Path) -> bool:
    try:
        return path.read_text(errors="replace").startswith("# Written by `hpcportal runas install`")
    except OSError:
        return False


def uninstall(
    helper: Path = Path("/usr/local/libexec/hpcportal-runas"), *, sudoers: Path = SUDOERS_FILE
) -> Uninstalled:
    """Remove the sudoers rule, then the helper; idempotent (missing files are fine).

    The rule goes first, so there is never a rule naming a missing program. A file
    at either path that ``install`` did not write is refused, not deleted.
    """
    if os.geteuid() != 0:
        raise InstallError("run this as root")
    for path, ours in ((sudoers, _is_our_rule), (helper, _is_our_helper)):
        if path.exists() and not ours(path):
            raise InstallError(f"{path} was not written by `hpcportal runas install`; not removed")
    removed: list[Path | None] = []
    for path in (sudoers, helper):
        try:
            path.unlink()
        except FileNotFoundError:
            removed.append(None)
        else:
            removed.append(path)
    return Uninstalled(helper=removed[1], sudoers=removed[0])
