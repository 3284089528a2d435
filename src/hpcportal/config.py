"""The one place where configuration is read.

Values come, highest priority first, from keyword arguments (tests), ``HPCPORTAL_*``
environment variables, secret files (``$CREDENTIALS_DIRECTORY``, ``/etc/hpcportal/secrets/``),
the TOML file (``HPCPORTAL_CONFIG``, else ``/etc/hpcportal/portal.toml`` when it exists),
and the defaults below (``config_sources`` says how). Every key is documented in
``docs/architecture.md``.
"""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from hpcportal.config_sources import named_sources, read_secret_file

#: An installed portal's state (the package makes it); used by default when it exists.
DEFAULT_STATE_DIR = Path("/var/lib/hpcportal")


def _default_state_dir() -> Path:
    """``/var/lib/hpcportal`` on an installed portal, else the working directory as
    before (a checkout, the demo), so nothing that ran from a folder moves."""
    return DEFAULT_STATE_DIR if DEFAULT_STATE_DIR.is_dir() else Path(".")


def _default_database_url() -> str:
    """An SQLite file in the default state folder (``./hpcportal.db`` as before)."""
    folder = _default_state_dir()
    if folder == Path("."):
        return "sqlite:///./hpcportal.db"
    return f"sqlite:///{folder / 'hpcportal.db'}"


