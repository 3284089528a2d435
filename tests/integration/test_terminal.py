"""The terminal in the browser, at the API and WebSocket level, on the dev cluster.

A real portal starts real login shells as alice and bob through the run-as helper
(runuser here; the service-account portal uses sudo). The tests type into the
shell and read what it prints: who it runs as, its groups, its folder, its size; that
bob cannot attach to alice's shell; that a foreign Origin is refused; that a folder
alice may not enter is refused by the system; reconnecting; the idle and reattach
time-outs (the shell and its jobs are hung up); switching the terminal off; the
audit trail. The browser test (test_browser_terminal.py) does the same by typing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from hpcportal.db.models import AuditEntry
from hpcportal.runas.install import ensure_service_account, install
from tests.integration.portal_server import RunningPortal
from tests.integration.service_portal import SERVICE_ACCOUNT

TIMEOUT = 20.0


@contextmanager
def changed(portal: RunningPortal, **values: Any) -> Iterator[None]:
    """Run with some settings changed on the running portal (they are read per use)."""
    before = {name: getattr(portal.settings, name) for name in values}
    for name, value in values.items():
        setattr(portal.settings, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(portal.settings, name, value)


class Shell:
    """One attached socket: type into it, wait for what the terminal prints."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = b""
        self.controls: list[dict[str, Any]] = []

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def resize(self, rows: int, cols: int) -> None:
        self.ws.send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    def _read_one(self, timeout: float) -> None:
        message = self.ws.recv(timeout=timeout)
        if isinstance(message, bytes):
            self.output += message
        else:
            self.controls.append(json.loads(message))

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait until the output (ANSI codes and all) matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output.decode("utf-8", "replace"), re.S)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.output[-2000:]!r}")
            self._read_one(left)

    def run(self, command: str, timeout: float = TIMEOUT) -> str:
        """Type ``command`` and return what it printed between two unique markers."""
        mark = uuid.uuid4().hex[:8]
        self.type(f"echo B{mark}; {command}; echo E{mark}\r")
        found = self.expect(rf"[\r\n]B{mark}\r?\n(.*?)E{mark}", timeout)
        return found.group(1).replace("\r", "")

    def closed(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Read until the server's ``closed`` message; return it."""
        deadline = time.monotonic() + timeout
        while not any(c["type"] == "closed" for c in self.controls):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no 'closed' message: {self.controls}")
            try:
                self._read_one(left)
            except ConnectionClosed:
                break
        return next(c for c in self.controls if c["type"] == "closed")


def ws_url(portal: RunningPortal, terminal_id: str) -> str:
    return portal.url.replace("http", "ws") + f"/api/v1/terminal/sessions/{terminal_id}/ws"


def open_terminal(portal: RunningPortal, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    with portal.client() as c:
        r = c.post("/api/v1/terminal/sessions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


@contextmanager
def attached(
    portal: RunningPortal, headers: dict[str, str], terminal_id: str, origin: str | None = None
) -> Iterator[Shell]:
    extra = {**headers, "Origin": origin or portal.url}
    with connect(ws_url(portal, terminal_id), additional_headers=extra) as ws:
        shell = Shell(ws)
        shell._read_one(TIMEOUT)
        assert shell.controls and shell.controls[0]["type"] == "attached", shell.controls
        yield shell


def mine(portal: RunningPortal, headers: dict[str, str]) -> list[str]:
    with portal.client() as c:
        r = c.get("/api/v1/terminal/sessions", headers=headers)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()]


def audit_entries(portal: RunningPortal, target: str) -> list[AuditEntry]:
    with portal.services.database.session() as session:
        query = select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id)
        return list(session.scalars(query))


def wait_until(check: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_alice_gets_her_own_login_shell(
    portal: RunningPortal, alice: dict[str, str], conf_env: dict[str, str]
) -> None:
    made = open_terminal(portal, alice)
    assert made["cwd"] == "/home/alice" and made["shell"] == "/bin/bash"
    with attached(portal, alice, made["id"]) as shell:
        assert shell.run("id -un").strip() == "alice"
        groups = subprocess.run(["id", "-G", "alice"], capture_output=True, text=True, check=True)
        assert shell.run("id -G").split() == groups.stdout.split()
        assert shell.run("pwd").strip() == "/home/alice"
        assert "JOBID" in shell.run("squeue --me")
        environment = shell.run("env")
        assert "HPCPORTAL" not in environment and "JWT" not in environment
        assert "SLURM_CONF=" + conf_env["SLURM_CONF"] in environment
        assert shell.run("shopt -q login_shell && echo login").strip() == "login"
        # The shell holds its terminal and nothing of the portal's (pipes, sockets).
        held = shell.run('for f in /proc/$$/fd/*; do readlink "$f"; done | sort -u').split()
        assert len(held) == 1 and re.fullmatch(r"/dev/pts/\d+", held[0]), held
    with portal.client() as c:
        assert c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice).status_code == 204
    assert made["id"] not in mine(portal, alice)


def test_bob_cannot_attach_to_alices_terminal(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str]
) -> None:
    made = open_terminal(portal, alice)
    try:
        with pytest.raises(InvalidStatus) as refused, attached(portal, bob, made["id"]):
            pass
        assert refused.value.response.status_code == 404
        assert made["id"] not in mine(portal, bob)
        with portal.client() as c:
            r = c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=bob)
        assert r.status_code == 404
        refusals = [
            e for e in audit_entries(portal, f"terminal:{made['id']}") if e.result == "refused"
        ]
        assert [(e.username, e.action) for e in refusals] == [("bob", "terminal.attach")]
        with attached(portal, alice, made["id"]) as shell:  # still alice's, still alive
            assert shell.run("id -un").strip() == "alice"
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


