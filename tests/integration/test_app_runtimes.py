"""The interactive apps' job scripts, for real: each shipped app runs as a Slurm job of
alice on the viz partition, is reached the way the portal reaches it (websockify with
VNC authentication, or HTTP and WebSockets with Jupyter's token), then is cancelled,
and must leave no process behind.

The scripts are rendered as the portal renders them (``template_render``) and
submitted with sbatch as alice, with the session folder as working directory and
output.log there. Every node of the dev cluster is this host, so a node's address is
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.sync.client import connect as ws_connect

import hpcportal
from hpcportal.services.node_tls import (
    ClientIdentity,
    NodeTLS,
    _new_client_identity,
    server_cert_pem,
)
from hpcportal.services.template_render import _render, compile_script
from tests.integration.rfb_client import AuthenticationFailed, RFBClient, connect_websocket

APPS_DIR = Path(hpcportal.__file__).resolve().parent / "apps"
SBATCH_FIELDS = {"partition", "hours", "cpus", "memory_gb", "gpus"}
USER = "alice"
SESSIONS_ROOT = Path(f"/home/{USER}/.hpcportal-app-tests")
NODE_ADDRESS = "127.0.0.1"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
#: Program names that must not outlive a cancelled session.
SESSION_PROGRAMS = {"Xvnc", "websockify", "jwm", "xterm", "mousepad", "dbus-daemon", "jupyter"}
VNC_KEYS = {"type", "node", "port", "vnc_socket", "display", "password", "view_password"}
VNC_KEYS |= {"passwd_file", "tls_cert"}


def run_as(user: str, argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> str:
    proc = subprocess.run(
        [RUNUSER, "-u", user, "--", *argv],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert proc.returncode == 0, f"{argv} as {user}: {proc.stderr}"
    return proc.stdout


def portal_env(slurm_conf: str) -> dict[str, str]:
    """The environment the portal's runas helper gives sbatch."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": f"/home/{USER}",
        "USER": USER,
        "LOGNAME": USER,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "SLURM_CONF": slurm_conf,
    }


def render_app(app_id: str, session_id: str, session_dir: Path, client_cert: str) -> str:
    meta = yaml.safe_load((APPS_DIR / app_id / "app.yaml").read_text())
    values: dict[str, Any] = {
        "session_id": session_id,
        "session_dir": str(session_dir),
        "connection_file": f"{session_dir}/connection.json",
        "base_url": f"/node/{session_id}/",
        "portal_client_cert": client_cert,
    }
    values |= {f["name"]: f["default"] for f in meta["form"] if f["name"] not in SBATCH_FIELDS}
    values |= meta["settings"]
    return _render(compile_script((APPS_DIR / app_id / "script.sh.j2").read_text()), values)


@dataclass
class Process:
    pid: int
    name: str
    cmdline: str


def session_processes(job_id: int, session_dir: Path) -> list[Process]:
    """Live processes of the job: its SLURM_JOB_ID in their environment, or the session
    folder on their command line (we run as root, so every /proc entry is readable)."""
    marker = f"SLURM_JOB_ID={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if re.search(r"^State:\s+Z", status, re.M):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            name = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in environ or str(session_dir) in cmdline:
            found.append(Process(int(entry.name), name, cmdline))
    return found


def command_lines_with(secret: str) -> list[str]:
    """Command lines of any process on the host that show ``secret``."""
    hits = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if secret in cmdline:
                hits.append(cmdline)
    return hits


@dataclass
class Session:
    app_id: str
    directory: Path
    job_id: int
    env: dict[str, str]
    portal: NodeTLS
    cancelled: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> ssl.SSLContext:
        """The portal's client certificate; the session's own server certificate only."""
        pem = server_cert_pem(self.info.get("tls_cert"))
        assert pem is not None, f"no usable tls_cert in {self.info}"
        return self.portal.context(pem)

    @property
    def connection_file(self) -> Path:
        return self.directory / "connection.json"

    def log(self) -> str:
        try:
            return (self.directory / "output.log").read_text()[-3000:]
        except OSError:
            return "(no output.log)"

    def job_state(self) -> str:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(self.job_id), "-o", "%T"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()

    def connection(self, timeout: float = 240.0) -> dict[str, Any]:
        """connection.json once the job wrote it (the job may first wait for the node)."""
        deadline = time.monotonic() + timeout
        while not self.connection_file.exists():
            state = self.job_state()
            assert state in ("PENDING", "CONFIGURING", "RUNNING"), (
                f"job {self.job_id} is {state or 'gone'} without a connection file:\n{self.log()}"
            )
            assert time.monotonic() < deadline, f"no connection file in {timeout}s:\n{self.log()}"
            time.sleep(0.5)
        self.info = json.loads(self.connection_file.read_text())
        return self.info

    def cancel_and_check_clean(self, within: float = 15.0) -> None:
        """scancel, then every process of the session must be gone within ``within`` s."""
        subprocess.run(["scancel", str(self.job_id)], env=self.env, check=True)
        self.cancelled = True
        deadline = time.monotonic() + within
        left = session_processes(self.job_id, self.directory)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = session_processes(self.job_id, self.directory)
        assert not left, f"left after scancel: {left}\n{self.log()}"
        names = {p.name for p in left}
        assert not names & SESSION_PROGRAMS


