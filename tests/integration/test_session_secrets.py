"""What another user can get of alice's running sessions: nothing usable.

alice runs a desktop (VNC) and JupyterLab through the portal; bob, a real Unix user
of the cluster, runs commands (``runuser -u bob``) the way the security review did.
He reads the portal's database rows (a copy of the SQLite file he can read, as a
backup would be; the PostgreSQL rows with the database's credentials), every
``/proc`` entry of alice's processes, and alice's session folder; then he connects
straight to the sessions' ports with the password and the token *given to him by
this test*. None of it opens anything: the rows hold sealed values, ``/proc`` and
the folder show no secret, and the servers refuse him at TLS because he cannot
present the portal's certificate. Each check has a control that shows it can fail:
the same probe run with the portal's certificate gets in, the same ``/proc`` read as
root finds the token, the values bob read are tried as passwords past TLS.

The module runs once with a SQLite and once with a PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.rfb_client import AuthenticationFailed, RFBClient, WebSocketTransport
from tests.integration.session_access import portal_context, stored_secrets

pytestmark = pytest.mark.integration

READY_SECONDS = 120
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
SESSIONS = Path("/home/alice/hpcportal/sessions")
POSTGRES_ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def as_bob(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run a command as bob (secrets go on stdin: argv is public in /proc)."""
    return subprocess.run(
        [RUNUSER, "-u", "bob", "--", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/home/bob"},
    )


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A new PostgreSQL database for the module, dropped afterwards."""
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    name = f"hpcportal_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at HPCPORTAL_TEST_POSTGRES_URL is not reachable: {exc}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def portal(request: pytest.FixtureRequest, make_portal: PortalFactory) -> Iterator[RunningPortal]:
    tmp = make_portal.dir()
    overrides: dict[str, object] = {"session_start_timeout": 90.0}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
        overrides["secret_key_file"] = tmp / "keys" / "portal.key"
    with make_portal.run(tmp=tmp, **overrides) as running:
        yield running
        running.services.database.dispose()


def _launch(portal: RunningPortal, headers: dict[str, str], app_id: str, **options: Any) -> str:
    with portal.client(headers=headers) as c:
        r = c.post("/api/v1/sessions", json={"app_id": app_id, "options": options})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _ready(portal: RunningPortal, headers: dict[str, str], sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_SECONDS
    with portal.client(headers=headers) as c:
        while True:
            body: dict[str, Any] = c.get(f"/api/v1/sessions/{sid}").json()
            if body["ready"] or body["state"] in ("failed", "completed", "cancelled"):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.5)


def _vnc_through_portal(portal: RunningPortal, headers: dict[str, str], sid: str) -> None:
    url = portal.url.replace("http://", "ws://") + f"/api/v1/sessions/{sid}/vnc"
    with RFBClient(WebSocketTransport(url, headers={"Origin": portal.url, **headers})) as vnc:
        vnc.handshake(password=None)
        vnc.read_full_frame(timeout=20)
        assert vnc.distinct_colours() > 2


@pytest.fixture(scope="module")
def sessions(portal: RunningPortal, alice: dict[str, str]) -> Iterator[dict[str, str]]:
    """alice's desktop and JupyterLab, ready, the desktop used once through the portal."""
    launched: dict[str, str] = {}
    try:
        launched["desktop"] = _launch(portal, alice, "desktop", resolution="1024x768", memory_gb=1)
        launched["jupyter"] = _launch(portal, alice, "jupyter", memory_gb=1)
        for sid in launched.values():
            body = _ready(portal, alice, sid)
            assert body["ready"], body
        _vnc_through_portal(portal, alice, launched["desktop"])
        yield launched
    finally:
        with portal.client(headers=alice) as c:
            for sid in launched.values():
                c.delete(f"/api/v1/sessions/{sid}")


SECRET_KEYS = frozenset({"password", "view_password", "token"})


def _known_secrets(portal: RunningPortal, sessions: dict[str, str]) -> set[str]:
    """Every secret of alice's sessions that ever existed: the current ones (opened
    by the portal's key) and those the jobs wrote into connection.json."""
    found: set[str] = set()
    for sid in sessions.values():
        found.update(s for s in stored_secrets(portal, sid) if s)
        connection = json.loads((SESSIONS / sid / "connection.json").read_text())
        found.update(v for k, v in connection.items() if k in SECRET_KEYS)
    assert len(found) >= 5  # two VNC passwords, rotated once and twice, and the token
    return found


def _connection(sid: str) -> dict[str, Any]:
    return dict(json.loads((SESSIONS / sid / "connection.json").read_text()))


# --- the database --------------------------------------------------------------------------

SELECT = "select id, username, host, port, secret, view_secret from interactive_sessions"
AS_JSON = (
    "select row_to_json(t) from "
    "(select id, username, host, port, secret, view_secret from interactive_sessions) t;\n"
)


def _rows_bob_reads(portal: RunningPortal) -> list[dict[str, Any]]:
    """The session rows as bob reads them: from a readable copy of the SQLite file (what
    a world-readable database or backup gives), or from PostgreSQL with its login."""
    url = make_url(portal.settings.database_url)
    if url.get_backend_name() == "sqlite":
        shared = Path(tempfile.mkdtemp(prefix="hpcportal-backup-"))  # pytest's is 0700
        try:
            copy = shared / "hpcportal.db"
            with sqlite3.connect(str(url.database)) as source, sqlite3.connect(copy) as target:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")  # no -shm for bob to make
            shared.chmod(0o755)
            copy.chmod(0o644)
            out = as_bob(["sqlite3", "-json", str(copy), SELECT])
        finally:
            shutil.rmtree(shared)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout or "[]"))
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    out = as_bob(["psql", "-X", "-At", "-f", "-", libpq], stdin=AS_JSON)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_bob_reads_no_usable_secret_from_the_database(
    portal: RunningPortal, sessions: dict[str, str]
) -> None:
    rows = {r["id"]: r for r in _rows_bob_reads(portal)}
    assert set(sessions.values()) <= set(rows), "bob did not get to read the rows at all"
    known = _known_secrets(portal, sessions)
    dump = json.dumps(list(rows.values()))
    for secret in known:
        assert secret not in dump
    desktop, jupyter = rows[sessions["desktop"]], rows[sessions["jupyter"]]
    values = [desktop["secret"], desktop["view_secret"], jupyter["secret"]]
    assert all(str(v).startswith("v1:") for v in values), values
    # Tried as they are, even past TLS with the portal's own certificate: nothing opens.
    port = _connection(sessions["desktop"])["port"]
    tls = portal_context(portal, sessions["desktop"])
    for value in values:
        transport = WebSocketTransport(f"wss://127.0.0.1:{port}/", tls=tls)
        with RFBClient(transport) as raw, pytest.raises(AuthenticationFailed):
            raw.handshake(password=value)
    web = _connection(sessions["jupyter"])
    status = f"https://127.0.0.1:{web['port']}{web['base_url']}api/status"
    with httpx.Client(verify=portal_context(portal, sessions["jupyter"]), timeout=30) as http:
        for value in values:
            assert http.get(status, headers={"Authorization": f"token {value}"}).status_code == 403
        # Control: the real token, by the portal's way in, is answered.
        real = {"Authorization": f"token {stored_secrets(portal, sessions['jupyter'])[0]}"}
        assert http.get(status, headers=real).status_code == 200


