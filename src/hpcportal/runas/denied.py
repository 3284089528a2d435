"""Accounts the run-as helper never acts as, whatever their login shell.

Root and system accounts (UID below ``min_uid``) were always refused, and a disabled
shell was the only thing keeping the portal from acting as Slurm's own daemon account:
Debian's ``slurm`` has UID 64030. A site that gives it a login shell would have handed
the portal every job on the cluster. So Slurm's ``SlurmUser`` (slurmctld) and
``SlurmdUser`` (slurmd), read from slurm.conf, and the site's ``runas_deny_users`` are
refused by name and by UID, whatever their shell.

``hpcportal runas install`` reads them here and fixes them, like ``MIN_UID``, in the
text of the root-owned helper (``DENY_USERS``, ``DENY_UIDS``), and names them in the
sudoers rule: the helper consults nothing a request or the portal says at call time,
and parses no file. The portal reads the same names to refuse early with a 403, and
warns when the installed helper's list lacks one of them (SlurmUser changed since the
install).
"""

from __future__ import annotations

import ast
import contextlib
import glob
import logging
import pwd
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Where Slurm looks without ``SLURM_CONF`` (Debian and Slurm's own default build).
DEFAULT_SLURM_CONF = Path("/etc/slurm/slurm.conf")
DAEMON_KEYS = ("slurmuser", "slurmduser")
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: ``Key=Value`` or ``Key = "Value"``, several to a line (Slurm's own grammar).
_PAIR = re.compile(r'(?:^|\s)([A-Za-z]+)\s*=\s*(?:"([^"]*)"|(\S+))')
_INCLUDE = re.compile(r"^\s*include\s+(\S+)", re.IGNORECASE)
_FIXED_NAMES = re.compile(r"^DENY_USERS: frozenset\[str\] = frozenset\(\)$", re.M)
_FIXED_UIDS = re.compile(r"^DENY_UIDS: frozenset\[int\] = frozenset\(\)$", re.M)
_INSTALLED = re.compile(r"^DENY_USERS: frozenset\[str\] = frozenset\((.*)\)$", re.M)


class DenyListError(Exception):
    """slurm.conf could not be read, or a name in the deny list is not an account name."""


@dataclass(frozen=True)
class DenyList:
    """Names the helper refuses, and the UIDs they had when the list was made (an alias
    account sharing a denied UID is refused too)."""

    names: frozenset[str] = frozenset()
    uids: frozenset[int] = frozenset()

    def refuses(self, entry: pwd.struct_passwd) -> bool:
        return entry.pw_name in self.names or entry.pw_uid in self.uids


def _conf_lines(path: Path, depth: int = 0) -> Iterator[str]:
    """The lines of slurm.conf without comments, with its ``Include`` files in place."""
    if depth > 8:
        raise DenyListError(f"{path}: Include nested too deeply")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DenyListError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for raw in text.splitlines():
        line = re.sub(r"(?<!\\)#.*", "", raw)
        include = _INCLUDE.match(line)
        if include is None:
            yield line
            continue
        pattern = Path(include.group(1))
        pattern = pattern if pattern.is_absolute() else path.parent / pattern
        found = sorted(glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [pattern]
        for name in found:
            yield from _conf_lines(Path(name), depth + 1)


def slurm_daemon_users(conf: Path) -> frozenset[str]:
    """Every ``SlurmUser``/``SlurmdUser`` value in ``conf`` (both default to root, which
    is refused anyway). A name or a numeric UID, as Slurm accepts either."""
    values = {"root"}
    for line in _conf_lines(conf):
        for match in _PAIR.finditer(line):
            if match.group(1).lower() in DAEMON_KEYS:
                values.add(match.group(2) if match.group(2) is not None else match.group(3))
    return frozenset(values)


def deny_list(names: Iterable[str], slurm_conf: Path | None) -> DenyList:
    """``names`` plus slurm.conf's daemon accounts (none read if ``slurm_conf`` is None),
    with the UIDs of those that exist here."""
    wanted = set(names) | (slurm_daemon_users(slurm_conf) if slurm_conf else set())
    denied: set[str] = set()
    uids: set[int] = set()
    for value in wanted:
        if value.isdigit():
            uids.add(int(value))
            with contextlib.suppress(KeyError):
                denied.add(pwd.getpwuid(int(value)).pw_name)
            continue
        if not _NAME.fullmatch(value):
            raise DenyListError(f"{value!r} is not an account name")
        denied.add(value)
        with contextlib.suppress(KeyError):  # not here (yet): refused by name
            uids.add(pwd.getpwnam(value).pw_uid)
    return DenyList(frozenset(denied), frozenset(uids))


def portal_deny_list(names: Iterable[str], slurm_conf: Path | None) -> DenyList:
    """What the portal itself refuses: like ``deny_list`` with Slurm's default slurm.conf
    when none is configured, but an unreadable slurm.conf only logs (the installed
    helper's own list still holds)."""
    conf = slurm_conf or DEFAULT_SLURM_CONF
    try:
        return deny_list(names, conf)
    except DenyListError as exc:
        if slurm_conf is not None or conf.exists():
            log.warning("SlurmUser/SlurmdUser not read, only runas_deny_users applies: %s", exc)
        return deny_list(names, None)


def _literal(values: Iterable[object]) -> str:
    items = sorted(values, key=str)
    return "frozenset({" + ", ".join(repr(v) for v in items) + "})" if items else "frozenset()"


def fix_deny_list(source: str, deny: DenyList) -> str:
    """The helper's source with ``DENY_USERS`` and ``DENY_UIDS`` set to ``deny``."""
    if not all(_NAME.fullmatch(n) for n in deny.names):
        raise DenyListError("the deny list holds a name that is not an account name")
    names = f"DENY_USERS: frozenset[str] = {_literal(deny.names)}"
    uids = f"DENY_UIDS: frozenset[int] = {_literal(int(u) for u in deny.uids)}"
    source, count = _FIXED_NAMES.subn(names, source, count=1)
    source, more = _FIXED_UIDS.subn(uids, source, count=1)
    if count != 1 or more != 1:
        raise RuntimeError("the helper has no DENY_USERS/DENY_UIDS constants to fix")
    return source


def installed_deny_list(helper: Path) -> frozenset[str] | None:
    """The names fixed in an installed helper (none for one older than the deny list);
    None if it cannot be read."""
    try:
        text = helper.read_text(errors="replace")
    except OSError:
        return None
    match = _INSTALLED.search(text)
    if match is None:
        return frozenset()
    inside = match.group(1)
    value = ast.literal_eval(inside) if inside else set()
    return frozenset(str(v) for v in value)