@pytest.fixture(scope="module")
def portal_tls(tmp_path_factory: pytest.TempPathFactory) -> NodeTLS:
    """The client identity a portal would have (its key and certificate, 0600)."""
    return NodeTLS(ClientIdentity.in_folder(tmp_path_factory.mktemp("portal") / "secrets"))


def untrusted_context(info: dict[str, Any]) -> ssl.SSLContext:
    """TLS that trusts the session's server but presents a certificate of its own
    (not the portal's), as anyone on the cluster could make."""
    key_pem, cert_pem = _new_client_identity()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=server_cert_pem(info["tls_cert"]))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "other.key").write_bytes(key_pem)
        (Path(folder) / "other.crt").write_bytes(cert_pem)
        context.load_cert_chain(Path(folder) / "other.crt", Path(folder) / "other.key")
    return context


@pytest.fixture
def start_app(slurm_env: dict[str, str], portal_tls: NodeTLS) -> Iterator[Any]:
    """``start_app(app_id)`` submits the app as alice; cancelled and removed afterwards."""
    env = portal_env(slurm_env["SLURM_CONF"])
    sessions: list[Session] = []
    directories: list[Path] = []
    run_as(USER, ["mkdir", "-p", "-m", "700", str(SESSIONS_ROOT)])

    def start(app_id: str) -> Session:
        session_id = secrets.token_hex(8)
        directory = SESSIONS_ROOT / session_id
        run_as(USER, ["mkdir", "-m", "700", str(directory)])
        directories.append(directory)
        script = render_app(app_id, session_id, directory, portal_tls.identity.cert_base64)
        out = run_as(
            USER,
            [
                "sbatch",
                "--parsable",
                "--export=ALL",
                "--partition=viz",
                "--time=15",
                "--cpus-per-task=1",
                f"--job-name=app-test-{app_id}",
                f"--output={directory}/output.log",
                f"--chdir={directory}",
            ],
            env=env,
            stdin=script,
        )
        session = Session(app_id, directory, int(out.strip().split(";")[0]), env, portal_tls)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        if not session.cancelled:
            subprocess.run(["scancel", str(session.job_id)], env=env, check=False)
    for session in sessions:
        deadline = time.monotonic() + 20
        while session.job_state() and time.monotonic() < deadline:
            time.sleep(0.5)
    for directory in directories:
        run_as(USER, ["rm", "-rf", str(directory)])


# --- VNC apps ----------------------------------------------------------------------------


