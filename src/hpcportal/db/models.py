"""Tables. Each one exists because several replicas must agree on its contents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hpcportal.db.base import Base, UtcDateTime

#: Longest ``jti`` we store; ours are 22 characters, the margin is for future formats.
JTI_MAX_LENGTH = 64
#: POSIX user names are at most 32 characters (see ``services.auth.USERNAME_RE``).
USERNAME_MAX_LENGTH = 32
#: Enough for any IPv6 literal with zone id, or a host name from a proxy.
ADDRESS_MAX_LENGTH = 255


class RevokedToken(Base):
    """A logged-out token, kept until it would have expired anyway.

    The primary key on ``jti`` makes the per-request check a single index lookup;
    the index on ``expires_at`` makes pruning cheap.
    """

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(JTI_MAX_LENGTH), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class LoginFailure(Base):
    """One failed login, counted both per user name and per client address.

    A row per failure (rather than a counter) gives a true sliding window and lets
    replicas insert concurrently without read-modify-write races.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_failed_at", "username", "failed_at"),
        Index("ix_login_failures_address_failed_at", "address", "failed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX_LENGTH))
    failed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Submission(Base):
    """One job submission, keyed by the client's ``Idempotency-Key`` when it sent one.

    The row is written *before* sbatch runs (state ``submitting``) and completed with
    the job id after, so a retried request finds either the finished submission or
    an interrupted one to reconcile against Slurm (the job carries the key in its
    comment) instead of submitting a second job. ``unknown`` means sbatch's outcome
    was uncertain (a timeout, a lost connection): a retry asks Slurm first.
    ``created_at`` is when the key was first claimed; ``finished_at`` when the row
    last changed state (see ``services.submit``).
    """

    __tablename__ = "submissions"
    __table_args__ = (
        Index(
            "uq_submissions_username_idempotency_key", "username", "idempotency_key", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # submitting | submitted | unknown
    job_id: Mapped[int | None] = mapped_column(Integer)
    template_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: With several replicas: the replica running the current attempt (its heartbeat
    #: is the ``leader_lease`` row ``replica:<owner>``); None with one server.
    owner: Mapped[str | None] = mapped_column(String(255))


class AuditEntry(Base):
    """Who did what to which target, with what result, when and from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(16))  # ok | refused | error
    detail: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX_LENGTH))


class ApiToken(Base):
    """A personal, scoped, revocable API token for scripts and the CLI.

    Only a SHA-256 of the token is stored; the token itself is shown once.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))  # space-separated, e.g. "jobs:read jobs:write"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- Job templates (services/templates.py) -------------------------------------------


class JobTemplate(Base):
    """A parameterised job script: ``site`` ones for everyone (admins edit them),
    ``personal`` ones for their owner only.

    ``options`` and ``parameters`` are JSON because their shape belongs to the service
    (``JobRequest`` fields, ``TemplateParameter``) and changes with it; no query looks
    inside them. ``slug`` names the seeded site templates so seeding is idempotent.
    """

    __tablename__ = "job_templates"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'site' AND owner IS NULL) OR (scope = 'personal' AND owner IS NOT NULL)",
            name="scope_owner",
        ),
        Index("ix_job_templates_scope_owner", "scope", "owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # site | personal
    owner: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    script: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))


class JobTemplateVersion(Base):
    """A template as it was before an update: one row per replaced version.

    Rows go with their template (``ON DELETE CASCADE``); the unique pair
    (template, version) also serves the history lookup.
    """

    __tablename__ = "job_template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("job_templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    script: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    edited_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    edited_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- Personal dashboards (services/dashboards.py) ------------------------------------


class DashboardLayout(Base):
    """One user's home dashboard: the widgets they placed, with position and size.

    One row per user (the primary key). ``widgets`` is JSON because its shape belongs
    to the service (``services.dashboards.Widget``) and no query looks inside it. No
    row means the site's default preset.
    """

    __tablename__ = "dashboard_layouts"

    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), primary_key=True)
    widgets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- Notifications: job events and disk alerts (services/notifications.py) ----------