def test_a_foreign_origin_is_refused(portal: RunningPortal, alice: dict[str, str]) -> None:
    made = open_terminal(portal, alice)
    try:
        evil = "http://evil.example.com"
        with pytest.raises(InvalidStatus) as refused, attached(portal, alice, made["id"], evil):
            pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as anonymous, attached(portal, {}, made["id"]):
            pass
        assert anonymous.value.response.status_code == 401
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


@pytest.fixture
def bobs_private_folder() -> Iterator[Path]:
    folder = Path("/home/bob") / f"private-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o700)
    shutil.chown(folder, "bob", "research")
    folder.chmod(0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_the_folder_cannot_escape_to_one_alice_cannot_enter(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], bobs_private_folder: Path
) -> None:
    with portal.client() as c:
        for folder, status in [
            (str(bobs_private_folder), 403),
            (f"/home/alice/../bob/{bobs_private_folder.name}", 403),
            ("/root", 403),
            ("/home/alice/no-such-folder", 404),
            ("/etc/passwd", 404),
            ("home/alice", 422),
        ]:
            r = c.post("/api/v1/terminal/sessions", json={"cwd": folder}, headers=alice)
            assert r.status_code == status, (folder, r.text)
            assert "Traceback" not in r.text
    assert mine(portal, alice) == []
    made = open_terminal(portal, bob, cwd=str(bobs_private_folder))  # bob may
    try:
        assert made["cwd"] == str(bobs_private_folder)
        with attached(portal, bob, made["id"]) as shell:
            assert shell.run("pwd").strip() == str(bobs_private_folder)
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=bob)


def test_resize_reaches_the_shell(portal: RunningPortal, alice: dict[str, str]) -> None:
    made = open_terminal(portal, alice, rows=30, cols=100, cwd="/tmp")
    try:
        with attached(portal, alice, made["id"]) as shell:
            assert shell.run("stty size").strip() == "30 100"
            shell.resize(41, 133)
            time.sleep(0.3)
            assert shell.run("stty size").strip() == "41 133"
            assert shell.run("pwd").strip() == "/tmp"
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