def pointer(display: int, xauthority: str, user: str = USER) -> tuple[int, int] | None:
    """Where the X pointer is, asked as ``user`` with the session's cookie file."""
    proc = subprocess.run(
        [RUNUSER, "-u", user, "--", "xdotool", "getmouselocation"],
        env={"PATH": "/usr/bin:/bin", "DISPLAY": f":{display}", "XAUTHORITY": xauthority},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    match = re.match(r"x:(\d+) y:(\d+)", proc.stdout)
    return (int(match[1]), int(match[2])) if match else None


def vnc(session: Session, password: str) -> RFBClient:
    """As the portal connects: TLS with its certificate, then VNC authentication."""
    url = f"wss://{NODE_ADDRESS}:{session.info['port']}/"
    # websockify forks and does a TLS handshake per connection: on a loaded 2-core CI
    # machine that once took longer than the client's default 10 s.
    return connect_websocket(url, password=password, tls=session.tls, timeout=30.0)


def screen_with_content(session: Session, minimum: int, timeout: float = 30.0) -> RFBClient:
    """A full-control connection whose screen shows at least ``minimum`` colours (the
    app's window may map a moment after the connection file is written)."""
    deadline = time.monotonic() + timeout
    while True:
        client = vnc(session, session.info["password"])
        client.read_full_frame()
        colours = client.distinct_colours()
        if colours >= minimum or time.monotonic() > deadline:
            assert colours >= minimum, f"only {colours} colours on the screen"
            return client
        client.close()
        time.sleep(1)


def rotate_password(passwd_file: str, password: str, view_password: str) -> None:
    """Rewrite the rfbauth file as the user, atomically, as the portal would."""
    run_as(
        USER,
        [
            "bash",
            "-c",
            'umask 077; vncpasswd -f >"$1.new" && mv -f "$1.new" "$1"',
            "rotate",
            passwd_file,
        ],
        stdin=f"{password}\n{view_password}\n",
    )


@pytest.mark.parametrize(
    ("app_id", "resolution"), [("desktop", "1280x800"), ("texteditor", "1280x800")]
)
def test_vnc_app(start_app: Any, app_id: str, resolution: str) -> None:
    session: Session = start_app(app_id)
    info = session.connection()

    # The connection file: the agreed keys, private, and its secrets on no command line.
    assert set(info) == VNC_KEYS
    assert info["type"] == "vnc" and info["node"] == "viz-node001"
    assert stat.S_IMODE(session.connection_file.stat().st_mode) == 0o600
    assert info["passwd_file"] == f"{session.directory}/vnc.passwd"
    assert stat.S_IMODE(os.stat(info["passwd_file"]).st_mode) == 0o600
    for secret in (info["password"], info["view_password"]):
        assert re.fullmatch(r"[A-Za-z0-9]{8}", secret)
        assert not command_lines_with(secret)
    assert info["password"] != info["view_password"]
    assert not (session.directory / "connection.json.tmp").exists()
    assert stat.S_IMODE((session.directory / "tls.key").stat().st_mode) == 0o600
    # Xvnc listens on its own 0600 socket in the session folder, on no TCP port: only
    # websockify (over TLS) is reachable from outside the user's account.
    assert info["vnc_socket"] == f"{session.directory}/vnc.sock"
    vnc_socket = os.stat(info["vnc_socket"])
    assert stat.S_ISSOCK(vnc_socket.st_mode) and stat.S_IMODE(vnc_socket.st_mode) == 0o600
    xvnc = [p.pid for p in session_processes(session.job_id, session.directory) if p.name == "Xvnc"]
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    assert xvnc and not any(f"pid={pid}," in listening for pid in xvnc), listening

    # Only the portal gets past TLS: the password alone opens nothing, over plain
    # WebSocket or over TLS with any other client certificate.
    with pytest.raises((InvalidMessage, ConnectionError, OSError)):
        connect_websocket(f"ws://{NODE_ADDRESS}:{info['port']}/", password=info["password"])
    with pytest.raises((ConnectionClosed, InvalidMessage, ssl.SSLError, ConnectionError, OSError)):
        connect_websocket(
            f"wss://{NODE_ADDRESS}:{info['port']}/",
            password=info["password"],
            tls=untrusted_context(info),
        )

    # The screen: the app is there (an xterm or the editor: far more than one colour).
    client = screen_with_content(session, minimum=20)
    assert f"{client.width}x{client.height}" == resolution
    (session.directory / "screen.png").write_bytes(client.png())

    # Only the user's programs can open the display: bob has no cookie.
    xauthority = f"{session.directory}/Xauthority"
    assert pointer(info["display"], xauthority) is not None
    assert pointer(info["display"], "/nonexistent", user="bob") is None

    # The view-only password gives a connection whose input is ignored.
    viewer = vnc(session, info["view_password"])
    viewer.send_pointer(11, 22)
    viewer.request_update(incremental=True)
    time.sleep(0.5)
    assert pointer(info["display"], xauthority) != (11, 22)
    client.send_pointer(33, 44)
    deadline = time.monotonic() + 5
    while pointer(info["display"], xauthority) != (33, 44):
        assert time.monotonic() < deadline, "full control did not move the pointer"
        time.sleep(0.2)

    # Wrong passwords do not lock the portal out (every client is websockify on localhost).
    for attempt in range(8):
        with pytest.raises(AuthenticationFailed):
            vnc(session, f"wrong{attempt:03d}")
    vnc(session, info["password"]).close()

    # Rotating the full-control password: Xvnc reads the file again for each connection.
    new_password = "Rot4ted1"
    rotate_password(info["passwd_file"], new_password, info["view_password"])
    with pytest.raises(AuthenticationFailed):
        vnc(session, info["password"])
    vnc(session, new_password).close()
    vnc(session, info["view_password"]).close()
    client.request_update(incremental=False)  # connections made before stay up
    client.read_update()
    client.close()
    viewer.close()

    session.cancel_and_check_clean()


def test_closing_the_editor_ends_the_job(start_app: Any) -> None:
    """The session ends with its program (here Ctrl+Q in Mousepad), leaving nothing."""
    session: Session = start_app("texteditor")
    info = session.connection()
    screen_with_content(session, minimum=20).close()
    env = {
        "PATH": "/usr/bin:/bin",
        "DISPLAY": f":{info['display']}",
        "XAUTHORITY": f"{session.directory}/Xauthority",
    }
    run_as(USER, ["xdotool", "search", "--sync", "--class", "mousepad"], env=env)
    run_as(USER, ["xdotool", "key", "--clearmodifiers", "ctrl+q"], env=env)
    deadline = time.monotonic() + 30
    while session.job_state():
        assert time.monotonic() < deadline, f"the job still runs:\n{session.log()}"
        time.sleep(0.5)
    session.cancelled = True
    assert "the editor ended" in session.log()
    assert not session_processes(session.job_id, session.directory)


# --- Jupyter -----------------------------------------------------------------------------


def execute(url: str, headers: dict[str, str], code: str, tls: ssl.SSLContext) -> str:
    """Run ``code`` in a kernel over its channels WebSocket; its stdout."""
    with ws_connect(url, additional_headers=headers, open_timeout=20, ssl=tls) as ws:
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "",
                "session": uuid.uuid4().hex,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False},
            "channel": "shell",
        }
        ws.send(json.dumps(request))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                return str(message["content"]["text"])
            if message["msg_type"] == "error":
                raise AssertionError(message["content"])
    raise AssertionError("no output from the kernel")


