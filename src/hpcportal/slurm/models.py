"""Typed models of the cluster: what every layer above the Slurm boundary sees.

They are also the API's response schemas, so their field names are the public
contract. Times are UTC datetimes (``None`` when Slurm has none), memory is in MB,
time limits in minutes (``None`` means unlimited or the partition's default).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from hpcportal.slurm.states import JobStatus, NodeStatus


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobArray(_Model):
    """Array membership: a task (``task_id`` set) or the record of still-pending tasks."""

    job_id: int
    task_id: int | None = None
    pending_tasks: str | None = None
    max_running: int | None = None


class JobPrivate(_Model):
    """Fields only the job's owner and admins may see."""

    work_dir: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdin: str | None = None
    command: str | None = None
    comment: str | None = None


class _JobCore(_Model):
    """What a job in the queue and a job in accounting both say about who ran what
    where and in which state; the fields that follow it are each one's own."""

    id: str
    job_id: int
    array: JobArray | None = None
    name: str
    user: str
    group: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    state: str
    status: JobStatus
    reason: str | None = None


class Job(_JobCore):
    #: A queued job always has one; accounting may not.
    partition: str
    priority: int | None = None
    nodes: str | None = None
    #: ``nodes`` expanded (``rack[1-2]-n1`` -> ``rack1-n1``, ``rack2-n1``), in Slurm's order.
    node_names: list[str] = []
    node_count: int = 0
    cpus: int = 0
    tasks: int = 0
    memory_mb: int | None = None
    gpus: int = 0
    tres_requested: dict[str, str] = {}
    tres_allocated: dict[str, str] = {}
    time_limit_minutes: int | None = None
    submit_time: datetime | None = None
    eligible_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    dependency: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    batch_host: str | None = None
    private: JobPrivate | None = None

    @property
    def array_parent(self) -> int | None:
        return self.array.job_id if self.array else None


class Node(_Model):
    name: str
    hostname: str | None = None
    #: Where the node is reached (NodeAddr): the interactive-session proxy connects here.
    address: str | None = None
    state: str
    flags: list[str] = []
    status: NodeStatus
    partitions: list[str] = []
    cpus_total: int = 0
    cpus_allocated: int = 0
    cpus_idle: int = 0
    cpu_load: float | None = None
    memory_total_mb: int = 0
    memory_allocated_mb: int = 0
    memory_free_mb: int | None = None
    gpus_total: int = 0
    gpus_allocated: int = 0
    gres: str | None = None
    gres_used: str | None = None
    features: list[str] = []
    reason: str | None = None
    reason_set_by: str | None = None
    reason_time: datetime | None = None
    boot_time: datetime | None = None
    last_busy: datetime | None = None
    slurmd_version: str | None = None
    architecture: str | None = None
    operating_system: str | None = None


class Partition(_Model):
    name: str
    state: str
    is_default: bool = False
    nodes: str | None = None
    node_names: list[str] = []
    total_nodes: int = 0
    total_cpus: int = 0
    max_time_minutes: int | None = None
    default_time_minutes: int | None = None
    max_nodes: int | None = None
    max_mem_per_node_mb: int | None = None
    default_mem_per_cpu_mb: int | None = None
    allow_accounts: list[str] | None = None
    allow_groups: list[str] | None = None
    allow_qos: list[str] | None = None
    qos: str | None = None
    tres: dict[str, str] = {}
    hidden: bool = False


class QOS(_Model):
    name: str
    priority: int = 0
    max_wall_minutes: int | None = None
    max_tres_per_user: dict[str, str] = {}
    max_jobs_per_user: int | None = None
    max_submit_per_user: int | None = None
    grp_tres: dict[str, str] = {}
    preempt: list[str] = []
    flags: list[str] = []