class FileRoot(BaseModel):
    """A file area shown to users: ``{user}`` and ``{home}`` in ``path`` are theirs."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    path: str = Field(min_length=1)


class MetricSource(BaseModel):
    """A site's own way to read a logical metric (``prometheus_metric_sources``): used
    when Prometheus has ``series``, before the built-in exporters. In the queries,
    ``$node`` is the label matcher of the node(s), ``$job`` that of a job's GPUs
    (``hpc_job="123"``) and ``$window`` the rate window (``[1m]``)."""

    model_config = {"extra": "forbid"}

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    series: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    node_query: str = Field(min_length=1)
    job_query: str | None = None
    exporter: str = "site"
    title: str | None = None
    unit: str | None = None


#: The URL schemes a delivery channel may use.
UrlScheme = Literal["http", "https"]


def _https_only() -> list[UrlScheme]:
    """Channels reach the network over TLS unless an admin allows plain HTTP."""
    return ["https"]


class Settings(BaseSettings):
    """Portal configuration; one instance per process, shared through ``get_settings``."""

    model_config = SettingsConfigDict(env_prefix="HPCPORTAL_", extra="forbid")

    # Storage
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where the portal keeps its state: the SQLite database "
        "(hpcportal.db) and secrets/ (portal.key, jwt_secret) unless set otherwise. "
        "Default: /var/lib/hpcportal when it exists (an installed portal), else the "
        "working directory.",
    )
    database_url: str = Field(
        default_factory=_default_database_url,
        description="SQLAlchemy URL: SQLite file in state_dir by default; "
        "postgresql+psycopg://... or mysql+pymysql://... (MariaDB) for several replicas.",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="Password put into database_url, so the URL in portal.toml holds "
        "none: best from a secret file (secrets/database_password, a systemd credential) "
        "or database_password_file.",
    )
    database_password_file: Path | None = Field(
        default=None, description="A file holding database_password (first line)."
    )

    # Slurm boundary
    slurm_conf: Path | None = Field(
        default=None,
        description="SLURM_CONF for every Slurm command; unset means Slurm's own default.",
    )
    slurm_bin_dir: Path | None = Field(
        default=None, description="Directory of squeue/sinfo/...; unset means PATH."
    )
    slurm_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before a command is killed."
    )
    refresh_interval: float = Field(
        default=10.0, gt=0, description="Seconds between two snapshot refreshes."
    )
    stale_after: float = Field(
        default=35.0,
        gt=0,
        description="A snapshot older than this many seconds is reported stale and /ready fails.",
    )
    refresh_slow_fraction: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="A refresh taking longer than this fraction of the interval means "
        "slurmctld is slow: the refresher doubles its interval (and halves it again once "
        "Slurm recovers). Rate-limit answers from slurmctld (rl_enable) do the same.",
    )
    refresh_max_interval: float = Field(
        default=120.0,
        gt=0,
        description="The longest interval the refresher backs off to; stale_after grows "
        "with the back-off, so backing off alone never marks the data stale.",
    )
    refresh_soon_delay: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="After the portal acts on a job, how long it gathers more such requests "
        "before reading those jobs again (one squeue --jobs for all of them).",
    )
    refresh_soon_min_gap: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Fewest seconds between two such reads, however many actions come in "
        "(while the refresher backs off, its interval is the gap).",
    )
    accounting_cache_seconds: float = Field(
        default=15.0,
        ge=0,
        description="How long an identical sacct/sshare/sacctmgr answer is reused.",
    )

    # Acting as the user (hpcportal.runas)
    runas_method: Literal["auto", "runuser", "sudo"] = Field(
        default="auto",
        description="How to become a user: runuser (portal runs as root), sudo (service "
        "account with the documented sudoers rule), auto = runuser as root, else sudo.",
    )
    runas_helper: Path = Field(
        default=Path("/usr/local/libexec/hpcportal-runas"),
        description="The installed helper that sudo runs as the user (hpcportal runas install).",
    )
    runas_deny_users: list[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]] = Field(
        default_factory=lambda: ["slurm", "slurmrestd", "munge", "nobody"],
        description="Accounts the portal never acts as, whatever their shell, besides root, "
        "UIDs below min_uid and slurm.conf's SlurmUser and SlurmdUser (always added). "
        "`hpcportal runas install` fixes them in the helper and the sudoers rule.",
    )
    runas_group: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_.-]{0,31}$",
        description="Unix group of the people the portal may act as: `hpcportal runas "
        "install` limits the sudoers rule to its members, so sudo refuses anyone else, "
        "and the portal answers 403 for them. Unset: any user the other rules allow.",
    )

    # Job submission
    upload_root: str = Field(
        default="{home}/hpcportal/uploads",
        description="Where uploaded input files go, per user; {home} and {user} are replaced.",
    )
    submission_root: str = Field(
        default="{home}/hpcportal/jobs",
        description="Where per-submission files (the script run inside Apptainer) go.",
    )
    upload_max_bytes: int = Field(default=1024**3, gt=0, description="Largest uploaded file.")
    upload_max_files: int = Field(default=20, gt=0, description="Files per upload request.")
    output_chunk_bytes: int = Field(
        default=256 * 1024, gt=0, description="Most bytes of job output returned per request."
    )
    apptainer_image_dirs: list[Path] = Field(
        default_factory=list, description="Directories scanned for .sif images."
    )
    apptainer_command: str = Field(
        default="apptainer", description="The apptainer program jobs run (name or path)."
    )
    apptainer_binds: list[str] = Field(
        default_factory=list, description="--bind values added to every Apptainer job."
    )

    # Files and storage (services/files.py, services/tus.py, services/disk_alerts.py)
    file_roots: list[FileRoot] = Field(
        default_factory=lambda: [
            FileRoot(name="home", path="{home}"),
            FileRoot(name="scratch", path="/scratch/{user}"),
        ],
        description="File areas shown in the file manager; {user} and {home} are the "
        "user's. A root whose path does not exist for a user is not listed.",
    )
    file_umask: int = Field(
        default=0o022,
        ge=0,
        le=0o777,
        description="umask for files and folders the portal creates for users "
        "(uploads, edits, new folders), as a login shell's would be.",
    )
    file_list_max_limit: int = Field(
        default=1000, gt=0, le=10_000, description="Most directory entries per listing page."
    )
    file_preview_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Most bytes of a text or CSV preview."
    )
    file_preview_max_rows: int = Field(
        default=500, gt=0, description="Most rows of a CSV/TSV preview."
    )
    file_edit_max_bytes: int = Field(
        default=2 * 1024 * 1024, gt=0, description="Largest text file edited with PUT."
    )
    file_search_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest a file search runs."
    )
    file_search_max_results: int = Field(
        default=1000, gt=0, description="Most matches a file search returns."
    )
    file_search_content_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Files larger than this are not searched for content.",
    )
    file_usage_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest a folder-size computation runs."
    )
    file_usage_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A folder's sizes are reused this long (per user and folder); "
        "`refresh=1` computes them again.",
    )
    file_copy_timeout: float = Field(
        default=3600.0, gt=0, description="Longest a copy (or other long file operation) runs."
    )
    tus_max_bytes: int = Field(
        default=100 * 1024**3, gt=0, description="Largest file uploaded with tus (Upload-Length)."
    )
    tus_user_max_bytes: int = Field(
        default=200 * 1024**3,
        gt=0,
        description="Most bytes a user may have in unfinished tus uploads at once.",
    )
    tus_user_max_uploads: int = Field(
        default=20, gt=0, description="Most unfinished tus uploads per user."
    )
    tus_expire_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="An unfinished tus upload untouched this long is removed (its "
        "hidden partial file too) when its owner next creates an upload.",
    )
    disk_alert_paths: list[str] = Field(
        default_factory=list,
        description="Shared data storage to watch (os.statvfs by the portal), e.g. ['/data'].",
    )
    disk_scratch_probe: list[str] = Field(
        default_factory=list,
        description="Command (argv) printing `df -P`-style output for one node's scratch; "
        "{node} is replaced, e.g. ['ssh', '{node}', 'df', '-P', '-B1', '/scratch']. "
        "Empty: node scratch is not watched.",
    )
    disk_scratch_nodes: list[str] = Field(
        default_factory=list,
        description="Nodes whose scratch is probed; empty means every node in the snapshot.",
    )
    disk_alert_interval: float = Field(
        default=300.0, gt=0, description="Seconds between two disk usage checks."
    )
    disk_alert_warning_percent: float = Field(
        default=75.0, gt=0, le=100, description="Default warning threshold (percent used)."
    )
    disk_alert_critical_percent: float = Field(
        default=90.0, gt=0, le=100, description="Default critical threshold (percent used)."
    )
    disk_probe_timeout: float = Field(
        default=15.0, gt=0, description="Seconds before a scratch probe is killed."
    )
    disk_user_alerts: Literal["off", "quota", "quota_or_area"] = Field(
        default="quota",
        description="Alerts about a user's own storage, told to that user only: 'quota' "
        "from their quota where the file system reports one (the `quota` command); "
        "'quota_or_area' also from the usage of the disk holding each of their file "
        "areas that has no quota; 'off' for none.",
    )
    disk_user_alert_users: list[str] = Field(
        default_factory=list,
        description="Users whose storage is checked; empty: the owners of the jobs in the "
        "current snapshot. Users with an active alert are always checked, so it can clear.",
    )
    disk_user_alert_max_users: int = Field(
        default=500, gt=0, description="Most users whose storage is checked per round."
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL (e.g. http://prometheus:9090). When set, node "
        "scratch usage comes from one instant query (prometheus_scratch_query) instead "
        "of running disk_scratch_probe per node.",
    )
    prometheus_scratch_query: str = Field(
        default='{__name__=~"node_filesystem_(size|free|avail)_bytes",mountpoint="/scratch"}',
        description="PromQL for node scratch: node_exporter's size/free/avail series by "
        "node (free may be left out), or an expression whose value is the percent used.",
    )
    prometheus_node_label: str = Field(
        default="instance",
        description="Label naming the node in the query's answer (a ':port' is removed).",
    )
    prometheus_timeout: float = Field(
        default=10.0, gt=0, description="Seconds before the Prometheus query is given up."
    )
    prometheus_user_promql: bool = Field(
        default=False,
        description="Let every logged-in user send raw PromQL through /api/v1/prometheus "
        "(query, query_range, labels, label values, series). Off: only admins; users get "
        "the named panels of their own jobs and of nodes.",
    )
    prometheus_max_points: int = Field(
        default=11000, gt=1, le=11000,
        description="Most points (steps) per series a range query may ask for; more is "
        "a 422 asking for a larger step (Prometheus' own limit is 11,000).",
    )  # fmt: skip
    prometheus_max_samples: int = Field(
        default=500_000, gt=0,
        description="Most samples (points over all series) one answer may carry back "
        "through the portal; more is a 422 asking for a narrower query.",
    )  # fmt: skip
    prometheus_panel_points: int = Field(
        default=240, ge=10, le=2000,
        description="Points per series a panel aims at: its step is its window divided "
        "by this, rounded up to a whole multiple of prometheus_min_step.",
    )  # fmt: skip
    prometheus_min_step: float = Field(
        default=15.0, gt=0, description="Smallest panel step in seconds (about the "
        "scrape interval: a finer step repeats samples).",
    )  # fmt: skip
    prometheus_cache_seconds: float = Field(
        default=15.0, ge=0,
        description="How long a panel's range answer (query and step-aligned window) is "
        "shared by everyone asking the same; concurrent askers always share one request.",
    )  # fmt: skip
    prometheus_catalog_seconds: float = Field(
        default=300.0, gt=0,
        description="How long the list of series names Prometheus has (which exporters "
        "exist, for the metric catalog) is reused before it is asked again.",
    )  # fmt: skip
    prometheus_gpu_job_label: str = Field(
        default="hpc_job",
        description="Label by which the GPU exporter names the Slurm job using a GPU "
        "(DCGM exporter's HPC job mapping writes hpc_job).",
    )
    gpu_idle_check_seconds: float = Field(
        default=300.0, ge=0, le=86400,
        description="The leader checks running GPU jobs for idle GPUs this often "
        "(0: never; needs prometheus_url and a GPU exporter naming the job).",
    )  # fmt: skip
    gpu_idle_threshold_percent: float = Field(
        default=5.0, gt=0, le=100,
        description="A job's GPUs are idle while their utilisation stays below this.",
    )  # fmt: skip
    gpu_idle_minutes: float = Field(
        default=30.0, gt=0, le=10080,
        description="How long a running job's GPUs must stay idle before its owner is "
        "told, once per job.",
    )  # fmt: skip
    prometheus_metric_sources: list[MetricSource] = Field(
        default_factory=list,
        description="Site additions to the metric catalog, tried before the built-in "
        "exporters: [[prometheus_metric_sources]] metric, series, node_query, job_query, "
        "exporter, title, unit ($node, $job and $window stand for the matchers and the "
        "rate window).",
    )

    # Reports: generation, storage and schedules (issue 14.4; services/reports/generation)
    report_retention_days: float = Field(
        default=30.0, gt=0, le=3650,
        description="Generated reports are deleted by the leader this long after they "
        "were asked for.",
    )  # fmt: skip
    report_worker_seconds: float = Field(
        default=2.0, gt=0, le=3600,
        description="Every replica looks for queued reports to generate this often.",
    )  # fmt: skip
    report_schedule_check_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="The leader runs due report schedules and deletes expired reports "
        "this often.",
    )  # fmt: skip
    report_stale_minutes: float = Field(
        default=30.0, gt=0, le=1440,
        description="A report still running this long after a replica claimed it (the "
        "replica died) is taken again by another.",
    )  # fmt: skip
    report_max_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0,
        description="Largest rendered report stored; a larger one fails with a message.",
    )  # fmt: skip

    # Reports: rendering (issue 14.3; services/reports/render)
    reports_font_path: Path = Field(
        default=Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf"),
        description="TrueType font of PDF reports, embedded as a subset; it must cover "
        "Korean (Debian's fonts-nanum). A NanumGothicBold.ttf beside it is used for "
        "headings when present.",
    )

    # Reports: efficiency, system and user-activity kinds (issue 14.2;
    # services/reports/kinds/efficiency.py, system.py, user_activity.py)
    report_short_job_minutes: float = Field(
        default=10.0, gt=0, le=1440,
        description="The efficiency report counts a started job that ran less than this "
        "as a short job.",
    )  # fmt: skip
    report_gpu_prometheus_jobs: int = Field(
        default=200, ge=0, le=10000,
        description="With Prometheus configured, the efficiency report asks it for the "
        "mean GPU utilisation of at most this many of the period's newest GPU jobs (one "
        "query each) to find idle GPUs the idle-GPU check did not flag.",
    )  # fmt: skip

    # Identity
    pam_service: str = Field(
        default="hpcportal", description="PAM service used to check passwords."
    )
    admin_group: str = Field(
        default="hpc-admins", description="Unix group whose members are admins."
    )
    jwt_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(48)),
        description="HS256 signing key of logins and share links, the same on every "
        "replica: from a secret file (secrets/jwt_secret, a systemd credential), "
        "jwt_secret_file or HPCPORTAL_JWT_SECRET. Unset: `serve` keeps a generated one "
        "in state_dir/secrets/jwt_secret (beside portal.key), so a restart logs nobody out.",
    )
    jwt_secret_file: Path | None = Field(
        default=None, description="A file holding jwt_secret (first line)."
    )
    jwt_algorithm: Literal["HS256"] = "HS256"
    token_ttl_seconds: int = Field(default=3600, gt=0, le=7 * 24 * 3600)
    cookie_name: str = "hpcportal_session"
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set true behind HTTPS)."
    )
    login_max_failures: int = Field(
        default=5, gt=0, description="Failed logins per user (and 4x per address) per window."
    )
    login_window_seconds: int = Field(default=300, gt=0)
    min_uid: int = Field(default=1000, ge=1, description="Lowest UID allowed to log in.")
    login_failure_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=10,
        description="Least time a failed login takes, so that refusing an unknown user "
        "without asking PAM is as slow as PAM's own failure delay.",
    )
    login_refuse_shells: list[str] = Field(
        default_factory=lambda: [
            "/usr/sbin/nologin",
            "/sbin/nologin",
            "/usr/bin/false",
            "/bin/false",
        ],
        description="Accounts with one of these login shells may not use the portal "
        "(login refused, existing sessions and API tokens end).",
    )
    login_require_listed_shell: bool = Field(
        default=False,
        description="Also refuse accounts whose shell is not listed in /etc/shells. Off "
        "by default: directory (LDAP/SSSD) accounts often name shells this host does "
        "not list, e.g. /usr/local/bin/zsh, and would be locked out.",
    )
    login_check_account: bool = Field(
        default=True,
        description="Run PAM account management (pam_acct_mgmt of pam_service: expired "
        "account or password, forced password change, the site's access rules) at "
        "login and whenever a user is looked up again, and refuse a locked password "
        "('!' in /etc/shadow, where readable).",
    )
    revocation_sync_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How often each replica re-reads logged-out tokens from the database.",
    )
    principal_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="How long a user's groups (hence the admin role) are reused; 0 = not at all.",
    )
    api_token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a checked API token is reused without a query (revocations "
        "in this process apply at once, in other replicas within this time); 0 = not at all.",
    )

    # Per-user rate limits (services/rate_limits.py); 0 = no limit
    rate_limit_jobs_per_minute: int = Field(
        default=30, ge=0, description="Job submissions per user per minute (API, templates)."
    )
    rate_limit_jobs_per_hour: int = Field(
        default=600, ge=0, description="Job submissions per user per hour."
    )
    rate_limit_sessions_per_minute: int = Field(
        default=3, ge=0, description="Interactive session launches per user per minute."
    )
    rate_limit_sessions_per_hour: int = Field(
        default=30, ge=0, description="Interactive session launches per user per hour."
    )
    rate_limit_exempt_admins: bool = Field(
        default=False,
        description="Let members of admin_group submit and launch without the limits.",
    )
    share_cookie_seconds: int = Field(
        default=8 * 3600,
        gt=0,
        le=7 * 24 * 3600,
        description="How long a share link, once opened, lets that browser view the "
        "desktop (an httpOnly cookie scoped to that share) before the link is needed "
        "again. Revoking the link ends it at once.",
    )

    # Live updates over the WebSocket, and job notifications
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the portal's own that may open "
        "the live WebSocket /api/v1/ws; any other Origin is refused.",
    )
    live_queue_messages: int = Field(
        default=64,
        gt=0,
        le=10_000,
        description="Messages a live WebSocket may fall behind before it is dropped (close "
        "code 1013), so that a slow client never slows the others.",
    )
    live_output_poll_seconds: float = Field(
        default=0.5,
        ge=0.05,
        le=60,
        description="How often a watched running job's output file is read (one reader per "
        "job, however many pages and streams watch it).",
    )
    sse_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="A Server-Sent Events stream with nothing to say sends a comment this "
        "often, so proxies and browsers keep it open.",
    )
    notify_time_left_minutes: int = Field(
        default=10,
        ge=1,
        le=7 * 24 * 60,
        description="Notify a job's owner once when their running job has less than this "
        "many minutes left before its time limit.",
    )

    # Interactive apps
    app_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders holding one folder per interactive app (app.yaml + "
        "script.sh.j2). The shipped apps come first; a site app with the same id wins.",
    )
    include_shipped_apps: bool = Field(
        default=True, description="Offer the apps shipped with the portal (desktop, ...)."
    )
    session_root: str = Field(
        default="{home}/hpcportal/sessions",
        description="Where each session's folder (script, output, connection file) is "
        "made, as the user.",
    )
    session_start_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a running session may take to write its connection file "
        "before it is reported as failed.",
    )
    websocket_compression: bool = Field(
        default=False,
        description="permessage-deflate on the portal's WebSockets (`serve`). Off: the "
        "VNC proxy can then copy bytes between browser and session instead of decoding "
        "and encoding every message (VNC data is compressed already); on shrinks "
        "live-update traffic on slow links at the cost of the portal's CPU.",
    )
    proxy_connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to reach a session's node through the proxy."
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="The key (AES-256-GCM) that seals session passwords and app tokens in "
        "the database; beside it, the portal's TLS client certificate for sessions' "
        "servers. Made on first use (0600 in a 0700 folder); every replica must use the "
        "same file. Unset: secrets/portal.key beside the SQLite database, else "
        "./secrets/portal.key.",
    )

    # The terminal in the browser (services/terminal.py)
    terminal_enabled: bool = Field(
        default=True,
        description="Offer a login shell in the browser (/terminal), started as the user "
        "through the run-as helper. Off: the page, the API and the socket say so (403).",
    )
    terminal_idle_seconds: float = Field(
        default=1800.0,
        ge=0,
        description="A terminal nobody typed into (or resized) for this many seconds is "
        "closed and its shell hung up; 0 never closes one for idleness.",
    )
    terminal_reconnect_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A shell whose browser left (reload, lost network) waits this many "
        "seconds for its owner to reattach, then is hung up.",
    )
    terminal_max_per_user: int = Field(
        default=4, gt=0, le=64, description="Shells one person may have open at once."
    )

    # Several replicas (ha/): Redis for the shared snapshot, the database for the leader
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every replica. Unset: one server alone "
        "(it reads Slurm itself and runs all background work, nothing is shared).",
    )
    redis_sentinels: list[str] = Field(
        default_factory=list,
        description="host:port of Redis Sentinels; when set, Redis is their current master "
        "named redis_sentinel_master (and redis_url is not needed).",
    )
    redis_sentinel_master: str = Field(
        default="mymaster", description="The master's name in the Sentinels' configuration."
    )
    redis_prefix: str = Field(
        default="hpcportal:",
        min_length=1,
        max_length=64,
        description="Start of every Redis key and channel, so portals can share one Redis.",
    )
    leader_lease_seconds: float = Field(
        default=6.0,
        ge=1.0,
        le=60.0,
        description="The leader's lease in the database; a dead leader is replaced after at "
        "most this long (plus one renewal period, a third of it).",
    )
    replica_id: str | None = Field(
        default=None,
        max_length=255,
        description="This replica's name in the lease and in `cluster status`; unset: "
        "hostname-pid.",
    )

    # Backups (services/operations/backup.py, retention.py)
    backup_dir: Path | None = Field(
        default=None,
        description="Where `hpcportal cluster backup` writes backups (one folder each, "
        "0700: a backup holds the secret key). Unset: no scheduled backups, and the "
        "commands need --dir.",
    )
    backup_every_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 31,
        description="The leader makes a backup this often when backup_dir is set "
        "(once per period across the replicas); 0: only by hand.",
    )
    backup_keep_daily: int = Field(
        default=7,
        ge=0,
        le=10_000,
        description="Backups kept: the newest of each of the last N days.",
    )
    backup_keep_weekly: int = Field(
        default=4, ge=0, le=10_000, description="... and of each of the last N ISO weeks."
    )
    backup_keep_monthly: int = Field(
        default=12, ge=0, le=10_000, description="... and of each of the last N months."
    )

    # Scheduler health (services/admin/scheduler.py)
    sdiag_sample_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="The leader reads slurmctld's scheduler statistics (sdiag) this often "
        "for the admin console's scheduler page (one read per cluster whatever the number "
        "of replicas or viewers); 0: never.",
    )
    sdiag_retention_days: float = Field(
        default=7.0,
        gt=0,
        le=366,
        description="Scheduler statistics samples older than this are deleted.",
    )

    # Usage reports: the usage store's ingester (services/reports/ingest.py)
    reports_ingest_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="The leader reads finished jobs from sacct into the usage store this "
        "often (one reader per cluster whatever the number of replicas); 0: never.",
    )
    reports_ingest_window_minutes: int = Field(
        default=360,
        ge=1,
        le=10080,
        description="Each sacct read covers at most this much time (jobs that ended in it), "
        "stored in one transaction, so a large backlog is read in bounded steps.",
    )
    reports_ingest_lookback_days: float = Field(
        default=30.0,
        ge=0,
        le=3660,
        description="On the first ingest, jobs that ended this long ago are read too.",
    )
    reports_ingest_settle_seconds: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        description="The store is complete only up to this long ago, and each read starts "
        "this much before it: slurmdbd may record a job's end after it happened. Jobs "
        "already stored are not counted again.",
    )

    # Delivery core (issue 15): site SMTP, webhook safety, the leader's sender
    # (services/delivery/)
    delivery_smtp_host: str | None = Field(
        default=None,
        description="The SMTP server email channels send through. Unset: email messages "
        "wait in the outbox (and die after the last attempt).",
    )
    delivery_smtp_port: int = Field(default=587, gt=0, lt=65536)
    delivery_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: plain connection upgraded with STARTTLS (port 587); tls: "
        "TLS from the first byte (port 465); none: no encryption (a relay on localhost).",
    )
    delivery_smtp_username: str | None = Field(
        default=None, description="SMTP login; unset: no authentication."
    )
    delivery_smtp_password: SecretStr | None = None
    delivery_smtp_password_file: Path | None = Field(
        default=None, description="A file whose first line is the SMTP password."
    )
    delivery_smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the SMTP server's certificate is checked "
        "against; unset: the system's.",
    )
    delivery_https_ca_file: Path | None = Field(
        default=None,
        description="Extra CA certificates (PEM) trusted for HTTPS webhook and Slack "
        "deliveries, in addition to the default ones (httpx's default, certifi): for "
        "internal receivers whose certificates a site CA issued. Unset: the default ones "
        "only. Read again when the file changes; while it is missing or unreadable, each "
        "webhook and Slack send fails saying so.",
    )
    delivery_from: str = Field(
        default="hpcportal@localhost",
        description="From address of the portal's mail; its domain ends each Message-ID.",
    )
    delivery_allowed_schemes: list[UrlScheme] = Field(
        default_factory=_https_only,
        description="URL schemes a Slack or webhook channel may use.",
    )
    delivery_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names Slack and webhook channels may point to (exact, or "
        "*.example.org for its subdomains). Empty: any host whose addresses are public.",
    )
    delivery_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) a webhook host may resolve to although private, "
        "loopback or link-local (refused otherwise, at save and again at each send).",
    )
    delivery_send_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest wait for one SMTP or HTTP send."
    )
    delivery_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts before a message becomes a dead letter."
    )
    delivery_base_delay_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="Wait after the first failure; doubled after each further one "
        "(half of it random), at most delivery_max_delay_seconds.",
    )
    delivery_max_delay_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    delivery_poll_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="The leader looks for due messages this often; 0: no sender here.",
    )

    # A person's channels, subscriptions and digests (issue 15.2; services/delivery/)
    delivery_digest_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="The leader folds digests, quiet-hours and rate-limited messages "
        "whose time has come into the outbox this often; 0: not on this replica.",
    )

    # Metrics (api/http_metrics.py)
    metrics_allowed_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Client addresses or networks (CIDR) that may read /metrics (behind "
        "a proxy, the client as trusted_proxies makes it). Empty: only the token.",
    )
    metrics_token_file: Path | None = Field(
        default=None,
        description="A file whose first line is a token that lets a scraper read /metrics "
        "from any address with 'Authorization: Bearer <token>'; read at each scrape, so "
        "it can be replaced in place. Unset: no token is accepted.",
    )

    # Delivery (issue 15.4, 15.5): Slurm's mail through hpcportal-mailprog, and the
    # Alertmanager receiver. Each endpoint answers only while its secret file is set.
    slurm_mail_secret_file: Path | None = Field(
        default=None,
        description="A file (e.g. /etc/hpcportal/slurm-mail.secret, readable by SlurmUser "
        "on the slurmctld hosts) whose first line is the secret hpcportal-mailprog sends to "
        "POST /api/v1/slurm-mail; read at each request. Unset: the endpoint refuses all.",
    )
    alertmanager_token_file: Path | None = Field(
        default=None,
        description="A file whose first line is the bearer token Alertmanager sends to "
        "POST /api/v1/alerts/alertmanager (its http_config credentials_file holds the "
        "same); read at each request. Unset: the receiver refuses all.",
    )

    # Serving
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies in front "
        "(HAProxy, nginx): only for a request from one of them is the client's address "
        "taken from X-Forwarded-For (and the scheme from X-Forwarded-Proto), for rate "
        "limits and the audit log. Empty: the connection's own address, always.",
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain",
        description="plain: one line per record for journald (no timestamp under "
        "systemd, which adds its own); json: one JSON object per line for a log "
        "collector. Secrets are redacted either way.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)
    devcluster_dir: Path = Field(
        default=Path(".devcluster"), description="Where `hpcportal dev-cluster` keeps everything."
    )

    @field_validator("metrics_allowed_networks", "delivery_allowed_networks")
    @classmethod
    def _metrics_networks(cls, value: list[str]) -> list[str]:
        """Each entry a network (a bare address is one host), written out normalised."""
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(
                    f"{item!r} is not an IP address or network (e.g. 10.0.0.0/24, ::1)"
                ) from exc
        return networks

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{item!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)"
                ) from exc
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        """The database in state_dir unless named; values read from ``*_file``s."""
        if "database_url" not in self.model_fields_set and "state_dir" in self.model_fields_set:
            self.database_url = f"sqlite:///{(self.state_dir / 'hpcportal.db').absolute()}"
        if self.jwt_secret_file is not None:
            if "jwt_secret" in self.model_fields_set:
                raise ValueError("set jwt_secret or jwt_secret_file, not both")
            self.jwt_secret = SecretStr(read_secret_file(self.jwt_secret_file))
        if self.database_password_file is not None:
            if self.database_password is not None:
                raise ValueError("set database_password or database_password_file, not both")
            self.database_password = SecretStr(read_secret_file(self.database_password_file))
        if self.database_password is not None:
            url = make_url(self.database_url).set(
                password=self.database_password.get_secret_value()
            )
            self.database_url = url.render_as_string(hide_password=False)
        return self

    @property
    def jwt_secret_configured(self) -> bool:
        """Was a signing key given (else this process made up one of its own)?"""
        return "jwt_secret" in self.model_fields_set

    @property
    def secret_key_path(self) -> Path:
        """``secret_key_file``, or its default next to the state (the SQLite file)."""
        if self.secret_key_file is not None:
            return self.secret_key_file
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(str(url.database)).absolute().parent / "secrets" / "portal.key"
        return (self.state_dir / "secrets" / "portal.key").absolute()

    @property
    def replicated(self) -> bool:
        """Several replicas share Redis: one leader reads Slurm, the others follow."""
        return bool(self.redis_url or self.redis_sentinels)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return tuple(
            source for _, source in named_sources(settings_cls, init_settings, env_settings)
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