def test_jupyter_app(start_app: Any) -> None:
    session: Session = start_app("jupyter")
    info = session.connection()

    assert set(info) == {"type", "node", "port", "token", "base_url", "tls_cert"}
    assert info["type"] == "web" and info["node"] == "viz-node001"
    assert info["base_url"] == f"/node/{session.directory.name}/"
    assert re.fullmatch(r"[0-9a-f]{32,}", info["token"])
    assert stat.S_IMODE(session.connection_file.stat().st_mode) == 0o600
    assert not command_lines_with(info["token"])

    # As the portal's proxy sends requests: mutual TLS, the token header, Host = the
    # node's address.
    origin = f"https://{NODE_ADDRESS}:{info['port']}"
    base = f"{origin}{info['base_url']}"
    auth = {"Authorization": f"token {info['token']}", "Host": f"{NODE_ADDRESS}:{info['port']}"}
    with httpx.Client(timeout=30, verify=session.tls) as http:
        assert http.get(f"{base}api/status", headers=auth).status_code == 200
    with httpx.Client(timeout=30, verify=session.tls) as http:
        assert http.get(f"{base}api/status").status_code == 403
        wrong = {"Authorization": "token " + "0" * 64}
        assert http.get(f"{base}api/status", headers=wrong).status_code == 403
    # The token without the portal's certificate: no answer at all.
    plain = f"http://{NODE_ADDRESS}:{info['port']}{info['base_url']}api/status"
    with httpx.Client(timeout=30) as http, pytest.raises(httpx.HTTPError):
        assert http.get(plain, headers=auth).status_code != 200
    other = untrusted_context(info)
    with httpx.Client(timeout=30, verify=other) as http, pytest.raises(httpx.HTTPError):
        assert http.get(f"{base}api/status", headers=auth).status_code != 200
    with httpx.Client(timeout=30, verify=session.tls) as http:
        lab = http.get(f"{base}lab", headers=auth)
        assert lab.status_code == 200 and "JupyterLab" in lab.text
        # A browser's POST through the proxy: the portal's Origin, no XSRF header. The
        # token makes it authenticated, which is what Jupyter checks.
        created = http.post(
            f"{base}api/contents",
            headers={**auth, "Origin": "https://portal.example"},
            json={"type": "notebook"},
        )
        assert created.status_code == 201, created.text
        path = created.json()["path"]
        assert http.delete(f"{base}api/contents/{path}", headers=auth).status_code == 204
        kernel = http.post(f"{base}api/kernels", headers=auth, json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]

    # A kernel's WebSocket with the Origin the proxy sets: the code runs as alice.
    channels = (
        f"wss://{NODE_ADDRESS}:{info['port']}{info['base_url']}api/kernels/{kernel_id}/channels"
    )
    ws_headers = {"Authorization": auth["Authorization"], "Origin": origin}
    output = execute(channels, ws_headers, "import os; print(os.getuid(), 6 * 7)", session.tls)
    assert output.split() == [run_as(USER, ["id", "-u"]).strip(), "42"]

    session.cancel_and_check_clean()
