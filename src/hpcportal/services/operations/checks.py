"""``hpcportal check``: does everything the portal relies on answer, as configured?

Slurm (release and JSON format), the database (reachable, migrations at head), the
signing key (shared when there are replicas), Redis and Prometheus when configured,
the run-as helper (this version's program) and its sudoers rule, and optionally the
TLS front end.

Each check returns a ``Check``: passed, failed (with what to do about it) or skipped
(not configured, or not applicable here). A check never raises: one broken part must
not hide the state of the others, and the administrator reads every line at once.
Every network check has a short timeout, so a dead host costs seconds, not minutes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hpcportal import __version__
from hpcportal.config import Settings
from hpcportal.db.migrate import current_revision, head_revision
from hpcportal.db.session import create_db_engine
from hpcportal.db.sqlite_file import DatabaseFileExposed, check_private, sqlite_path
from hpcportal.errors import PortalError, SlurmUnsupported
from hpcportal.ha import redis_probe
from hpcportal.runas import SUDOERS_FILE, installed_helper_matches
from hpcportal.slurm.adapter import SlurmAdapter

#: Seconds a network check waits for an answer.
TIMEOUT = 3.0

Outcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Check:
    """One line of the report: what, how it went, what was seen, what to do."""

    name: str
    outcome: Outcome
    detail: str
    fix: str | None = None


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "failed", detail, fix)


def _skipped(name: str, detail: str) -> Check:
    return Check(name, "skipped", detail)


def masked_url(url: str) -> str:
    """``url`` without its password (for a report or a log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _reason(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def check_slurm(settings: Settings) -> Check:
    """The configured Slurm answers, with a release whose JSON the portal reads."""
    try:
        cluster = SlurmAdapter.from_settings(settings).cluster()
    except SlurmUnsupported as exc:
        return _failed(
            "slurm",
            exc.message,
            "Run a Slurm release the portal reads (see `hpcportal version`), or point "
            "slurm_bin_dir at its clients.",
        )
    except PortalError as exc:
        return _failed(
            "slurm",
            exc.message,
            "Is slurmctld up (`scontrol ping`)? Check slurm_conf (SLURM_CONF) and "
            "slurm_bin_dir, and that the portal's account can read slurm.conf and talk "
            "to munge.",
        )
    return _ok("slurm", cluster.describe())


def check_database(settings: Settings) -> Check:
    """The database answers and its schema is at this version's newest migration."""
    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            return _failed(
                "database",
                f"{shown}: the file does not exist yet",
                "Run `hpcportal db upgrade` (or start the portal) to create it, or fix "
                "database_url / state_dir.",
            )
        try:
            check_private(settings.database_url)
        except DatabaseFileExposed as exc:
            return _failed("database", str(exc), f"chmod 600 {path}")
    if path is None and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(int(TIMEOUT))})
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except Exception as exc:
        return _failed(
            "database",
            f"{shown}: {_reason(exc)}",
            "Is the database server up and reachable from here? Check database_url "
            "(host, port, user, database) and the password (database_password).",
        )
    finally:
        engine.dispose()
    head = head_revision()
    backend = url.get_backend_name()
    if current != head:
        return _failed(
            "database",
            f"{shown} ({backend}) is at migration {current or 'none'}, this version needs {head}",
            "Run `hpcportal db upgrade` (serve also migrates when it starts).",
        )
    return _ok("database", f"{shown} ({backend}), migrations at head ({head})")


def check_signing_key(settings: Settings) -> Check:
    """Replicas (a server database or Redis) share one configured JWT key."""
    from hpcportal.services.signing_key import several_replicas_likely, stored_key_path

    if settings.jwt_secret_configured:
        return _ok("signing key", "jwt_secret configured (masked; see `hpcportal config show`)")
    if several_replicas_likely(settings):
        return _failed(
            "signing key",
            "jwt_secret is not configured, but a server database or Redis means replicas: "
            "a login made on one would be refused by the others",
            "Put one random value (`openssl rand -base64 48`) in "
            "/etc/hpcportal/secrets/jwt_secret on every replica (0600, the portal's "
            "account), or give it as a systemd credential or jwt_secret_file.",
        )
    return _ok("signing key", f"one server: kept in {stored_key_path(settings)}")


def check_redis(settings: Settings) -> Check:
    """Redis (or its Sentinels' current master) answers, when replicas share one."""
    fix = (
        "Start Redis (`systemctl start redis-server`) or correct redis_url / "
        "redis_sentinels: the replicas share the leader's snapshot and changes through it."
    )
    if not settings.redis_sentinels and not settings.redis_url:
        return _skipped("redis", "not configured (redis_url unset: one server alone)")
    try:
        seen = redis_probe.probe(
            settings.redis_url,
            sentinels=settings.redis_sentinels,
            master=settings.redis_sentinel_master,
            timeout=TIMEOUT,
        )
    except Exception as exc:
        named = masked_url(settings.redis_url) if settings.redis_url else "Redis (Sentinel)"
        return _failed("redis", f"{named}: {_reason(exc)}", fix)
    if settings.redis_sentinels:
        where = f"master {settings.redis_sentinel_master} at {seen.host}:{seen.port} (Sentinel)"
    else:
        where = masked_url(settings.redis_url or "")
    return _ok("redis", f"{where}, Redis {seen.version}")


