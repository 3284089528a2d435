"""A portal running exactly as in production: as the unprivileged service account.

The account ``hpcportal`` is created, the run-as helper and the sudoers rule are
installed with ``hpcportal runas install``, and the portal runs as that account in
its own process, so every action for a user crosses the real sudo boundary.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from hpcportal.config import Settings
from hpcportal.runas.install import ensure_service_account, install
from tests.integration.portal_server import free_port

SERVICE_ACCOUNT = "hpcportal"
HELPER = Path("/usr/local/libexec/hpcportal-runas")
REPO = Path(__file__).resolve().parents[2]


def run_as_service(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command as the service account, with no help from the portal."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["runuser", "-u", SERVICE_ACCOUNT, "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd="/tmp",
        **kwargs,
    )


def slurm_bin_dir() -> Path | None:
    """The suite's Slurm clients folder (set by the ``devcluster`` fixture for 24.11+)."""
    value = os.environ.get("HPCPORTAL_SLURM_BIN_DIR")
    return Path(value) if value else None


def helper_path() -> Path:
    """The shared helper for the host's Slurm; one per clients folder otherwise, with
    its own sudoers file, so suites of two releases never swap each other's helper."""
    folder = slurm_bin_dir()
    if folder is None:
        return HELPER
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return HELPER.with_name(f"{HELPER.name}-{digest}")


def install_boundary() -> None:
    ensure_service_account(SERVICE_ACCOUNT)
    helper, folder = helper_path(), slurm_bin_dir()
    deny = Settings().runas_deny_users  # as `hpcportal runas install` does by default
    if folder is None:
        install(SERVICE_ACCOUNT, HELPER, min_uid=1000, deny_users=deny)
    else:
        sudoers = Path("/etc/sudoers.d") / helper.name  # no dot: sudo skips such names
        install(
            SERVICE_ACCOUNT,
            helper,
            min_uid=1000,
            sudoers=sudoers,
            slurm_bin_dir=folder,
            deny_users=deny,
        )
    probe = run_as_service([sys.executable, "-c", "print('ok')"])
    if probe.returncode != 0:
        raise AssertionError(
            f"The service account cannot run {sys.executable}: {probe.stderr.strip()}. "
            "Create the virtualenv with the system interpreter (scripts/setup.sh does)."
        )


@dataclass
class ServicePortal:
    url: str
    secret: str
    workdir: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)  # type: ignore[arg-type]

    def login(self, username: str) -> dict[str, str]:
        with self.client() as c:
            r = c.post(
                "/api/v1/auth/token", data={"username": username, "password": f"{username}-demo"}
            )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def pid(self) -> int:
        """The portal's Python process (the child of ``runuser``), found by its port."""
        port = str(urlsplit(self.url).port).encode()
        pid = find_pid(
            lambda argv: b"hpcportal.cli.main" in argv and port in argv and argv[0] != b"runuser"
        )
        assert pid is not None, "the portal process was not found"
        return pid


def find_pid(matches: Callable[[list[bytes]], bool]) -> int | None:
    """The first process whose argv (from ``/proc``) ``matches``, for memory readings."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if matches(argv):
            return int(entry.name)
    return None


@contextmanager
def service_portal(
    slurm_conf: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[ServicePortal]:
    """Start ``hpcportal serve`` as the service account; stop it afterwards."""
    install_boundary()
    os.chown(workdir, *_ids(SERVICE_ACCOUNT))
    port = free_port()
    secret = f"service-portal-secret-{os.getpid()}-{time.time_ns()}"
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HPCPORTAL_SLURM_CONF": slurm_conf,
        "HPCPORTAL_DATABASE_URL": f"sqlite:///{workdir / 'portal.db'}",
        "HPCPORTAL_JWT_SECRET": secret,
        "HPCPORTAL_RUNAS_METHOD": "sudo",
        "HPCPORTAL_RUNAS_HELPER": str(helper_path()),
        **({"HPCPORTAL_SLURM_BIN_DIR": str(slurm_bin_dir())} if slurm_bin_dir() else {}),
        "HPCPORTAL_REFRESH_INTERVAL": "1",
        "HPCPORTAL_REFRESH_SLOW_FRACTION": "10",  # as portal_settings: no back-off in tests
        # No per-user rate limits (tests and bench/submit.py submit in bursts).
        "HPCPORTAL_RATE_LIMIT_JOBS_PER_MINUTE": "0",
        "HPCPORTAL_RATE_LIMIT_JOBS_PER_HOUR": "0",
        "HPCPORTAL_RATE_LIMIT_SESSIONS_PER_MINUTE": "0",
        "HPCPORTAL_RATE_LIMIT_SESSIONS_PER_HOUR": "0",
        **(extra_env or {}),
    }
    log = (workdir / "portal.log").open("w")
    proc = subprocess.Popen(
        ["runuser", "-u", SERVICE_ACCOUNT, "--", sys.executable, "-m", "hpcportal.cli.main",
         "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, workdir)
        yield ServicePortal(url=url, secret=secret, workdir=workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _ids(name: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _wait_ready(url: str, proc: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the portal exited: {(workdir / 'portal.log').read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the portal did not become ready: {(workdir / 'portal.log').read_text()}")
