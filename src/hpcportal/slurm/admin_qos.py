"""QoS as administrators change it: a typed ``QosSpec``, the one place its
``sacctmgr`` argv is built, the read of one QoS's current values and the strict
reading of what ``sacctmgr -i`` prints.

Every value of a ``QosSpec`` is checked (names, numbers in range, TRES names and
counts, known flags) before it is written into an argument, and every argument is
``Key=value`` after a fixed keyword, so no input becomes an option or a second
clause. A plan shows ``qos_create``/``qos_modify``/``qos_delete``'s ``AdminCommand``
values, and those values are what ``SlurmAdmin.run`` runs.

Values are kept in the form Slurm stores them: TRES counts as integers (memory-like
TRES in MB), wall time in minutes, names lower case. ``sacctmgr show qos`` prints
memory in the largest unit that keeps it exact (it divides by 1024 only while the
count is a multiple of 512: 1536 MB as ``mem=1.50G``, 1280 MB as ``mem=1280M``), so
``read_qos`` turns it back into the same MB. Only ``mem`` is counted in MB; other
TRES (``vmem``, ``fs/disk`` are bytes) take plain counts.

Output (recorded per release in ``tests/fixtures/slurm/<release>/actions/``,
``record-qos-actions.sh``; read by ``sacctmgr_output.check_done``): success is
``Adding QOS(s)`` / ``Modified qos...`` / ``Deleting QOS(s)...`` followed by the QoS
name, exit 0. A refusal exits 1 and the executor raises it typed: "Access/permission
denied" is ``SlurmPermissionDenied`` (403 with Slurm's reason); "Nothing
modified/deleted/new added" and a bad value are ``SlurmInvalidRequest``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpcportal.errors import SlurmOutputUnreadable
from hpcportal.slurm.admin_actions import AdminCommand
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.parse.tables import parse_table
from hpcportal.slurm.parse.values import time_minutes

#: A QoS name as sacctmgr keeps it (it lower-cases what it is given).
QOS_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: ``cpu``, ``mem``, ``node``, ``billing``, ``gres/gpu``, ``gres/gpu:a100``, ``license/x``.
_TRES_NAME = re.compile(r"^[a-z]{1,16}(?:/[A-Za-z0-9_.:-]{1,64})?$")
#: Counts given with a unit: ``8G``, ``512M``, ``1.5T`` (also as sacctmgr prints them).
_SIZE = re.compile(r"^(?P<n>\d{1,15}(?:\.\d{1,6})?)(?P<unit>[KMGTPE]?)$")
_UNIT_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3, "E": 1024**4, "": 1}
#: The TRES Slurm counts in MB (and prints with a unit).
_SIZE_TRES = re.compile(r"^mem$")
#: QoS flags of 22.05 to 26.05 (``Relative`` is 23.02+).
QOS_FLAGS = frozenset(
    {
        "DenyOnLimit",
        "EnforceUsageThreshold",
        "NoDecay",
        "NoReserve",
        "OverPartQOS",
        "PartitionMaxNodes",
        "PartitionMinNodes",
        "PartitionTimeLimit",
        "Relative",
        "RequiresReservation",
        "UsageFactorSafe",
    }
)
PreemptMode = Literal["cluster", "off", "cancel", "requeue", "suspend"]
_MAX_COUNT = 2**31 - 2  # below Slurm's NO_VAL (and INFINITE) of 32 bits
_MAX_TRES = 2**62
Count = Annotated[int, Field(ge=0, le=_MAX_COUNT)]

#: The columns ``read_qos`` asks for, and the header sacctmgr prints for each.
SHOW_FIELDS = (
    ("name", "Name"),
    ("priority", "Priority"),
    ("preempt", "Preempt"),
    ("preemptmode", "PreemptMode"),
    ("flags", "Flags"),
    ("grptres", "GrpTRES"),
    ("grpjobs", "GrpJobs"),
    ("grpsubmit", "GrpSubmit"),
    ("maxtres", "MaxTRES"),
    ("maxtrespu", "MaxTRESPU"),
    ("maxwall", "MaxWall"),
    ("maxjobspu", "MaxJobsPU"),
    ("maxsubmitpu", "MaxSubmitPU"),
    ("maxjobspa", "MaxJobsPA"),
)
#: Each limit field of ``QosSpec`` -> the ``set`` key sacctmgr takes for it.
SET_KEYS = {
    "priority": "Priority",
    "preempt": "Preempt",
    "preempt_mode": "PreemptMode",
    "flags": "Flags",
    "grp_tres": "GrpTRES",
    "grp_jobs": "GrpJobs",
    "grp_submit_jobs": "GrpSubmitJobs",
    "max_tres_per_job": "MaxTRESPerJob",
    "max_tres_per_user": "MaxTRESPerUser",
    "max_wall_minutes": "MaxWall",
    "max_jobs_per_user": "MaxJobsPerUser",
    "max_submit_jobs_per_user": "MaxSubmitJobsPerUser",
    "max_jobs_per_account": "MaxJobsPerAccount",
}
_TRES_FIELDS = ("grp_tres", "max_tres_per_job", "max_tres_per_user")


def check_qos_name(name: str) -> str:
    """A QoS name, lower case, or ``ValueError`` (it is never an option or a clause)."""
    value = name.strip().lower()
    if not QOS_NAME.fullmatch(value):
        raise ValueError(
            f"{name!r} is not a QoS name: 1-64 of a-z 0-9 _ . -, starting with a letter or digit"
        )
    return value


def tres_count(name: str, value: int | str) -> int:
    """One TRES count: an integer, or for ``mem`` a size (``8G``, ``1.5G``) in whole MB."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: give a number")
    if isinstance(value, int):
        count = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{name}={value!r}: give a whole number (memory also as 8G, 512M)")
        if match["unit"] and not _SIZE_TRES.fullmatch(name):
            raise ValueError(f"{name}={value!r}: only mem takes a unit")
        exact = float(match["n"]) * _UNIT_MB[match["unit"]]
        if exact != int(exact):
            raise ValueError(f"{name}={value!r}: give a whole number (of MB for memory)")
        count = int(exact)
    if not 0 <= count <= _MAX_TRES:
        raise ValueError(f"{name}={value!r} is out of range")
    return count


