"""The documented Slurm adapter: every question the portal asks Slurm, as typed answers.

Like ``ood_core``'s Slurm adapter, it has one private executor and knows which
command answers which question. Before its first JSON question it asks which Slurm
release runs and picks the JSON format to ask for (``formats``); every JSON command
then names that format (``--json=vX`` from 23.11) and its output is decoded by that
format's strict structs. Output that does not fit is ``SlurmOutputUnreadable``, and
the next question asks for the release again (Slurm may have been upgraded).

The three snapshot reads (``jobs``, ``nodes``, ``partitions``) always run fresh: the
snapshot service calls them once per refresh.
Accounting reads (``sacct``, ``sacctmgr``, ``sshare``) are asked per request, so
identical questions within ``cache_seconds`` share one answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from hpcportal.config import Settings
from hpcportal.errors import SlurmError, SlurmNotFound, SlurmOutputUnreadable
from hpcportal.slurm import formats, parse, recorded, sdiag
from hpcportal.slurm.actions import SlurmActions
from hpcportal.slurm.admin_actions import SlurmAdmin
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.models import (
    QOS,
    AccountingRecord,
    Association,
    FairshareEntry,
    Job,
    Node,
    NodeEvent,
    Partition,
    PrivateData,
    RecordedSubmission,
    SlurmRoles,
)

T = TypeVar("T")

_SACCT_TIME = "%Y-%m-%dT%H:%M:%S"
#: Job states that are final: the job will not run again (REQUEUED and the pending or
#: running states are not; a requeued job is read again when its last run ends).
ENDED_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)
#: Clocks of the portal and slurmctld may differ by this much.
_CLOCK_SKEW = timedelta(minutes=1)


def job_matches(job: Job, ids: set[str]) -> bool:
    """Whether ``job`` is one named in ``ids``: by its own id (``123``, ``123_4``) or,
    for an array task, by its array's id (``squeue --jobs 123`` lists every task)."""
    if job.id in ids or str(job.job_id) in ids:
        return True
    return job.array is not None and str(job.array.job_id) in ids


@dataclass(frozen=True, slots=True)
class CommentMatch:
    """What Slurm says about a job carrying a comment (``job_with_comment``).

    ``job_id`` is the job that carries it. ``unsure`` lists jobs of the user that only
    the accounting database still knows and whose comment it did not store
    (``AccountingStoreFlags`` without ``job_comment``): any of them could be the job.
    """

    job_id: int | None
    unsure: tuple[int, ...] = ()


