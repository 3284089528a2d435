"""Accounts, users in accounts and their associations as administrators and
coordinators change them: typed values, the one place their ``sacctmgr`` argv is
built, and the strict reading of what ``sacctmgr`` prints.

Reads (as the portal, never cached: plans and reverts need the truth):

- ``read_associations``: ``sacctmgr --parsable2 show assoc format=...`` (the columns
  of ``ASSOC_FIELDS``, header checked exactly). An account's own association has no
  user and names its parent (``ParentName``), so the rows are the account tree; a
  user's has the user and no parent. ``Share`` is a number or ``parent``; ``QOS`` is
  what the association may use (slurmdbd prints the inherited list when none is
  set); limits a child does not set itself are printed with its parent's value
  (slurmdbd copies them down, and takes them back when the parent's is removed).
- ``read_accounts``: ``show account withcoord`` (description, organisation,
  coordinators; sacctmgr lower-cases organisations).
- ``read_roles``: a user's ``AdminLevel`` and the accounts they coordinate (``show
  user withcoord``, whose ``Coord Accounts`` column lists them; a coordinator of an
  account also coordinates its sub-accounts).

Changes (``AdminCommand`` values; what a plan shows is what runs):

- ``account_create``: ``-i add account Name=A Parent=P Description=D Organization=O
  [limits]``; ``account_modify``: ``-i modify account where Name=A set ...`` (a new
  parent is its own ``set Parent=P`` command); ``account_delete``: ``-i delete account
  where Name=A``.
- ``user_add``: ``-i add user Name=U Account=A [limits]``; ``user_modify``: ``-i modify
  user where Name=U Account=A set ...``; ``user_remove``: ``-i delete user where Name=U
  Account=A``.

A removed limit is ``-1`` (a TRES ``cpu=-1``), a QoS list back to the inherited one is
``QOS=`` and no default QoS ``DefaultQOS=-1``; fairshare is a count or ``parent``.

Output (recorded per release in ``tests/fixtures/slurm/<release>/actions/
sacctmgr_acct_*.txt``, ``record-account-actions.sh``; checked by
``sacctmgr_output.check_done``). A refusal is told three ways: "Problem adding ...:
Access/permission denied" or "Your user doesn't have privilege ..." on stderr (the
executor raises ``SlurmPermissionDenied``), and, when a coordinator modifies or
deletes an association of an account they do not coordinate, slurmdbd silently
matches nothing: "Nothing modified" (stderr: "... or your user doesn't have
privilege ...") or "Nothing deleted".
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpcportal.errors import SlurmOutputUnreadable
from hpcportal.slurm.admin_actions import AdminCommand
from hpcportal.slurm.admin_qos import check_qos_name, tres_count, tres_map
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.parse.tables import parse_table
from hpcportal.slurm.parse.values import time_minutes

#: An account name as sacctmgr keeps it (it lower-cases what it is given).
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: A Unix user name (POSIX portable, as useradd takes them).
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: Description and organisation: one line of plain words (never ``=`` or quotes).
_TEXT = re.compile(r"^[A-Za-z0-9 _.,@/()-]{1,100}$")
_MAX_COUNT = 2**31 - 2
_MAX_SHARES = 2**31 - 2
Count = Annotated[int, Field(ge=0, le=_MAX_COUNT)]
Shares = Annotated[int, Field(ge=0, le=_MAX_SHARES)]

#: The columns ``read_associations`` asks for, and the header sacctmgr prints for each.
ASSOC_FIELDS = (
    ("account", "Account"),
    ("user", "User"),
    ("parentname", "ParentName"),
    ("fairshare", "Share"),
    ("grptres", "GrpTRES"),
    ("grpjobs", "GrpJobs"),
    ("grpsubmitjobs", "GrpSubmit"),
    ("maxjobs", "MaxJobs"),
    ("maxsubmitjobs", "MaxSubmit"),
    ("maxwall", "MaxWall"),
    ("maxtres", "MaxTRES"),
    ("qos", "QOS"),
    ("defaultqos", "Def QOS"),
)
ACCOUNT_FIELDS = (
    ("account", "Account"),
    ("descr", "Descr"),
    ("org", "Org"),
    ("coordinators", "Coord Accounts"),
)
USER_COORD_FIELDS = (
    ("user", "User"),
    ("defaultaccount", "Def Acct"),
    ("adminlevel", "Admin"),
    ("coordinators", "Coord Accounts"),
)
#: Each limit field of ``AssocLimits`` -> the key sacctmgr takes for it.
SET_KEYS = {
    "fairshare": "Fairshare",
    "grp_tres": "GrpTRES",
    "grp_jobs": "GrpJobs",
    "grp_submit_jobs": "GrpSubmitJobs",
    "max_jobs": "MaxJobs",
    "max_submit_jobs": "MaxSubmitJobs",
    "max_wall_minutes": "MaxWall",
    "max_tres_per_job": "MaxTRES",
    "qos": "QOS",
    "default_qos": "DefaultQOS",
}
_TRES_FIELDS = ("grp_tres", "max_tres_per_job")


def check_account_name(name: str) -> str:
    """An account name, lower case, or ``ValueError`` (never an option or a clause)."""
    value = name.strip().lower()
    if not ACCOUNT_NAME.fullmatch(value):
        raise ValueError(
            f"{name!r} is not an account name: 1-64 of a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return value


def check_user_name(name: str) -> str:
    """A Unix user name, or ``ValueError``."""
    value = name.strip()
    if not USER_NAME.fullmatch(value):
        raise ValueError(f"{name!r} is not a user name")
    return value


def check_text(what: str, text: str) -> str:
    value = text.strip()
    if not _TEXT.fullmatch(value):
        raise ValueError(
            f"{what}: 1-100 letters, digits, spaces and _ . , @ / ( ) - (no = or quotes)"
        )
    return value


class AssocLimits(BaseModel):
    """An association's fairshare, limits and QoS. A None limit is "no limit of its
    own"; an empty QoS list is "the parent's"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fairshare: Shares | Literal["parent"] = 1
    grp_tres: dict[str, int] = {}
    grp_jobs: Count | None = None
    grp_submit_jobs: Count | None = None
    max_jobs: Count | None = None
    max_submit_jobs: Count | None = None
    max_wall_minutes: Count | None = None
    max_tres_per_job: dict[str, int] = {}
    qos: tuple[str, ...] = ()
    default_qos: str | None = None

    @field_validator("fairshare", mode="before")
    @classmethod
    def _fairshare(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            return "parent" if text == "parent" else int(text) if text.isdigit() else value
        return value

    @field_validator(*_TRES_FIELDS, mode="before")
    @classmethod
    def _tres(cls, value: Any) -> dict[str, int]:
        return tres_map(value)

    @field_validator("qos", mode="before")
    @classmethod
    def _qos(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        return tuple(sorted({check_qos_name(str(v)) for v in items if str(v).strip()}))

    @field_validator("default_qos", mode="before")
    @classmethod
    def _default_qos(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return check_qos_name(str(value))


class Association(BaseModel):
    """One association: an account's own (``user`` None, with its ``parent``) or a
    user's in an account."""

    model_config = ConfigDict(frozen=True)

    account: str
    user: str | None = None
    parent: str | None = None
    limits: AssocLimits = AssocLimits()


class AccountInfo(BaseModel):
    """An account's own values (``show account``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    organization: str
    coordinators: tuple[str, ...] = ()


def _tres_text(tres: dict[str, int]) -> str:
    return ",".join(f"{k}={v}M" if k == "mem" else f"{k}={v}" for k, v in tres.items())


def _set_value(field: str, value: Any, before: Any = None) -> str:
    """The ``Key=value`` that sets ``field`` to ``value`` (clearing what ``before`` had)."""
    key = SET_KEYS[field]
    if field in _TRES_FIELDS:
        cleared = [f"{k}=-1" for k in sorted(before or {}) if k not in value]
        items = ([_tres_text(value)] if value else []) + cleared
        return f"{key}={','.join(items) if items else '-1'}"
    if field == "qos":
        return f"{key}={','.join(value)}"
    if value is None:
        return f"{key}=-1"
    return f"{key}={value}"


def changed_fields(before: AssocLimits, after: AssocLimits) -> list[str]:
    """The limit fields whose values differ, in ``SET_KEYS`` order."""
    return [f for f in SET_KEYS if getattr(before, f) != getattr(after, f)]


def _limit_args(limits: AssocLimits) -> list[str]:
    """Every limit not at its default, for an ``add``."""
    default = AssocLimits()
    return [_set_value(f, getattr(limits, f)) for f in changed_fields(default, limits)]


def _set_args(before: AssocLimits, after: AssocLimits) -> list[str]:
    return [
        _set_value(f, getattr(after, f), getattr(before, f)) for f in changed_fields(before, after)
    ]


def account_create(
    name: str, parent: str, description: str, organization: str, limits: AssocLimits
) -> AdminCommand:
    """``sacctmgr -i add account Name=A Parent=P Description=D Organization=O [limits]``."""
    args = (
        "-i",
        "add",
        "account",
        f"Name={check_account_name(name)}",
        f"Parent={check_account_name(parent)}",
        f"Description={check_text('description', description)}",
        f"Organization={check_text('organization', organization).lower()}",
        *_limit_args(limits),
    )
    return AdminCommand("sacctmgr", args)


def account_modify(
    name: str,
    before: tuple[AccountInfo, Association],
    after: tuple[AccountInfo, Association],
) -> tuple[AdminCommand, ...]:
    """The commands that take account ``name`` from ``before`` to ``after`` (its
    description, organisation, limits; a new parent is a command of its own)."""
    where = ("-i", "modify", "account", "where", f"Name={check_account_name(name)}")
    (info0, assoc0), (info1, assoc1) = before, after
    sets = []
    if info1.description != info0.description:
        sets.append(f"Description={check_text('description', info1.description)}")
    if info1.organization != info0.organization:
        sets.append(f"Organization={check_text('organization', info1.organization).lower()}")
    sets += _set_args(assoc0.limits, assoc1.limits)
    commands = [AdminCommand("sacctmgr", (*where, "set", *sets))] if sets else []
    if assoc1.parent != assoc0.parent and assoc1.parent is not None:
        parent = f"Parent={check_account_name(assoc1.parent)}"
        commands.append(AdminCommand("sacctmgr", (*where, "set", parent)))
    return tuple(commands)


def account_delete(name: str) -> AdminCommand:
    """``sacctmgr -i delete account where Name=A``."""
    return AdminCommand(
        "sacctmgr", ("-i", "delete", "account", "where", f"Name={check_account_name(name)}")
    )


def user_add(user: str, account: str, limits: AssocLimits) -> AdminCommand:
    """``sacctmgr -i add user Name=U Account=A [limits]``."""
    args = (
        "-i",
        "add",
        "user",
        f"Name={check_user_name(user)}",
        f"Account={check_account_name(account)}",
        *_limit_args(limits),
    )
    return AdminCommand("sacctmgr", args)


def user_modify(
    user: str, account: str, before: AssocLimits, after: AssocLimits
) -> AdminCommand | None:
    """``sacctmgr -i modify user where Name=U Account=A set ...``; None if nothing changes."""
    sets = _set_args(before, after)
    if not sets:
        return None
    where = (
        "-i",
        "modify",
        "user",
        "where",
        f"Name={check_user_name(user)}",
        f"Account={check_account_name(account)}",
    )
    return AdminCommand("sacctmgr", (*where, "set", *sets))


def user_remove(user: str, account: str) -> AdminCommand:
    """``sacctmgr -i delete user where Name=U Account=A`` (that association only)."""
    return AdminCommand(
        "sacctmgr",
        (
            "-i",
            "delete",
            "user",
            "where",
            f"Name={check_user_name(user)}",
            f"Account={check_account_name(account)}",
        ),
    )


# --- reading ---------------------------------------------------------------------------


def _printed_tres(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in (i for i in text.split(",") if i):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"TRES {item!r}")
        out[name] = tres_count(name, value)
    return out


def _check_header(stdout: str, fields: tuple[tuple[str, str], ...], what: str) -> None:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = lines[0].split("|") if lines else []
    if header != [h for _, h in fields]:
        raise _unreadable(what, stdout)


def parse_assoc_table(stdout: str) -> list[Association]:
    """``show assoc format=<ASSOC_FIELDS>``'s table (header first) as ``Association``s."""
    _check_header(stdout, ASSOC_FIELDS, "an association table")
    return [_row_assoc(row, stdout) for row in parse_table(stdout.encode())]


def _row_assoc(row: dict[str, str], stdout: str) -> Association:
    def count(column: str) -> int | None:
        return int(row[column]) if row[column] else None

    try:
        limits = AssocLimits(
            fairshare=row["Share"],
            grp_tres=_printed_tres(row["GrpTRES"]),
            grp_jobs=count("GrpJobs"),
            grp_submit_jobs=count("GrpSubmit"),
            max_jobs=count("MaxJobs"),
            max_submit_jobs=count("MaxSubmit"),
            max_wall_minutes=time_minutes(row["MaxWall"]),
            max_tres_per_job=_printed_tres(row["MaxTRES"]),
            qos=row["QOS"],
            default_qos=row["Def QOS"],
        )
        user = row["User"] or None
        parent = row["ParentName"] or None
        account = check_account_name(row["Account"])
        if account != row["Account"]:
            raise ValueError(f"account {row['Account']!r}")
        if user is None and parent is None and account != "root":
            raise ValueError(f"account {account} names no parent")
        if user is not None and parent is not None:
            raise ValueError(f"user {user}'s association names a parent")
        return Association(account=row["Account"], user=user, parent=parent, limits=limits)
    except (KeyError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise _unreadable(f"an association row ({exc})", stdout) from exc


def parse_account_table(stdout: str) -> list[AccountInfo]:
    """``show account withcoord format=<ACCOUNT_FIELDS>``'s table as ``AccountInfo``s."""
    _check_header(stdout, ACCOUNT_FIELDS, "an account table")
    try:
        return [
            AccountInfo(
                name=check_account_name(row["Account"]),
                description=row["Descr"],
                organization=row["Org"],
                coordinators=tuple(sorted(c for c in row["Coord Accounts"].split(",") if c)),
            )
            for row in parse_table(stdout.encode())
        ]
    except (KeyError, ValueError) as exc:
        raise _unreadable(f"an account row ({exc})", stdout) from exc


class SlurmRoles(BaseModel):
    """What Slurm lets a user administer: their ``AdminLevel`` (``None``,
    ``Operator``, ``Administrator``) and the accounts they coordinate."""

    model_config = ConfigDict(frozen=True)

    admin_level: str = "None"
    coordinates: tuple[str, ...] = ()

    @property
    def slurm_admin(self) -> bool:
        return self.admin_level in ("Operator", "Administrator")


def parse_user_coord_table(stdout: str) -> dict[str, SlurmRoles]:
    """``show user withcoord format=<USER_COORD_FIELDS>``: user -> their roles."""
    _check_header(stdout, USER_COORD_FIELDS, "a user table")
    try:
        return {
            row["User"]: SlurmRoles(
                admin_level=row["Admin"],
                coordinates=tuple(sorted(a for a in row["Coord Accounts"].split(",") if a)),
            )
            for row in parse_table(stdout.encode())
        }
    except KeyError as exc:
        raise _unreadable(f"a user row ({exc})", stdout) from exc


def assoc_args(account: str | None = None) -> list[str]:
    fields = ",".join(f for f, _ in ASSOC_FIELDS)
    where = ["where", f"Account={check_account_name(account)}"] if account else []
    return ["--parsable2", "show", "assoc", *where, f"format={fields}"]


def read_associations(executor: SlurmExecutor, account: str | None = None) -> list[Association]:
    """Every association (or those of ``account``), as slurmdbd has them now."""
    done = executor.run("sacctmgr", assoc_args(account))
    rows = parse_assoc_table(done.stdout.decode("utf-8", "replace"))
    return [a for a in rows if account is None or a.account == account]


def read_accounts(executor: SlurmExecutor) -> list[AccountInfo]:
    """Every account's description, organisation and coordinators."""
    fields = ",".join(f for f, _ in ACCOUNT_FIELDS)
    done = executor.run(
        "sacctmgr", ["--parsable2", "show", "account", "withcoord", f"format={fields}"]
    )
    return parse_account_table(done.stdout.decode("utf-8", "replace"))


def read_roles(executor: SlurmExecutor, user: str) -> SlurmRoles:
    """``user``'s AdminLevel and the accounts they coordinate (none for a user
    slurmdbd does not know)."""
    fields = ",".join(f for f, _ in USER_COORD_FIELDS)
    args = ["--parsable2", "show", "user", "withcoord", "where", f"Name={check_user_name(user)}"]
    done = executor.run("sacctmgr", [*args, f"format={fields}"])
    return parse_user_coord_table(done.stdout.decode("utf-8", "replace")).get(user, SlurmRoles())


def _unreadable(what: str, text: str) -> SlurmOutputUnreadable:
    shown = text.strip()[:200] or "nothing"
    return SlurmOutputUnreadable(f"sacctmgr printed {what} the portal cannot read: {shown!r}")