# --- /proc -----------------------------------------------------------------------------------

PROC_READER = r"""
import json, os, sys
uid = int(sys.argv[1])
seen, environ_read, text = 0, 0, []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        if os.stat(f"/proc/{pid}").st_uid != uid:
            continue
        seen += 1
        for name in ("cmdline", "environ", "comm", "status"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    text.append(f.read().decode("utf-8", "replace"))
                environ_read += name == "environ"
            except OSError:
                pass
    except OSError:
        pass
print(json.dumps({"seen": seen, "environ_read": environ_read, "text": "\n".join(text)}))
"""


def test_bob_finds_no_secret_in_proc(portal: RunningPortal, sessions: dict[str, str]) -> None:
    known = _known_secrets(portal, sessions)
    alice = pwd.getpwnam("alice").pw_uid
    out = as_bob(["python3", "-c", PROC_READER, str(alice)])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["seen"] >= 5, "bob saw none of alice's session processes"
    assert report["environ_read"] == 0
    assert "Xvnc" in report["text"] and "websockify" in report["text"]
    for secret in known:
        assert secret not in report["text"]
    # Control: the token is in Jupyter's environment, which root (not bob) can read.
    token = _connection(sessions["jupyter"])["token"]
    as_root = subprocess.run(
        ["python3", "-c", PROC_READER, str(alice)], capture_output=True, text=True, check=True
    )
    assert token in json.loads(as_root.stdout)["text"]