class TTLCache:
    """A small thread-safe cache of recent answers, bounded in size."""

    def __init__(self, seconds: float, max_entries: int = 256) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[object, ...], tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def get_or_compute(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and now - hit[0] < self.seconds:
                return hit[1]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value


class SlurmAdapter:
    """Typed reads of the cluster. Thread-safe; blocking (call from a worker thread)."""

    def __init__(
        self,
        executor: SlurmExecutor,
        *,
        cache_seconds: float = 15.0,
        cluster: SlurmCluster | None = None,
    ) -> None:
        """``cluster`` defaults to the executor's; one whose release and format are
        already known (a test's) is used as it is, without asking Slurm."""
        self.executor = executor
        #: The typed actions (submit, control, time limit, efficiency) on this cluster.
        self.actions = SlurmActions(executor, cluster or executor.cluster)
        #: Administrators' changes (nodes, QoS, ...), run as the administrator.
        self.admin = SlurmAdmin(executor, cluster or executor.cluster)
        self.cache = TTLCache(cache_seconds)
        self._job_parser = parse.JobParser()
        self._job_parser_lock = threading.Lock()
        self._cluster = cluster or executor.cluster
        self._cluster_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SlurmAdapter:
        """The adapter of the configured cluster, with its own executor: how code above
        ``slurm/`` (``hpcportal check``) gets one without building the executor."""
        return cls(
            SlurmExecutor.from_settings(settings),
            cache_seconds=settings.accounting_cache_seconds,
        )

    # --- which Slurm, which JSON ----------------------------------------------------

    def cluster(self) -> SlurmCluster:
        """The cluster with its release and JSON format, asked of Slurm once.

        ``scontrol version`` gives the release; from 23.11 ``scontrol --json=list``
        gives the formats it offers. Raises ``SlurmUnsupported`` for a release or
        formats the portal does not read (``/ready`` and ``hpcportal version`` show it).
        """
        with self._cluster_lock:
            if self._cluster.release is None or self._cluster.data_format is None:
                out = self.executor.run("scontrol", ["version"]).stdout.decode("utf-8", "replace")
                release = formats.SlurmRelease.parse(out)
                offered: list[str] = []
                if formats.implicit_format(release) is None and release >= formats.OLDEST:
                    listed = self.executor.run("scontrol", ["--json=list"])
                    text = listed.stdout.decode("utf-8", "replace") + "\n" + listed.stderr
                    offered = formats.offered_formats(text)
                chosen = formats.choose_format(release, offered)
                self._cluster = self._cluster.detected(release, chosen)
            return self._cluster

    def _forget_format(self, seen: SlurmCluster) -> None:
        with self._cluster_lock:
            if self._cluster == seen:
                self._cluster = seen.undetected()

    def _read_json(
        self,
        command: str,
        before: list[str],
        after: list[str],
        parser: Callable[[bytes, str | None], T],
        *,
        as_user: str | None = None,
    ) -> T:
        """Run ``command BEFORE --json[=vX] AFTER`` and decode it strictly in that format."""
        cluster = self.cluster()
        argv = [*before, cluster.json_flag, *after]
        raw = self.executor.run(command, argv, as_user=as_user).stdout
        try:
            return parser(raw, cluster.data_format)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._forget_format(cluster)
            raise SlurmOutputUnreadable(
                f"{command} of {cluster.describe()} printed JSON the portal cannot read: {exc}"
            ) from exc

    # --- snapshot reads: one command each ---------------------------------------

    def _read(
        self,
        command: str,
        args: list[str],
        parser: Callable[[bytes], T],
        *,
        as_user: str | None = None,
    ) -> T:
        """Run one command and parse it; output we cannot read is Slurm's error, not ours."""
        raw = self.executor.run(command, args, as_user=as_user).stdout
        try:
            return parser(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, KeyError) as exc:
            raise SlurmError(f"Could not read the output of {command}: {exc}") from exc

    def jobs(self) -> list[Job]:
        """Every job slurmctld knows, all partitions (``squeue --json --all``).

        Unchanged jobs keep their model from the previous call (see ``JobParser``).
        """
        with self._job_parser_lock:
            return self._read_json("squeue", [], self._all_jobs(), self._job_parser.parse)

    def _all_jobs(self) -> list[str]:
        """``--all``; from 23.02 also ``--states=all``: 22.05 listed finished jobs
        (until ``MinJobAge``) by default, later releases only when asked."""
        cluster = self.cluster()
        return ["--all", "--states=all"] if cluster.nodes_from_scontrol else ["--all"]

    def nodes(self) -> list[Node]:
        """``sinfo --json --all`` on 22.05; ``scontrol --all --json show nodes`` from
        23.02, where ``sinfo --json`` groups nodes instead of listing them."""
        if self.cluster().nodes_from_scontrol:
            return self._read_json("scontrol", ["--all"], ["show", "nodes"], parse.parse_nodes)
        return self._read_json("sinfo", [], ["--all"], parse.parse_nodes)

    def partitions(self) -> list[Partition]:
        """``scontrol`` has no JSON in Slurm 22.05; its one-line records are parsed by key."""
        args = ["--all", "--oneliner", "show", "partition"]
        return self._read("scontrol", args, parse.parse_partitions)

    def job(self, job_id: str) -> Job | None:
        """One job straight from slurmctld: for a job submitted since the last snapshot."""
        try:
            args = [*self._all_jobs(), "--jobs", job_id]
            jobs = self._read_json("squeue", [], args, parse.parse_squeue)
        except SlurmNotFound:
            return None
        return next((j for j in jobs if j.id == job_id or str(j.job_id) == job_id), None)

    def jobs_named(self, job_ids: Sequence[str]) -> list[Job]:
        """The named jobs (and array tasks) in one ``squeue --jobs a,b,...``: what a
        refresh after the portal's own action asks. 22.05's ``squeue --json`` ignores
        ``--jobs`` and lists every job, so the answer is filtered here as well; ids
        slurmctld does not know are simply absent."""
        wanted = set(job_ids)
        if not wanted:
            return []
        try:
            args = [*self._all_jobs(), "--jobs", ",".join(sorted(wanted))]
            jobs = self._read_json("squeue", [], args, parse.parse_squeue)
        except SlurmNotFound:
            return []
        return [j for j in jobs if job_matches(j, wanted)]

    def job_with_comment(self, username: str, comment: str, *, since: datetime) -> CommentMatch:
        """``username``'s job whose comment is ``comment``, submitted after ``since``.

        Asked as ``username`` (so ``PrivateData`` cannot hide their own jobs), never
        cached: slurmctld's jobs first (pending, running, and finished ones younger
        than ``MinJobAge``), then the accounting database for older ones. Accounting
        keeps comments only with ``AccountingStoreFlags=job_comment``; without it,
        the user's jobs submitted since ``since`` that only accounting still lists come
        back as ``unsure``. Any failure to ask is raised: "no job" is only ever
        Slurm's answer.
        """
        args = [*self._all_jobs(), "--user", username]
        queued = self._read_json("squeue", [], args, parse.parse_squeue, as_user=username)
        listed = set()
        for job in queued:
            if job.private is not None and job.private.comment == comment:
                return CommentMatch(job.job_id)
            listed.add(job.job_id)
        start = (since.astimezone(UTC) - _CLOCK_SKEW).replace(tzinfo=None)
        args = ["-X", "--user", username, "-S", start.strftime(_SACCT_TIME), "-E", "now"]
        records = self._read_json("sacct", [], args, parse.parse_sacct, as_user=username)
        for record in records:
            if record.comment == comment:
                return CommentMatch(record.job_id)
        if self.stores_job_comments():
            return CommentMatch(None)
        unsure = [
            r.job_id
            for r in records
            if r.job_id not in listed
            and (r.submit_time is None or r.submit_time.replace(tzinfo=None) >= start)
        ]
        return CommentMatch(None, tuple(unsure))

    def stores_job_comments(self) -> bool:
        """Does the accounting database keep job comments (``scontrol show config``)?"""

        def ask() -> bool:
            out = self.executor.run("scontrol", ["show", "config"]).stdout.decode()
            for line in out.splitlines():
                name, _, value = line.partition("=")
                if name.strip() == "AccountingStoreFlags":
                    return "job_comment" in value.lower()
            return False

        return self.cache.get_or_compute(("store-flags",), ask)

    # --- scheduler health ----------------------------------------------------------

    def scheduler_stats(self) -> sdiag.SchedulerStats:
        """slurmctld's scheduler statistics, as the portal's own user, uncached (the
        leader's sampler asks every ``sdiag_sample_seconds``): ``sdiag`` (text) before
        23.11, ``sdiag --json=vX`` from then on. ``PrivateData=usage`` refuses it to a
        user who is not an operator (403)."""
        cluster = self.cluster()
        release = cluster.release
        if release is not None and release >= formats.EXPLICIT_FROM:
            raw = self.executor.run("sdiag", [cluster.json_flag]).stdout
            try:
                return sdiag.parse_json(raw, cluster.data_format)
            except (msgspec.ValidationError, msgspec.DecodeError, sdiag.Unreadable) as exc:
                raise SlurmOutputUnreadable(
                    f"sdiag of {cluster.describe()} printed JSON the portal cannot read: {exc}"
                ) from exc
        raw = self.executor.run("sdiag", []).stdout
        try:
            return sdiag.parse_text(raw)
        except sdiag.Unreadable as exc:
            raise SlurmOutputUnreadable(
                f"sdiag of {cluster.describe()} printed text the portal cannot read: {exc}"
            ) from exc

    # --- privacy: PrivateData and who Slurm privileges ------------------------------

    def controller_private_data(self) -> PrivateData:
        """slurmctld's ``PrivateData`` as it runs now (``scontrol show config``), uncached:
        the snapshot asks once per refresh, so a ``scontrol reconfigure`` that changes
        it is followed within one interval."""
        return self._read("scontrol", ["show", "config"], parse.parse_controller_private_data)

    def database_private_data(self) -> PrivateData:
        """slurmdbd's ``PrivateData``, which ``sacct`` and ``sacctmgr`` obey (cached)."""
        return self.cache.get_or_compute(
            ("dbd-private-data",),
            lambda: self._read("sacctmgr", ["show", "config"], parse.parse_database_private_data),
        )

    def roles(self) -> SlurmRoles:
        """Every user's AdminLevel and coordinated accounts (cached): what ``PrivateData``
        lets operators, administrators and coordinators see beyond their own."""
        args = ["--parsable2", "show", "user", "withcoord", "format=user,adminlevel,coordinators"]
        return self.cache.get_or_compute(
            ("roles",), lambda: self._read("sacctmgr", args, parse.parse_roles)
        )

    # --- per-request reads, cached briefly ------------------------------------------

    def accounting(
        self,
        start: datetime,
        end: datetime,
        *,
        users: Sequence[str] = (),
        accounts: Sequence[str] = (),
        partitions: Sequence[str] = (),
        states: Sequence[str] = (),
        job_ids: Sequence[str] = (),
    ) -> list[AccountingRecord]:
        """Finished and running jobs from the accounting database (``sacct --json``)."""
        args = ["-X", "-S", start.strftime(_SACCT_TIME), "-E", end.strftime(_SACCT_TIME)]
        args += ["--user", ",".join(users)] if users else ["--allusers"]
        if accounts:
            args += ["--accounts", ",".join(accounts)]
        if partitions:
            args += ["--partition", ",".join(partitions)]
        if states:
            args += ["--state", ",".join(states)]
        if job_ids:
            args += ["--jobs", ",".join(job_ids)]
        key = ("sacct", *args)
        return self.cache.get_or_compute(
            key, lambda: self._read_json("sacct", [], args, parse.parse_sacct)
        )

    def ended_jobs(self, start: datetime, end: datetime) -> list[AccountingRecord]:
        """Every user's jobs that *ended* in [start, end), uncached (the usage store's
        read). ``sacct -S/-E`` selects jobs active at some time in the window, so running
        jobs and jobs that ended after ``end`` come back too; they are dropped here by
        their end time and state, and read again by the window they end in."""
        args = [
            "-X",
            "--allusers",
            "-S",
            start.strftime(_SACCT_TIME),
            "-E",
            end.strftime(_SACCT_TIME),
        ]
        records = self._read_json("sacct", [], args, parse.parse_sacct)
        return [
            r
            for r in records
            if r.end_time is not None and start <= r.end_time < end and r.state in ENDED_STATES
        ]

    def qos(self) -> list[QOS]:
        fields = "name,priority,maxwall,maxtrespu,maxjobspu,maxsubmitpu,grptres,preempt,flags"
        args = ["--parsable2", "show", "qos", f"format={fields}"]
        return self.cache.get_or_compute(
            ("qos",), lambda: self._read("sacctmgr", args, parse.parse_qos)
        )

    def associations(self) -> list[Association]:
        fields = (
            "cluster,account,user,parentname,share,qos,defaultqos,"
            "maxjobs,maxsubmit,grptres,maxtres,maxwall"
        )
        args = ["--parsable2", "show", "associations", f"format={fields}"]
        return self.cache.get_or_compute(
            ("assoc",), lambda: self._read("sacctmgr", args, parse.parse_associations)
        )

    def node_events(self, start: datetime, end: datetime) -> list[NodeEvent]:
        """The times nodes were down or drained that overlap [start, end), from
        slurmdbd (``sacctmgr show event``): what the system report counts as node
        downtime, drains set outside the portal included. Cached briefly like the
        other accounting reads."""
        args = [
            "--parsable2", "show", "event", "event=node",
            f"start={start.astimezone(UTC).strftime(_SACCT_TIME)}",
            f"end={end.astimezone(UTC).strftime(_SACCT_TIME)}",
            f"format={parse.EVENT_FIELDS}",
        ]  # fmt: skip
        return self.cache.get_or_compute(
            ("events", *args), lambda: self._read("sacctmgr", args, parse.parse_node_events)
        )

    def fairshare(self) -> list[FairshareEntry]:
        args = ["--all", "--long", "--parsable2"]
        return self.cache.get_or_compute(
            ("sshare",), lambda: self._read("sshare", args, parse.parse_sshare)
        )

    def job_script(self, job_id: int, *, as_user: str) -> str:
        """The batch script Slurm stored, read as ``as_user`` so Slurm decides who may."""
        out = self.executor.run(
            "scontrol", ["write", "batch_script", str(job_id), "-"], as_user=as_user
        )
        return out.stdout.decode("utf-8", "replace")

    # --- what accounting recorded of one job, read as the asking user ---------------

    def recorded_script(self, job_id: str, *, as_user: str) -> str | None:
        """The batch script accounting stored (``sacct --batch-script``), or None.

        For jobs slurmctld has forgotten; needs ``AccountingStoreFlags=job_script``.
        Asked as ``as_user``, so slurmdbd decides whose scripts they see (another
        user's prints nothing: None); cached briefly like the other accounting reads.
        """
        return self._recorded("--batch-script", job_id, as_user, recorded.parse_batch_script)

    def recorded_environment(self, job_id: str, *, as_user: str) -> dict[str, str] | None:
        """The environment the job was submitted with (``sacct --env-vars``), or None;
        needs ``AccountingStoreFlags=job_env``."""
        return self._recorded("--env-vars", job_id, as_user, recorded.parse_environment)

    def recorded_submission(self, job_id: str, *, as_user: str) -> RecordedSubmission | None:
        """The submit line and working directory accounting recorded (``sacct -X``)."""
        fields = ",".join(recorded.SUBMISSION_FIELDS)
        args = ["-X", "--parsable2", f"--format={fields}", "--jobs", job_id]
        return self.cache.get_or_compute(
            ("sacct-submission", job_id, as_user),
            lambda: self._read("sacct", args, recorded.parse_submission, as_user=as_user),
        )

    def _recorded(self, flag: str, job_id: str, as_user: str, parser: Callable[[bytes], T]) -> T:
        return self.cache.get_or_compute(
            ("sacct", flag, job_id, as_user),
            lambda: self._read("sacct", [flag, "--jobs", job_id], parser, as_user=as_user),
        )