class Notification(Base):
    """A job event (started, completed, failed, ...) for the job's owner, or a disk
    alert (``kind`` ``disk``: warning, critical, back below threshold) for an admin or
    for the user whose quota it is.

    The unique keys make each event happen once: (username, job_id, event) for job
    events, (username, target, episode, event) for disk alerts, where ``episode``
    counts the target's alert episodes so a new one is told again. Every replica, and
    a portal restarted between two checks, inserts *if absent*, and only the one whose
    insert succeeded pushes it to the user's sockets. A NULL in a key (``job_id`` of a
    disk alert, ``target`` of a job event) never conflicts, so the two kinds never
    meet. ``params`` carries the values of ``title``/``body`` so a front end can
    translate.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("username", "job_id", "event", name="uq_notifications_username_job_event"),
        UniqueConstraint(
            "username",
            "target",
            "episode",
            "event",
            name="uq_notifications_username_target_episode_event",
        ),
        Index("ix_notifications_username_created_at", "username", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    kind: Mapped[str] = mapped_column(String(16), default="job", server_default="job")  # job | disk
    job_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))  # disk: path:/data, node:n1, user:...
    episode: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class JobSeen(Base):
    """The status each job had when the portal last looked, shared by all replicas.

    It is what survives a restart: a job that finished while no portal was running
    still produces its event on the first refresh after start. Only rows that changed
    are written, in one batch per refresh; rows of finished jobs go some time after
    the job has left the queue.
    """

    __tablename__ = "job_seen"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    #: The "nearing its time limit" notification was made (once per job).
    warned: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class NotificationPreference(Base):
    """A person's choice for one job event (``started``, ``completed``, ...): whether
    it becomes a notification. Only choices differ from the defaults in
    ``services/notification_settings.py`` need a row; every replica's detector reads
    them before inserting, so a change holds at once across replicas."""

    __tablename__ = "notification_preferences"

    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- Files: resumable uploads and disk alerts (services/tus.py, disk_alerts.py) ------
class TusUpload(Base):
    """A resumable (tus) upload in progress, shared by every replica.

    The bytes live in a hidden ``.NAME.ID.part`` file in the destination folder,
    written as the user; ``received`` is what the portal has recorded (the partial
    file is cut back to it if an interrupted request left more). ``lock_token`` is
    set while one request appends, so two requests never write at once. A completed
    upload keeps its row (``completed_at``) until it expires, so a client resuming
    after a lost answer learns that it is done; a terminated one loses its row.
    """

    __tablename__ = "tus_uploads"
    __table_args__ = (Index("ix_tus_uploads_username_expires_at", "username", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    root_name: Mapped[str] = mapped_column(String(64))
    root_path: Mapped[str] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    length: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger)
    upload_metadata: Mapped[str | None] = mapped_column(Text)
    lock_token: Mapped[str | None] = mapped_column(String(32))
    locked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DiskAlertThreshold(Base):
    """Warning and critical levels (percent used): ``*`` is the default, other rows
    override it for one target (``path:/data``, ``node:node001``)."""

    __tablename__ = "disk_alert_thresholds"

    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    warning_percent: Mapped[float] = mapped_column(Float)
    critical_percent: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DiskAlert(Base):
    """The last usage seen for one watched target and the alert it raised, if any.

    One row per target (the primary key), so replicas update rather than duplicate.
    ``active_since`` is set while the level is warning or critical and cleared when
    usage drops; ``episode`` counts those episodes; ``notified_rank`` (1 warning,
    2 critical) records what was told during this episode, so an alert is not
    repeated while it stays active. ``username`` is set for a user's own quota or
    file-area targets (``user:NAME:ROOT``): only that user is told, and sees it.
    """

    __tablename__ = "disk_alerts"

    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # shared | scratch | quota | area
    username: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH), index=True)
    episode: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    level: Mapped[str] = mapped_column(String(16))  # info | warning | critical | unknown
    percent: Mapped[float | None] = mapped_column(Float)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    active_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    notified_rank: Mapped[int] = mapped_column(Integer, default=0)


# --- Interactive app sessions (services/sessions/: contract, slurm_batch, tracker) -------
class InteractiveSession(Base):
    """One interactive app session: a Slurm job the portal launched and connects to.

    The row is written (``creating``) before sbatch runs, so a session never exists
    in Slurm without the portal knowing; its state then follows the job through the
    shared snapshot. ``secret`` (the VNC full-control password or the web app's
    token) and ``view_secret`` never leave the server: the portal's proxy uses them
    to authenticate upstream, so no browser, URL or log ever carries them. They are
    stored sealed (``services.secret_box``: AES-GCM under the portal's key file), so
    the database alone opens nothing. ``server_cert`` is the certificate (PEM) the
    session's server proved itself with in ``connection.json``: the only one the
    proxy accepts for it (``services.node_tls``).
    """

    __tablename__ = "interactive_sessions"
    __table_args__ = (Index("ix_interactive_sessions_username_state", "username", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    app_id: Mapped[str] = mapped_column(String(64))
    app_name: Mapped[str] = mapped_column(String(200))
    connection: Mapped[str] = mapped_column(String(8))  # vnc | web
    state: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    session_dir: Mapped[str] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)
    node: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    secret: Mapped[str | None] = mapped_column(Text)
    view_secret: Mapped[str | None] = mapped_column(Text)
    passwd_file: Mapped[str | None] = mapped_column(Text)
    server_cert: Mapped[str | None] = mapped_column(Text)
    share_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- Per-user rate limits (services/rate_limits.py) ----------------------------------
class RateCounter(Base):
    """How many times one user did one limited action in one fixed time window.

    One row per (user, action, window length, window number): every replica counts
    in the same row with one conditional ``UPDATE ... SET count = count + 1 WHERE
    count < limit``, so the limit holds exactly however many replicas take requests.
    Rows are removed once their window has ended (``expires_at``).
    """

    __tablename__ = "rate_counters"

    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), primary_key=True)
    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Seconds since the epoch divided by ``window_seconds``, rounded down.
    window_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# --- One leader among replicas (ha/lease.py) ------------------------------------------
class LeaderLease(Base):
    """Who leads the replicas' background work, until when, with which fencing token.

    Taken over with one conditional ``UPDATE`` once ``expires_at_ms`` has passed, which
    adds one to ``token``; every background write checks ``token`` in its own
    transaction (``ha.lease.fence``), so an old leader cannot write after a takeover.
    """

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(BigInteger)
    #: Milliseconds since the epoch (integers compare exactly on every engine).
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    acquired_at_ms: Mapped[int] = mapped_column(BigInteger)


class BackupRun(Base):
    """One period of scheduled backups (``services/operations/backup_schedule.py``).

    The leader claims the period's row (fenced, with its token) before it backs up and
    marks it ``done`` after, so a period is backed up once across replicas and leader
    changes; a newer leader takes over a ``running`` claim of an older token (its
    leader died during the backup), and a ``failed`` one is tried again later.
    """

    __tablename__ = "backup_runs"

    period_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # running | done | failed
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    path: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)


class AdminChange(Base):
    """An administrator's change that Slurm applied (``services/admin/plan.py``).

    Kept beside its audit entry so a change can be reverted from what it recorded:
    the commands that ran, the state before them and the commands that restore it.
    ``reverted_by`` points at the change that undid this one (then it is not undone
    twice); ``reverts`` at the change a revert undid.
    """

    __tablename__ = "admin_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    kind: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(Text)
    commands: Mapped[list[Any]] = mapped_column(JSON)
    previous: Mapped[dict[str, Any]] = mapped_column(JSON)
    revert: Mapped[list[Any]] = mapped_column(JSON)
    reverts: Mapped[int | None] = mapped_column(Integer)
    reverted_by: Mapped[int | None] = mapped_column(Integer)


class SdiagSample(Base):
    """One reading of slurmctld's scheduler statistics (``sdiag``), taken on the leader
    every ``sdiag_sample_seconds`` (``services/admin/scheduler.py``) and kept
    ``sdiag_retention_days``: the history the admin console's scheduler page draws.
    ``stats`` is ``slurm.sdiag.SchedulerStats`` as JSON."""

    __tablename__ = "sdiag_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)


class GpuIdleNudge(Base):
    """A running job whose GPUs stayed below ``gpu_idle_threshold_percent`` for
    ``gpu_idle_minutes``, and whose owner was told so once
    (``services/monitoring/idle_gpu.py``): written by the leader in a fenced
    transaction with the notification, so a restart or a new leader never tells twice.
    ``peak_percent`` is the highest utilisation of the job's GPUs over that window."""

    __tablename__ = "gpu_idle_nudges"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    job_name: Mapped[str] = mapped_column(String(200))
    nodes: Mapped[str] = mapped_column(Text)
    gpus: Mapped[int] = mapped_column(Integer)
    peak_percent: Mapped[float] = mapped_column(Float)
    threshold_percent: Mapped[float] = mapped_column(Float)
    minutes: Mapped[float] = mapped_column(Float)
    nudged_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# Later areas keep their tables in modules of their own; importing them here registers
# them wherever the models are (Alembic's env, create_all in tests).
from hpcportal.db import delivery_tables, report_tables  # noqa: E402, F401