# --- alice's session folder ------------------------------------------------------------------


def test_bob_cannot_read_alices_session_folder(sessions: dict[str, str]) -> None:
    for sid in sessions.values():
        folder = SESSIONS / sid
        listing = as_bob(["ls", str(folder)])
        assert listing.returncode != 0 and "Permission denied" in listing.stderr
        for name in ("connection.json", "vnc.passwd", "tls.key", "output.log", "job.sh"):
            read = as_bob(["cat", str(folder / name)])
            assert read.returncode != 0 and read.stdout == "", (name, read)


# --- straight to the sessions' ports ---------------------------------------------------------

PORT_PROBE = r"""
import json, os, socket, ssl, subprocess, sys, tempfile
ask = json.load(sys.stdin)
port, request = ask["port"], ask["request"].encode()


def talk(wrap):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            sock = wrap(raw)
            sock.sendall(request)
            return sock.recv(200).decode("latin-1")
    except (OSError, ssl.SSLError) as exc:
        return f"refused: {type(exc).__name__}: {exc}"


def context(cert=None, key=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE  # bob does not care who the server is
    if cert:
        c.load_cert_chain(cert, key)
    return c


found = {"plain": talk(lambda s: s)}
found["tls"] = talk(lambda s: context().wrap_socket(s))
if ask.get("cert"):
    found["portal_cert"] = talk(lambda s: context(ask["cert"], ask["key"]).wrap_socket(s))
else:
    folder = tempfile.mkdtemp()
    cert, key = f"{folder}/bob.crt", f"{folder}/bob.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=hpcportal node client", "-keyout", key,
         "-out", cert], check=True, capture_output=True)
    found["own_cert"] = talk(lambda s: context(cert, key).wrap_socket(s))
print(json.dumps(found))
"""


def _probe(ask: dict[str, Any], *, bob: bool) -> dict[str, str]:
    argv = ["python3", "-c", PORT_PROBE]
    if bob:
        out = as_bob(argv, stdin=json.dumps(ask))
    else:
        out = subprocess.run(argv, input=json.dumps(ask), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _upgrade(path: str, headers: str = "") -> str:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n{headers}\r\n"
    )


def test_bob_with_the_password_is_refused_by_tls(
    portal: RunningPortal, sessions: dict[str, str]
) -> None:
    """bob knows the port (``ss`` shows it) and, here, the password and the token; he
    tries plain, TLS, and TLS with a certificate of his own. The portal's certificate
    (the control, run as root) is what gets an answer."""
    desktop, web = _connection(sessions["desktop"]), _connection(sessions["jupyter"])
    token = stored_secrets(portal, sessions["jupyter"])[0]
    identity = Path(portal.settings.secret_key_path).parent
    portal_cert = {
        "cert": str(identity / "node-client.crt"),
        "key": str(identity / "node-client.key"),
    }
    vnc = {"port": desktop["port"], "request": _upgrade("/"), "password": desktop["password"]}
    lab = {
        "port": web["port"],
        "request": f"GET {web['base_url']}api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: token {token}\r\nConnection: close\r\n\r\n",
    }
    for ask, answered in ((vnc, "HTTP/1.1 101"), (lab, "HTTP/1.1 200")):
        tried = _probe(ask, bob=True)
        assert set(tried) == {"plain", "tls", "own_cert"}
        for how, reply in tried.items():
            assert not reply.startswith("HTTP/1.1 1") and not reply.startswith("HTTP/1.1 2"), (
                how,
                reply,
            )
            assert "RFB" not in reply
        control = _probe({**ask, **portal_cert}, bob=False)
        assert control["portal_cert"].startswith(answered), control
        assert not control["plain"].startswith(answered)


def test_alice_still_works_through_the_portal(
    portal: RunningPortal, alice: dict[str, str], sessions: dict[str, str]
) -> None:
    _vnc_through_portal(portal, alice, sessions["desktop"])
    with portal.client(headers=alice) as c:
        status = c.get(f"/node/{sessions['jupyter']}/api/status")
    assert status.status_code == 200 and "started" in status.json()