def test_reconnect_reattaches_to_the_same_shell(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    made = open_terminal(portal, alice)
    try:
        with attached(portal, alice, made["id"]) as shell:
            shell.run("export MARK=still-the-same-shell")
            pid = shell.run("echo $$").strip()
        time.sleep(0.5)  # the browser is gone; the shell waits for it
        with attached(portal, alice, made["id"]) as shell:
            assert b"still-the-same-shell" in shell.output or shell.expect("still-the-same")
            assert shell.run("echo $MARK").strip() == "still-the-same-shell"
            assert shell.run("echo $$").strip() == pid
            with attached(portal, alice, made["id"]) as second:  # another tab takes over
                assert shell.closed()["reason"] == "taken"
                assert second.run("echo $$").strip() == pid
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


def test_a_shell_nobody_reattaches_is_hung_up(portal: RunningPortal, alice: dict[str, str]) -> None:
    with changed(portal, terminal_reconnect_seconds=1.5):
        made = open_terminal(portal, alice)
        with attached(portal, alice, made["id"]) as shell:
            sleeper = shell.run("sleep 600 & echo $!").split()[-1]
        wait_until(lambda: made["id"] not in mine(portal, alice), "the shell to be closed")
    wait_until(lambda: not Path(f"/proc/{sleeper}").exists(), "the shell's job to end")
    assert sleeper.isdigit() and Path(f"/proc/{sleeper}").exists() is False

    def closing() -> list[AuditEntry]:
        entries = audit_entries(portal, f"terminal:{made['id']}")
        return [e for e in entries if e.action == "terminal.close"]

    wait_until(lambda: bool(closing()), "the audit entry")
    assert len(closing()) == 1 and (closing()[0].detail or "").startswith("detached")


def test_an_idle_terminal_is_closed(portal: RunningPortal, alice: dict[str, str]) -> None:
    with changed(portal, terminal_idle_seconds=2.0):
        made = open_terminal(portal, alice)
        with attached(portal, alice, made["id"]) as shell:
            sleeper = shell.run("sleep 600 & echo $!").split()[-1]
            started = time.monotonic()
            assert shell.closed(timeout=15)["reason"] == "idle"
            assert time.monotonic() - started >= 1.5
    assert sleeper.isdigit()
    wait_until(lambda: not Path(f"/proc/{sleeper}").exists(), "the shell's job to end")
    assert made["id"] not in mine(portal, alice)


def test_input_keeps_a_terminal_open(portal: RunningPortal, alice: dict[str, str]) -> None:
    with changed(portal, terminal_idle_seconds=2.0):
        made = open_terminal(portal, alice)
        try:
            with attached(portal, alice, made["id"]) as shell:
                for _ in range(4):
                    shell.run("true")
                    time.sleep(0.8)
                assert made["id"] in mine(portal, alice)
        finally:
            with portal.client() as c:
                c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


def test_switched_off_the_page_api_and_socket_say_so(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    made = open_terminal(portal, alice)
    with changed(portal, terminal_enabled=False):
        with portal.client() as c:
            r = c.post("/api/v1/terminal/sessions", json={}, headers=alice)
            assert r.status_code == 403 and r.json()["code"] == "terminal_disabled"
            assert "switched off" in r.json()["detail"]
            assert c.get("/api/v1/terminal/sessions", headers=alice).status_code == 403
            cookie = {"Cookie": f"{portal.settings.cookie_name}={alice['Authorization'][7:]}"}
            page = c.get("/terminal", headers=cookie)
            assert page.status_code == 403 and "switched off" in page.text
            assert 'data-testid="nav-terminal"' not in page.text
        with pytest.raises(InvalidStatus) as refused, attached(portal, alice, made["id"]):
            pass
        assert refused.value.response.status_code == 403
    with portal.client() as c:
        c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=alice)


def test_every_terminal_is_audited(portal: RunningPortal, alice: dict[str, str]) -> None:
    made = open_terminal(portal, alice, cwd="/tmp")
    with attached(portal, alice, made["id"]) as shell:
        shell.type("exit 7\r")
        closed = shell.closed()
    assert closed == {"type": "closed", "reason": "exit", "exit_code": 7}
    wait_until(lambda: len(audit_entries(portal, f"terminal:{made['id']}")) >= 3, "the audit")
    entries = audit_entries(portal, f"terminal:{made['id']}")
    assert [(e.action, e.username, e.result, e.address) for e in entries] == [
        ("terminal.open", "alice", "ok", "127.0.0.1"),
        ("terminal.attach", "alice", "ok", "127.0.0.1"),
        ("terminal.close", "alice", "ok", "127.0.0.1"),
    ]
    assert entries[0].detail == "/tmp"
    assert "exit code 7" in (entries[2].detail or "")


@pytest.fixture(scope="module")
def conf_env(devcluster: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(devcluster["slurm_conf"])}


def test_at_the_limit_the_longest_waiting_shell_makes_room(
    portal: RunningPortal, carol: dict[str, str]
) -> None:
    with changed(portal, terminal_max_per_user=2):
        first, second = open_terminal(portal, carol), open_terminal(portal, carol)
        try:
            with attached(portal, carol, first["id"]), attached(portal, carol, second["id"]):
                with portal.client() as c:
                    r = c.post("/api/v1/terminal/sessions", json={}, headers=carol)
                assert r.status_code == 409 and "close one first" in r.json()["detail"]
            with attached(portal, carol, second["id"]):
                pass  # both wait for a browser now, the first one longer
            time.sleep(0.3)
            third = open_terminal(portal, carol)
            assert sorted(mine(portal, carol)) == sorted([second["id"], third["id"]])
        finally:
            with portal.client() as c:
                for terminal_id in mine(portal, carol):
                    c.delete(f"/api/v1/terminal/sessions/{terminal_id}", headers=carol)


#: As the portal's service account: the installed helper through sudo, as in production.
SUDO_PROGRAM = """
import asyncio, json, sys
from pathlib import Path
from hpcportal.runas import RunAs

async def main():
    runas = RunAs(method="sudo", helper=Path(sys.argv[1]))
    stream = await runas.open_stream("alice", {"op": "terminal", "rows": 33, "cols": 99})
    answer = await stream.answer()
    line = b"tty; id -un; id -G; stty size; exit 4\\n"
    await stream.write(b"d" + len(line).to_bytes(4, "big") + line)
    output = b""
    while chunk := await stream.proc.stdout.read(65536):
        output += chunk
    code = await stream.proc.wait()
    await stream.aclose()
    print(json.dumps({"answer": answer, "output": output.decode(), "code": code}))

asyncio.run(main())
"""


@pytest.fixture
def sudo_helper() -> Iterator[Path]:
    """A helper and sudoers rule of this test's own (sudo skips names with a dot)."""
    name = f"hpcportal-runas-terminal-{os.getpid()}"
    helper, sudoers = Path("/usr/local/libexec") / name, Path("/etc/sudoers.d") / name
    ensure_service_account(SERVICE_ACCOUNT)
    try:
        install(SERVICE_ACCOUNT, helper, min_uid=1000, sudoers=sudoers)
        yield helper
    finally:
        sudoers.unlink(missing_ok=True)
        helper.unlink(missing_ok=True)


def test_the_service_account_starts_alices_shell_through_sudo(sudo_helper: Path) -> None:
    argv = [sys.executable, "-c", SUDO_PROGRAM, str(sudo_helper)]
    result = subprocess.run(
        ["runuser", "-u", SERVICE_ACCOUNT, "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/tmp",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    groups = subprocess.run(["id", "-G", "alice"], capture_output=True, text=True, check=True)
    output = done["output"].replace("\r", "")
    assert done["answer"]["cwd"] == "/home/alice" and done["code"] == 4
    assert re.search(r"/dev/pts/\d+\nalice\n" + groups.stdout.strip() + r"\n33 99\n", output)


def test_logging_out_closes_the_socket_and_the_shell_waits(portal: RunningPortal) -> None:
    login = portal.login("alice")
    made = open_terminal(portal, login)
    try:
        with attached(portal, login, made["id"]) as shell:
            pid = shell.run("echo $$").strip()
            with portal.client() as c:
                assert c.post("/api/v1/auth/logout", headers=login).status_code == 204
            assert shell.closed(timeout=10)["reason"] == "logged_out"
        fresh = portal.login("alice")
        with attached(portal, fresh, made["id"]) as shell:
            assert shell.run("echo $$").strip() == pid
    finally:
        with portal.client() as c:
            c.delete(f"/api/v1/terminal/sessions/{made['id']}", headers=portal.login("alice"))


def test_the_terminal_ends_with_the_shell_even_if_a_job_holds_it(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    made = open_terminal(portal, alice)
    with attached(portal, alice, made["id"]) as shell:
        shell.type("sleep 30 & exit 3\r")  # the job keeps the terminal open after exit
        started = time.monotonic()
        assert shell.closed(timeout=10) == {"type": "closed", "reason": "exit", "exit_code": 3}
        assert time.monotonic() - started < 5