class Association(_Model):
    cluster: str
    account: str
    user: str | None = None
    parent: str | None = None
    share: str | None = None
    qos: list[str] = []
    default_qos: str | None = None
    max_jobs: int | None = None
    max_submit: int | None = None
    grp_tres: dict[str, str] = {}
    max_tres: dict[str, str] = {}
    max_wall_minutes: int | None = None


class FairshareEntry(_Model):
    account: str
    user: str | None = None
    raw_shares: int | None = None
    norm_shares: float | None = None
    raw_usage: int | None = None
    norm_usage: float | None = None
    effective_usage: float | None = None
    fairshare: float | None = None
    level_fs: float | None = None


class AccountingRecord(_JobCore):
    exit_code: int | None = None
    signal: int | None = None
    nodes: str | None = None
    node_names: list[str] = []
    node_count: int = 0
    cpus_requested: int = 0
    memory_requested_mb: int | None = None
    tres_allocated: dict[str, int] = {}
    time_limit_minutes: int | None = None
    submit_time: datetime | None = None
    eligible_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    elapsed_seconds: int = 0
    cpu_time_seconds: float | None = None
    work_dir: str | None = None
    comment: str | None = None


class RecordedSubmission(_Model):
    """How a job was submitted, as accounting recorded it (``sacct -X``): the command
    line (``sbatch -o out.txt job.sh``; its options override the script's ``#SBATCH``
    lines) and the working directory relative paths start from."""

    job_id: int
    work_dir: str | None = None
    submit_line: str | None = None


#: Every ``PrivateData`` value Slurm knows (``man slurm.conf``, ``man slurmdbd.conf``).
PRIVATE_DATA_FLAGS = frozenset(
    {"accounts", "cloud", "events", "jobs", "nodes", "partitions", "reservations", "usage", "users"}
)
#: AdminLevels at or above Operator: Slurm shows them everything ``PrivateData`` hides.
PRIVILEGED_LEVELS = frozenset({"Operator", "Administrator"})


class PrivateData(_Model):
    """One daemon's ``PrivateData`` and its ``SlurmUser`` (who, like root, sees all).

    slurmctld's (``scontrol show config``) governs what ``squeue``, ``sinfo``,
    ``scontrol`` and ``sshare`` show; slurmdbd's (the "SlurmDBD configuration" part of
    ``sacctmgr show config``) governs ``sacct`` and ``sacctmgr``. ``cloud`` is in
    ``flags`` when set, but it shows cloud nodes to everyone rather than hiding anything.
    """

    flags: frozenset[str] = frozenset()
    slurm_user: str = "root"
    #: The daemon's release (``SLURM_VERSION`` / ``SLURMDBD_VERSION``, e.g. "24.11.5"):
    #: some rules changed between releases; empty when it did not say.
    version: str = ""

    def release(self) -> tuple[int, int] | None:
        """``(24, 11)`` of "24.11.5"; None if unknown."""
        major, _, rest = self.version.partition(".")
        minor = rest.partition(".")[0]
        return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


class SlurmRoles(_Model):
    """Slurm's own privileges (``sacctmgr show user withcoord``): each user's AdminLevel
    (only those above None) and the accounts each coordinator coordinates."""

    admin_levels: dict[str, str] = {}
    coordinators: dict[str, frozenset[str]] = {}

    def is_operator(self, user: str) -> bool:
        return self.admin_levels.get(user) in PRIVILEGED_LEVELS

    def coordinates(self, user: str) -> frozenset[str]:
        return self.coordinators.get(user, frozenset())


class NodeEvent(_Model):
    """A time a node was down or drained, as slurmdbd recorded it (``sacctmgr show
    event``): from ``start`` until ``end`` (None while it still is). ``state`` is
    Slurm's word (DOWN, DRAIN, FAIL, ...), ``drained`` whether it was a drain (the
    node finished its jobs but took no new ones) rather than down; ``user`` who set it
    (None when slurmctld did, e.g. a node that stopped responding)."""

    node: str
    start: datetime
    end: datetime | None
    state: str
    drained: bool
    reason: str | None = None
    user: str | None = None
