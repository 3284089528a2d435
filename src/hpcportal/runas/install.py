"""Install the run-as helper and its sudoers rule (``hpcportal runas install``).

The helper is copied, root-owned and not writable by anyone else, to a fixed path
that the sudoers rule names; the portal's service account may run that program,
and nothing else, as any user but root. The helper itself refuses UIDs below
``min_uid``, disabled shells and malformed names. ``--slurm-bin-dir`` fixes the one
folder it runs Slurm clients from (a newer Slurm than the system's), checked to be
changeable by root alone.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpcportal.runas.boundary import SYSTEM_PYTHON, helper_source
from hpcportal.runas.slurm_dir import UnsafeSlurmDir, fix_slurm_dir, trusted_slurm_dir

SUDOERS_FILE = Path("/etc/sudoers.d/hpcportal")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class InstallError(Exception):
    pass


def sudoers_rule(service_user: str, helper: Path) -> str:
    """The sudoers text: exactly one program, as anyone but root, no password."""
    if not _ACCOUNT.fullmatch(service_user):
        raise InstallError(f"{service_user!r} is not a valid account name")
    if not helper.is_absolute() or any(c in str(helper) for c in " ,:=\\\n"):
        raise InstallError(f"{helper} must be an absolute path without spaces or , : = \\")
    return (
        "# Written by `hpcportal runas install`. The portal's service account may run the\n"
        "# run-as helper, and only it, as any user but root, without a password. The\n"
        "# helper refuses system accounts (UID below its MIN_UID) and disabled shells.\n"
        f"Defaults:{service_user} !requiretty, !lecture\n"
        f"Defaults!{helper} env_reset\n"
        f"{service_user} ALL=(ALL,!root) NOPASSWD: {helper}\n"
    )


def helper_text(min_uid: int, python: str = SYSTEM_PYTHON, slurm_dir: Path | None = None) -> str:
    """The helper's source with the interpreter, minimum UID and Slurm folder fixed at
    install time (``slurm_dir`` must have passed ``trusted_slurm_dir``)."""
    source = fix_slurm_dir(helper_source(), slurm_dir)
    source = re.sub(r"^MIN_UID = \d+", f"MIN_UID = {int(min_uid)}", source, count=1, flags=re.M)
    return f"#!{python} -IS\n{source}"


@dataclass(frozen=True)
class Installed:
    helper: Path
    sudoers: Path
    service_user: str
    slurm_dir: Path | None = None


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
) -> Installed:
    """Install (or refresh) the helper and the sudoers rule; idempotent.

    ``slurm_bin_dir`` is the folder of Slurm clients the helper runs (before its fixed
    PATH); it is refused unless only root can change it (``slurm_dir.py``).
    """
    if os.geteuid() != 0:
        raise InstallError("run this as root")
    rule = sudoers_rule(service_user, helper)
    slurm_dir = None
    if slurm_bin_dir is not None:
        try:
            slurm_dir = trusted_slurm_dir(slurm_bin_dir)
        except (UnsafeSlurmDir, OSError) as exc:
            raise InstallError(f"refusing --slurm-bin-dir: {exc}") from exc
    _write_root_file(helper, helper_text(min_uid, slurm_dir=slurm_dir), 0o755)
    check = subprocess.run(
        ["visudo", "-cf", "-"], input=rule, text=True, capture_output=True, check=False
    )
    if check.returncode != 0:
        raise InstallError(f"visudo rejected the rule: {check.stderr.strip() or check.stdout}")
    _write_root_file(sudoers, rule, 0o440)
    return Installed(helper=helper, sudoers=sudoers, service_user=service_user, slurm_dir=slurm_dir)