def tres_map(value: Any) -> dict[str, int]:
    """TRES counts from ``cpu=4,mem=8G`` or a mapping, checked and sorted by name."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = dict(item.partition("=")[::2] for item in value.split(",") if item.strip())
    if not isinstance(value, dict):
        raise ValueError("TRES: give name=count pairs (cpu=4,mem=8G)")
    out: dict[str, int] = {}
    for key, count in value.items():
        name = str(key).strip()
        if not _TRES_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a TRES name (cpu, mem, node, gres/gpu, ...)")
        out[name] = tres_count(name, count)
    return dict(sorted(out.items()))


class QosLimits(BaseModel):
    """The values of a QoS the portal manages. A None limit is "no limit"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: Count = 0
    preempt: tuple[str, ...] = ()
    preempt_mode: PreemptMode = "cluster"
    flags: tuple[str, ...] = ()
    grp_tres: dict[str, int] = {}
    grp_jobs: Count | None = None
    grp_submit_jobs: Count | None = None
    max_tres_per_job: dict[str, int] = {}
    max_tres_per_user: dict[str, int] = {}
    max_wall_minutes: Count | None = None
    max_jobs_per_user: Count | None = None
    max_submit_jobs_per_user: Count | None = None
    max_jobs_per_account: Count | None = None

    @field_validator("preempt", mode="before")
    @classmethod
    def _preempt(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        return tuple(sorted({check_qos_name(str(v)) for v in items if str(v).strip()}))

    @field_validator("flags", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        by_lower = {f.lower(): f for f in QOS_FLAGS}
        out = set()
        for item in (str(v).strip() for v in items):
            if item and item.lower() not in by_lower:
                raise ValueError(f"{item!r} is not a QoS flag ({', '.join(sorted(QOS_FLAGS))})")
            if item:
                out.add(by_lower[item.lower()])
        return tuple(sorted(out))

    @field_validator("preempt_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(*_TRES_FIELDS, mode="before")
    @classmethod
    def _tres(cls, value: Any) -> dict[str, int]:
        return tres_map(value)


class QosSpec(QosLimits):
    """A QoS: its name and values."""

    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return check_qos_name(str(value))

    def limits(self) -> QosLimits:
        return QosLimits.model_validate(self.model_dump(exclude={"name"}))


def _tres_text(tres: dict[str, int]) -> str:
    return ",".join(f"{k}={v}M" if _SIZE_TRES.fullmatch(k) else f"{k}={v}" for k, v in tres.items())


def _set_value(field: str, value: Any, before: Any = None) -> str:
    """The ``Key=value`` that sets ``field`` to ``value`` (clearing what ``before`` had)."""
    key = SET_KEYS[field]
    if field in _TRES_FIELDS:
        cleared = {k: -1 for k in sorted(before or {}) if k not in value}
        items = [_tres_text(value)] if value else []
        items += [f"{k}={v}" for k, v in cleared.items()]
        return f"{key}={','.join(items)}"
    if field in ("preempt", "flags"):
        if not value:
            return f"{key}=" if field == "preempt" else f"{key}=-1"
        return f"{key}={','.join(value)}"
    if value is None:
        return f"{key}=-1"
    return f"{key}={value}"


def changed_fields(before: QosLimits, after: QosLimits) -> list[str]:
    """The limit fields whose values differ, in ``SET_KEYS`` order."""
    return [f for f in SET_KEYS if getattr(before, f) != getattr(after, f)]


def qos_create(spec: QosSpec) -> AdminCommand:
    """``sacctmgr -i add qos Name=N [set K=V ...]``: every value not Slurm's default."""
    default = QosLimits()
    sets = [_set_value(f, getattr(spec, f)) for f in changed_fields(default, spec.limits())]
    args = ("-i", "add", "qos", f"Name={spec.name}")
    return AdminCommand("sacctmgr", (*args, "set", *sets) if sets else args)


def qos_modify(name: str, before: QosLimits, after: QosLimits) -> AdminCommand | None:
    """``sacctmgr -i modify qos where Name=N set K=V ...`` for what changes; None when
    nothing does. A removed limit is set to -1 (a TRES: ``cpu=-1``)."""
    fields = changed_fields(before, after)
    if not fields:
        return None
    sets = [_set_value(f, getattr(after, f), getattr(before, f)) for f in fields]
    where = ("-i", "modify", "qos", "where", f"Name={check_qos_name(name)}")
    return AdminCommand("sacctmgr", (*where, "set", *sets))


def qos_delete(name: str) -> AdminCommand:
    """``sacctmgr -i delete qos where Name=N``."""
    return AdminCommand(
        "sacctmgr", ("-i", "delete", "qos", "where", f"Name={check_qos_name(name)}")
    )


def show_qos_args(name: str) -> list[str]:
    """``sacctmgr`` arguments reading one QoS (the columns of ``SHOW_FIELDS``)."""
    fields = ",".join(f for f, _ in SHOW_FIELDS)
    where = f"Name={check_qos_name(name)}"
    return ["--parsable2", "show", "qos", "where", where, f"format={fields}"]


def _printed_tres(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in (i for i in text.split(",") if i):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"TRES {item!r}")
        out[name] = tres_count(name, value)
    return out


def parse_qos_table(stdout: str) -> list[QosSpec]:
    """``show_qos_args``' table (header first) as ``QosSpec`` values."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = lines[0].split("|") if lines else []
    if header != [h for _, h in SHOW_FIELDS]:
        raise _unreadable("a QoS table", stdout)
    return [_row_spec(row, stdout) for row in parse_table(stdout.encode())]


def _row_spec(row: dict[str, str], stdout: str) -> QosSpec:
    def count(column: str) -> int | None:
        return int(row[column]) if row[column] else None

    try:
        return QosSpec(
            name=row["Name"],
            priority=int(row["Priority"] or 0),
            preempt=tuple(p for p in row["Preempt"].split(",") if p),
            preempt_mode=row["PreemptMode"] or "cluster",
            flags=tuple(f for f in row["Flags"].split(",") if f),
            grp_tres=_printed_tres(row["GrpTRES"]),
            grp_jobs=count("GrpJobs"),
            grp_submit_jobs=count("GrpSubmit"),
            max_tres_per_job=_printed_tres(row["MaxTRES"]),
            max_tres_per_user=_printed_tres(row["MaxTRESPU"]),
            max_wall_minutes=time_minutes(row["MaxWall"]),
            max_jobs_per_user=count("MaxJobsPU"),
            max_submit_jobs_per_user=count("MaxSubmitPU"),
            max_jobs_per_account=count("MaxJobsPA"),
        )
    except (KeyError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise _unreadable(f"a QoS row ({exc})", stdout) from exc


def read_qos(executor: SlurmExecutor, name: str) -> QosSpec | None:
    """One QoS's current values (``sacctmgr show qos where Name=N``), as the portal;
    None when there is no such QoS. Never cached: plans and reverts need the truth."""
    wanted = check_qos_name(name)
    done = executor.run("sacctmgr", show_qos_args(wanted))
    rows = parse_qos_table(done.stdout.decode("utf-8", "replace"))
    return next((q for q in rows if q.name == wanted), None)


def read_all_qos(executor: SlurmExecutor) -> list[QosSpec]:
    """Every QoS's values, as the portal (one ``sacctmgr show qos``)."""
    fields = ",".join(f for f, _ in SHOW_FIELDS)
    done = executor.run("sacctmgr", ["--parsable2", "show", "qos", f"format={fields}"])
    return parse_qos_table(done.stdout.decode("utf-8", "replace"))


def _unreadable(what: str, text: str) -> SlurmOutputUnreadable:
    shown = text.strip()[:200] or "nothing"
    return SlurmOutputUnreadable(f"sacctmgr printed {what} the portal cannot read: {shown!r}")