def check_prometheus(settings: Settings) -> Check:
    """Prometheus answers its build-info query, when node scratch comes from it."""
    if not settings.prometheus_url:
        return _skipped("prometheus", "not configured (prometheus_url unset)")
    where = masked_url(settings.prometheus_url)
    try:
        response = httpx.get(
            settings.prometheus_url.rstrip("/") + "/api/v1/status/buildinfo", timeout=TIMEOUT
        )
        response.raise_for_status()
        version = response.json().get("data", {}).get("version", "?")
    except Exception as exc:
        return _failed(
            "prometheus",
            f"{where}: {_reason(exc)}",
            "Is Prometheus up and reachable from here? Correct prometheus_url, or unset "
            "it to probe node scratch with disk_scratch_probe instead.",
        )
    return _ok("prometheus", f"{where}, Prometheus {version}")


def _uses_runuser(settings: Settings) -> bool:
    return settings.runas_method == "runuser" or (
        settings.runas_method == "auto" and os.geteuid() == 0
    )


def check_runas_helper(settings: Settings) -> Check:
    """The installed helper is this version's program (sudo runs it as users)."""
    helper = settings.runas_helper
    install = (
        f"Run `hpcportal runas install --user <service account>` as root (version {__version__})."
    )
    if settings.runas_method == "runuser":
        return _skipped("runas helper", "runas_method = runuser: the portal runs as root")
    try:
        matches = installed_helper_matches(helper)
    except FileNotFoundError:
        if _uses_runuser(settings):
            return _skipped(
                "runas helper", f"{helper} not installed; as root the portal uses runuser"
            )
        return _failed("runas helper", f"{helper} is not installed", install)
    except OSError as exc:
        return _failed("runas helper", f"{helper}: {exc.strerror}", install)
    if not matches:
        return _failed(
            "runas helper",
            f"{helper} is not the helper of hpcportal {__version__} (an older or altered copy)",
            install,
        )
    return _ok("runas helper", f"{helper}, this version's ({__version__})")


def check_sudoers(settings: Settings, sudoers: Path = SUDOERS_FILE) -> Check:
    """The sudoers rule exists, names the helper, and visudo accepts it."""
    if _uses_runuser(settings) and not sudoers.exists():
        return _skipped("sudoers rule", "not installed; as root the portal uses runuser")
    fix = "Run `hpcportal runas install --user <service account>` as root."
    try:
        rule = sudoers.read_text()
    except FileNotFoundError:
        return _failed("sudoers rule", f"{sudoers} does not exist", fix)
    except OSError as exc:
        return _failed(
            "sudoers rule", f"{sudoers}: {exc.strerror}", "Run `hpcportal check` as root."
        )
    if str(settings.runas_helper) not in rule:
        return _failed("sudoers rule", f"{sudoers} does not name {settings.runas_helper}", fix)
    try:
        checked = subprocess.run(
            ["visudo", "-cf", str(sudoers)],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _failed("sudoers rule", f"visudo could not run: {exc}", "Install sudo.")
    if checked.returncode != 0:
        said = (checked.stderr or checked.stdout).strip().splitlines()
        return _failed("sudoers rule", f"visudo refuses {sudoers}: {said[0] if said else ''}", fix)
    return _ok("sudoers rule", f"{sudoers} names {settings.runas_helper}; visudo accepts it")


def check_frontend(url: str) -> Check:
    """The front end serves the portal over TLS with HSTS, and passes /ready through."""
    try:
        response = httpx.get(url.rstrip("/") + "/ready", timeout=TIMEOUT, verify=False)  # noqa: S501 (a self-signed test site is still worth checking)
    except Exception as exc:
        return _failed(
            "front end", f"{url}: {_reason(exc)}", "Is nginx/Apache up, and the URL right?"
        )
    problems = []
    if urlsplit(url).scheme != "https":
        problems.append("not HTTPS")
    elif "strict-transport-security" not in response.headers:
        problems.append("no Strict-Transport-Security header")
    if response.status_code not in (200, 503):
        problems.append(f"/ready answered HTTP {response.status_code}")
    if problems:
        return _failed(
            "front end",
            f"{url}: " + "; ".join(problems),
            "Use the site `hpcportal config render-frontend` writes (TLS, HSTS, proxy headers).",
        )
    return _ok("front end", f"{url}: HTTPS with HSTS, /ready answered {response.status_code}")


def run_checks(settings: Settings, *, frontend_url: str | None = None) -> list[Check]:
    """Every check, in the order a person fixes things; none raises."""
    checks: list[Callable[[], Check]] = [
        lambda: check_slurm(settings),
        lambda: check_database(settings),
        lambda: check_signing_key(settings),
        lambda: check_redis(settings),
        lambda: check_prometheus(settings),
        lambda: check_runas_helper(settings),
        lambda: check_sudoers(settings),
    ]
    if frontend_url:
        checks.append(lambda: check_frontend(frontend_url))
    results: list[Check] = []
    for run in checks:
        try:
            results.append(run())
        except Exception as exc:  # a bug in a check must not hide the others
            results.append(_failed("check", f"{run}: {_reason(exc)}", "Report this as a bug."))
    return results
