"""Installing on a site (issue 18): the wheel in a fresh virtualenv, and the Debian
package installed on this host, run as its unit would, behind Debian's nginx over TLS.

The package's paths are its own: /opt/hpcportal (beside the dev apps' /opt/hpcportal/apps,
which it never touches), /etc/hpcportal, /var/lib/hpcportal, the helper at
/usr/libexec/hpcportal/hpcportal-runas and the rule /etc/sudoers.d/hpcportal-package,
so the suite's shared helper (/usr/local/libexec/hpcportal-runas with
/etc/sudoers.d/hpcportal, tests/integration/service_portal.py) is never replaced or
removed, and a portal the other tests run keeps working while this one is installed.
There is no systemd here: the unit file is parsed and its ``ExecStart`` run with its
``User``, ``WorkingDirectory`` and ``Environment``, plus the dev cluster's SLURM_CONF
and a free port (environment variables, so nothing the other tests read changes).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.frontends import nginx_argv, nginx_main, self_signed
from tests.integration import slurm_cli
from tests.integration.portal_server import free_port

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(os.environ.get("HPCPORTAL_WHEELHOUSE", "/var/cache/hpcportal/wheelhouse"))
PREFIX = Path("/opt/hpcportal")
HELPER = Path("/usr/libexec/hpcportal/hpcportal-runas")
SUDOERS = Path("/etc/sudoers.d/hpcportal-package")
UNIT = Path("/lib/systemd/system/hpcportal.service")
STATE = Path("/var/lib/hpcportal")
CONFIG = Path("/etc/hpcportal/portal.toml")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the .deb, built once by packaging/build-deb.sh (wheelhouse cached)."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable, "HPCPORTAL_DEB_COMPRESSION": "zstd"}
    build = _run([str(REPO / "packaging" / "build-deb.sh"), str(out)], env=env, timeout=1200)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"package built in {time.monotonic() - started:.0f} s")
    return out


def test_the_wheel_installs_and_runs_in_a_fresh_virtualenv(built: Path, tmp_path: Path) -> None:
    (wheel,) = built.glob("hpcportal-*.whl")
    venv = tmp_path / "venv"
    assert _run(["/usr/bin/python3", "-m", "venv", str(venv)]).returncode == 0
    pip = _run(
        [str(venv / "bin/pip"), "install", "--quiet", "--no-index", "--find-links",
         str(WHEELHOUSE), str(wheel)],
        timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    helped = _run([str(venv / "bin/hpcportal"), "--help"], env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr
    db = tmp_path / "state" / "portal.db"
    db.parent.mkdir(mode=0o700)
    env["HPCPORTAL_DATABASE_URL"] = f"sqlite:///{db}"
    migrated = _run([str(venv / "bin/hpcportal"), "db", "upgrade"], env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    # The head of the migrations the wheel carries (the source tree may have gained one
    # since the build, on this shared checkout).
    head = (
        "import pathlib, hpcportal\n"
        "from alembic.script import ScriptDirectory\n"
        "where = pathlib.Path(hpcportal.__file__).parent / 'db' / 'migrations'\n"
        "print(ScriptDirectory(str(where)).get_current_head(), "
        "len(list((where / 'versions').glob('0*.py'))))\n"
    )
    shipped = _run([str(venv / "bin/python"), "-c", head], env=env, cwd=tmp_path)
    wheel_head, count = shipped.stdout.split()
    assert revision == wheel_head and int(count) >= 12, shipped.stdout + shipped.stderr
    # The app factory from the installed copy serves a static file, a template and the
    # Korean catalog (no lifespan: nothing asks Slurm).
    probe = (
        "import hpcportal, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from hpcportal.app import create_app\n"
        "assert hpcportal.__file__.startswith(sys.prefix), hpcportal.__file__\n"
        "c = TestClient(create_app(start_refresher=False))\n"
        "css = c.get('/static/css/app.css')\n"
        "page = c.get('/login')\n"
        "ko = c.get('/login', headers={'Accept-Language': 'ko'})\n"
        "print(css.status_code, len(css.content), page.status_code, "
        "'<form' in page.text, ko.text.count('\\ub85c\\uadf8\\uc778') > 0)\n"
    )
    served = _run([str(venv / "bin/python"), "-c", probe], env=env, cwd=tmp_path, timeout=120)
    assert served.returncode == 0, served.stderr[-3000:]
    css_status, css_len, page_status, has_form, korean = served.stdout.split()
    assert (css_status, page_status, has_form, korean) == ("200", "200", "True", "True")
    assert int(css_len) > 100


def _unit(path: Path) -> dict[str, Any]:
    """The [Service] section as systemd reads what this test needs: User, WorkingDirectory,
    ExecStart and every Environment= assignment (in order, later wins)."""
    service: dict[str, Any] = {"Environment": {}}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]":
            continue
        key, _, value = line.partition("=")
        if key == "Environment":
            for item in shlex.split(value):
                name, _, val = item.partition("=")
                service["Environment"][name] = val
        else:
            service[key] = value
    return service


def _dpkg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """dpkg, waiting for the lock if another install runs on this shared host."""
    deadline = time.monotonic() + 300
    while True:
        done = _run(["dpkg", *args], env=env, timeout=600)
        if "lock" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(2)


def _purge() -> None:
    _dpkg("--purge", "hpcportal")


@pytest.fixture
def clean_host() -> Iterator[None]:
    """No hpcportal package before (one left by an interrupted run is purged) and none
    after. A /var/lib/hpcportal or /etc/hpcportal that is not the package's (a portal run
    by hand with the default paths) is set aside and put back, never deleted."""
    if _run(["dpkg-query", "-W", "hpcportal"]).returncode == 0:
        _purge()
    for path in (HELPER, SUDOERS):
        assert not path.exists(), f"{path} exists but no hpcportal package is installed"
    aside = {p: p.with_name(f"{p.name}.before-test-{os.getpid()}") for p in (STATE, CONFIG.parent)}
    for path, kept in list(aside.items()):
        if path.exists():
            path.rename(kept)
        else:
            del aside[path]
    try:
        yield
    finally:
        _purge()
        for path, kept in aside.items():
            if not path.exists():
                kept.rename(path)


def _tls_client(url: str, cert: Path) -> httpx.Client:
    return httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=cert), timeout=60)


def _alpn(port: int, cert: Path) -> str | None:
    context = ssl.create_default_context(cafile=cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def _wait_ready(url: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the portal exited: {log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the portal did not become ready: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_debian_package_install_serve_behind_nginx_and_remove(
    built: Path, clean_host: None, devcluster: dict[str, Any], tmp_path: Path
) -> None:
    if devcluster.get("bin_dir"):
        pytest.skip(
            "the package test runs in the 22.05 pass: its helper runs the host's Slurm "
            "clients (a site with another Slurm folder sets --slurm-bin-dir; see README)"
        )
    started = time.monotonic()
    slurm_conf = str(devcluster["slurm_conf"])
    (deb,) = built.glob("hpcportal_*.deb")

    # Install. postinst reads SlurmUser/SlurmdUser from slurm_conf (as from portal.toml).
    installed = _dpkg("-i", str(deb), env={**os.environ, "HPCPORTAL_SLURM_CONF": slurm_conf})
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    install_seconds = time.monotonic() - started
    account = pwd.getpwnam("hpcportal")
    for path, mode in ((HELPER, 0o755), (SUDOERS, 0o440)):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, mode), path
    assert "hpcportal ALL=(ALL, !root" in SUDOERS.read_text()
    assert f"NOPASSWD: {HELPER}" in SUDOERS.read_text()
    assert _run(["visudo", "-c"]).returncode == 0
    assert STATE.stat().st_uid == account.pw_uid
    assert stat.S_IMODE(CONFIG.stat().st_mode) == 0o640
    conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", "hpcportal"]).stdout
    assert str(CONFIG) in conffiles
    assert '# state_dir = "/var/lib/hpcportal"\n' in CONFIG.read_text()
    secrets = (CONFIG.parent / "secrets").stat()
    assert (secrets.st_gid, stat.S_IMODE(secrets.st_mode)) == (account.pw_gid, 0o750)
    assert "home = /usr/bin\n" in (PREFIX / "pyvenv.cfg").read_text()

    # Run the unit's command as the unit would.
    unit = _unit(UNIT)
    assert unit["User"] == "hpcportal" and unit["ExecStart"].startswith(f"{PREFIX}/bin/hpcportal ")
    assert unit.get("NoNewPrivileges", "no") == "no", "sudo to the helper needs setuid"
    port = free_port()
    env = {
        "PATH": PATH,
        "LANG": "C.UTF-8",
        **unit["Environment"],
        "HPCPORTAL_SLURM_CONF": slurm_conf,
        "HPCPORTAL_PORT": str(port),
    }
    log = tmp_path / "portal.log"
    portal: subprocess.Popen[str] | None = None
    nginx: subprocess.Popen[str] | None = None
    try:
        with log.open("w") as out:
            portal = subprocess.Popen(
                ["runuser", "-u", unit["User"], "--", *shlex.split(unit["ExecStart"])],
                env=env,
                cwd=unit["WorkingDirectory"],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        _wait_ready(f"http://127.0.0.1:{port}", portal, log)

        # Debian's nginx with the rendered site and a certificate made here.
        front = tmp_path / "nginx"
        front.mkdir()
        cert, key = self_signed(front)
        tls_port, http_port = free_port(), free_port()
        site = front / "hpcportal.conf"
        rendered = _run(
            [f"{PREFIX}/bin/hpcportal", "config", "render-frontend", "--kind", "nginx",
             "--server-name", "portal.test", "--cert", str(cert), "--key", str(key),
             "--upstream", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{tls_port}",
             "--redirect-from", f"127.0.0.1:{http_port}", "--output", str(site)],
            env={"PATH": PATH, **unit["Environment"]},
        )  # fmt: skip
        assert rendered.returncode == 0, rendered.stderr
        argv = nginx_argv(nginx_main(site, front), front)
        checked = _run([*argv, "-t"])
        assert checked.returncode == 0, checked.stderr
        nginx = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"https://127.0.0.1:{tls_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
                break
            except OSError:
                assert nginx.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        assert _alpn(tls_port, cert) == "h2", "HTTP/2 is offered over TLS"
        redirect = httpx.get(f"http://127.0.0.1:{http_port}/login")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://127.0.0.1/login"

        with _tls_client(url, cert) as client:
            assert client.get("/static/css/app.css").status_code == 200
            assert client.get("/login").status_code == 200
            login = client.post(
                "/api/v1/auth/token", data={"username": "alice", "password": "alice-demo"}
            )
            assert login.status_code == 200, login.text
            alice = {"Authorization": f"Bearer {login.json()['access_token']}"}
            name = f"site-install-{uuid.uuid4().hex[:8]}"
            script = "#!/bin/bash\nsleep 120\n"
            submitted = client.post(
                "/api/v1/jobs", json={"script": script, "name": name}, headers=alice
            )
            assert submitted.status_code in (200, 201), submitted.text
            job_id = str(submitted.json()["job_id"])
        # The live socket through nginx: the WebSocket upgrade is passed on.
        with connect(
            f"wss://127.0.0.1:{tls_port}/api/v1/ws",
            additional_headers=alice,
            ssl=ssl.create_default_context(cafile=cert),
            proxy=None,
            open_timeout=30,
        ) as live:
            assert json.loads(live.recv(timeout=30))["type"] == "hello"
        try:
            queued = slurm_cli.run(slurm_conf, ["squeue", "-h", "-j", job_id, "-o", "%u %j"])
            assert queued.split() == ["alice", name]
        finally:
            slurm_cli.run(slurm_conf, ["scancel", job_id])
    finally:
        _stop(nginx)
        _stop(portal)
    run_seconds = time.monotonic() - started - install_seconds

    # Remove: the program, helper and rule go; the state and the settings stay.
    removed = _dpkg("-r", "hpcportal")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
    assert not (PREFIX / "bin" / "hpcportal").exists()
    assert not HELPER.exists() and not SUDOERS.exists()
    assert _run(["visudo", "-c"]).returncode == 0
    assert (STATE / "hpcportal.db").is_file() or any(STATE.glob("*.db"))
    assert CONFIG.is_file()
    status = _run(["dpkg-query", "-W", "-f=${Status}", "hpcportal"]).stdout
    assert status == "deinstall ok config-files"

    # Purge (documented): state and settings go too; the service account stays.
    purged = _dpkg("--purge", "hpcportal")
    assert purged.returncode == 0, purged.stderr
    assert not STATE.exists() and not CONFIG.parent.exists()
    pwd.getpwnam("hpcportal")
    print(f"installed in {install_seconds:.0f} s, served and used in {run_seconds:.0f} s")
