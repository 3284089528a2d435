"""Who may see what: ``PrivateData`` and ``SlurmUser`` of slurmctld (``scontrol show
config``) and slurmdbd (``sacctmgr show config``), and Slurm's own roles (AdminLevel,
coordinators) from ``sacctmgr show user withcoord``."""

from __future__ import annotations

from collections.abc import Iterable

from hpcportal.slurm.models import PRIVATE_DATA_FLAGS, PrivateData, SlurmRoles
from hpcportal.slurm.parse.tables import parse_table
from hpcportal.slurm.parse.values import split_list

#: What Slurm looks for in a ``PrivateData`` value: it tests substrings (``strstr``),
#: so "job" and "jobs" are one flag and "all" is every flag.
_PRIVATE_DATA_STEMS = {
    "accounts": "account", "cloud": "cloud", "events": "event", "jobs": "job",
    "nodes": "node", "partitions": "partition", "reservations": "reservation",
    "usage": "usage", "users": "user",
}  # fmt: skip
_DBD_SECTION = "SlurmDBD configuration:"


def private_data_flags(value: str) -> frozenset[str]:
    """``"jobs,usage"`` -> ``{"jobs", "usage"}``, read the way Slurm reads its config."""
    words = {w.strip() for w in value.lower().split(",")}
    if "all" in words:
        return PRIVATE_DATA_FLAGS
    text = value.lower()
    return frozenset(flag for flag, stem in _PRIVATE_DATA_STEMS.items() if stem in text)


def parse_config(lines: Iterable[str]) -> dict[str, str]:
    """``Key = value`` lines (``scontrol show config``) -> a dict; other lines are skipped."""
    result: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() and " " not in name.strip():
            result.setdefault(name.strip(), value.strip())
    return result


def _private_data_of(config: dict[str, str], version_key: str) -> PrivateData:
    # "root(0)" -> "root"; a missing SlurmUser is root's, Slurm's default.
    user = config.get("SlurmUser", "root").split("(", 1)[0].strip() or "root"
    return PrivateData(
        flags=private_data_flags(config.get("PrivateData", "")),
        slurm_user=user,
        version=config.get(version_key, ""),
    )


def parse_controller_private_data(raw: bytes) -> PrivateData:
    """slurmctld's ``PrivateData`` and ``SlurmUser`` from ``scontrol show config``."""
    config = parse_config(raw.decode("utf-8", "replace").splitlines())
    if "PrivateData" not in config:
        raise ValueError("scontrol show config printed no PrivateData")
    return _private_data_of(config, "SLURM_VERSION")


def parse_database_private_data(raw: bytes) -> PrivateData:
    """slurmdbd's ``PrivateData`` and ``SlurmUser``: the part of ``sacctmgr show config``
    after "SlurmDBD configuration:" (before it come the client's own settings)."""
    lines = raw.decode("utf-8", "replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _DBD_SECTION)
    except StopIteration:
        raise ValueError("sacctmgr show config printed no SlurmDBD configuration") from None
    config = parse_config(lines[start + 1 :])
    if "PrivateData" not in config:
        raise ValueError("sacctmgr show config printed no PrivateData for slurmdbd")
    return _private_data_of(config, "SLURMDBD_VERSION")


def parse_roles(raw: bytes) -> SlurmRoles:
    """``sacctmgr --parsable2 show user withcoord format=user,adminlevel,coordinators``."""
    levels: dict[str, str] = {}
    coordinators: dict[str, frozenset[str]] = {}
    for row in parse_table(raw):
        user = row.get("User", "").strip()
        if not user:
            continue
        level = row.get("Admin", "").strip()
        if level and level != "None":
            levels[user] = level
        accounts = frozenset(split_list(row.get("Coord Accounts")))
        if accounts:
            coordinators[user] = accounts
    return SlurmRoles(admin_levels=levels, coordinators=coordinators)
