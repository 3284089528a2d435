"""Following sessions from recorded Slurm output: states, the connection file, failures,
and one accounting call for every job that left the queue.

The run-as boundary and the accounting read are small stand-ins here (their real
versions are exercised in ``tests/integration/test_sessions.py``); the database is real
(SQLite and PostgreSQL through the ``database`` fixture).
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import NotFound
from hpcportal.services import rfb, sessions
from hpcportal.services.apps import AppCatalog
from hpcportal.services.node_tls import _new_client_identity
from hpcportal.services.session_tracker import NO_TLS, SessionTracker, parse_connection
from hpcportal.services.sessions import SessionContext
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.submit import SubmitContext
from hpcportal.slurm import parse
from hpcportal.slurm.actions import SlurmActions
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import CommandResult
from hpcportal.slurm.models import AccountingRecord, SlurmRoles
from tests.unit.conftest import TEST_SECRET
from tests.unit.slurm_fixtures import recorded

JOBS = parse.parse_squeue(recorded("squeue.json"))
NODES = parse.parse_sinfo(recorded("sinfo.json"))
PARTITIONS = parse.parse_partitions(recorded("scontrol_partitions.txt"))
RECORDS = {r.id: r for r in parse.parse_sacct(recorded("sacct.json"))}


def _snap() -> ClusterSnapshot:
    """Taken now: the tracker compares rows' ages with the snapshot's time."""
    return ClusterSnapshot.build(1, 0.0, JOBS, NODES, PARTITIONS)


# Recorded jobs: 3 pending, 10 running on viz-node001, 9 failed, 1 completed.
FOLDER = "/home/alice/hpcportal/sessions/{}"
#: A certificate as a job writes it into connection.json (base64 DER).
SERVER_PEM = _new_client_identity()[1].decode()
TLS_CERT = base64.b64encode(ssl.PEM_cert_to_DER_cert(SERVER_PEM)).decode()
KEY_FILE: list[Path] = []


@pytest.fixture(autouse=True)
def _key_file(tmp_path: Path) -> Iterator[None]:
    """Each test's own portal key file (the default would be beside the database)."""
    KEY_FILE[:] = [tmp_path / "secrets" / "portal.key"]
    yield
    KEY_FILE.clear()


class StandInRunAs:
    """Answers ``read`` from a dict of path -> bytes (NotFound otherwise) and takes
    ``write`` (the VNC password file, rewritten as the user) into it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def read(
        self, username: str, request: dict[str, Any], *, timeout: float = 60.0
    ) -> tuple[dict[str, Any], bytes]:
        assert username == "alice" and request["op"] == "read"
        path = f"{request['root']}/{request['path']}"
        self.reads.append(path)
        if path not in self.files:
            raise NotFound(f"{path}: no such file")
        data = self.files[path]
        offset = int(request["offset"])
        return {"size": len(data)}, data[offset : offset + int(request["max_length"])]

    def call(
        self,
        username: str,
        request: dict[str, Any],
        payload: bytes | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        assert username == "alice" and request["op"] == "write" and request["replace"]
        assert payload is not None
        path = f"{request['root']}/{request['path']}"
        self.files[path] = payload
        return {"ok": True, "path": request["path"], "size": len(payload), "sha256": ""}


class StandInAccounting:
    def __init__(self, records: Sequence[AccountingRecord]) -> None:
        self.records = list(records)
        self.calls: list[list[str]] = []

    def accounting(
        self, start: datetime, end: datetime, *, job_ids: Sequence[str] = (), **_: Any
    ) -> list[AccountingRecord]:
        self.calls.append(sorted(job_ids))
        return [r for r in self.records if r.id in job_ids]


def _tracker(database: Database, runas: StandInRunAs, adapter: StandInAccounting) -> SessionTracker:
    settings = Settings(
        database_url=database.engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(TEST_SECRET),
        session_start_timeout=60.0,
        secret_key_file=KEY_FILE[0],
    )
    submit = SubmitContext(
        settings, cast(Any, adapter), cast(Any, runas), database, cast(Any, None)
    )
    return SessionTracker(SessionContext(submit, AppCatalog([])))


def _row(sid: str, job_id: int | None, *, age: float = 60.0, connection: str = "vnc") -> Any:
    created = datetime.now(UTC) - timedelta(seconds=age)
    return InteractiveSession(
        id=sid,
        username="alice",
        app_id="desktop",
        app_name="Desktop",
        connection=connection,
        state="pending" if job_id else "creating",
        options={},
        session_dir=FOLDER.format(sid),
        job_id=job_id,
        created_at=created,
        updated_at=created,
    )


def _states(database: Database) -> dict[str, tuple[str, int | None, str | None]]:
    with database.session() as session:
        rows = session.query(InteractiveSession).all()
        return {r.id: (r.state, r.port, r.error) for r in rows}


def test_each_session_follows_its_job(database: Database) -> None:
    connection = {
        "type": "vnc",
        "node": "made-up-host",
        "port": 5901,
        "password": "full1234",
        "view_password": "view1234",
        "passwd_file": FOLDER.format("a" * 16) + "/vnc.passwd",
        "tls_cert": TLS_CERT,
    }
    runas = StandInRunAs(
        {
            FOLDER.format("a" * 16) + "/connection.json": json.dumps(connection).encode(),
            FOLDER.format("c" * 16) + "/output.log": b"Xvnc: cannot open display\n",
        }
    )
    gone = RECORDS["1"].model_copy(update={"id": "777", "job_id": 777})
    adapter = StandInAccounting([gone])
    with database.session() as session:
        session.add_all(
            [
                _row("a" * 16, 10),  # running: the connection file is read
                _row("b" * 16, 3),  # pending
                _row("c" * 16, 9),  # failed: its log is kept
                _row("d" * 16, None, age=600),  # sbatch never answered
                _row("e" * 16, 777),  # left the queue: accounting says completed
                _row("f" * 16, 778),  # in neither place: ended long ago
            ]
        )
    tracker = _tracker(database, runas, adapter)
    changed = tracker.reconcile(_snap())
    states = _states(database)
    assert states["a" * 16][:2] == ("running", 5901)
    assert states["b" * 16] == ("pending", None, None)
    assert states["c" * 16][0] == "failed" and "cannot open display" in (states["c" * 16][2] or "")
    assert states["d" * 16][0] == "failed" and "interrupted" in (states["d" * 16][2] or "")
    # Completed without ever being ready is a failed launch, said plainly.
    assert states["e" * 16][0] == "failed" and "before its app was ready" in (
        states["e" * 16][2] or ""
    )
    assert states["f" * 16][0] == "failed"
    assert adapter.calls == [["777", "778"]]  # one accounting call for both
    with database.session() as session:
        running = session.get(InteractiveSession, "a" * 16)
        assert running is not None
        # The host is where Slurm says the node is, not what the file claims.
        assert running.host == "vm" and running.node == "viz-node001"
        assert running.server_cert == SERVER_PEM
        # Stored sealed, and not the file's: the passwords were changed on the spot
        # (the password file rewritten as alice), so connection.json's open nothing.
        assert running.secret and running.view_secret
        assert running.secret.startswith("v1:") and running.view_secret.startswith("v1:")
        full = sessions.open_secret(tracker.ctx.box, running, view_only=False)
        view = sessions.open_secret(tracker.ctx.box, running, view_only=True)
        assert full and view and {full, view}.isdisjoint({"full1234", "view1234"})
        assert runas.files[FOLDER.format("a" * 16) + "/vnc.passwd"] == rfb.password_file(full, view)
    assert {owner for owner, _ in changed} == {"alice"}
    assert len(changed) == 5  # everything but the still-pending one
    # A second pass changes nothing and reads nothing more as the user.
    reads = len(runas.reads)
    assert _tracker(database, runas, adapter).reconcile(_snap()) == []
    assert len(runas.reads) == reads


def _started_now() -> ClusterSnapshot:
    now = datetime.now(UTC)
    jobs = [j.model_copy(update={"start_time": now}) if j.id == "10" else j for j in JOBS]
    return ClusterSnapshot.build(2, 0.0, jobs, NODES, PARTITIONS)


def test_a_running_job_without_its_connection_file_waits(database: Database) -> None:
    runas = StandInRunAs({})
    with database.session() as session:
        session.add(_row("a" * 16, 10))
    _tracker(database, runas, StandInAccounting([])).reconcile(_started_now())
    state, port, error = _states(database)["a" * 16]
    assert (state, port, error) == ("running", None, None)


def test_connection_files_that_are_not_usable() -> None:
    folder = "/home/alice/hpcportal/sessions/x"
    good = {"type": "vnc", "port": 5901, "password": "p", "passwd_file": f"{folder}/vnc.passwd"}
    good["tls_cert"] = TLS_CERT
    assert parse_connection(json.dumps(good).encode(), "vnc", folder) == {
        "port": 5901,
        "secret": "p",
        "passwd_file": f"{folder}/vnc.passwd",
        "server_cert": SERVER_PEM,
    }
    # No certificate, or something else in its place: usable, but without one.
    for cert in (None, "", "bm90IGEgY2VydGlmaWNhdGU=", "not base64!", 42):
        parsed = parse_connection(json.dumps({**good, "tls_cert": cert}).encode(), "vnc", folder)
        assert parsed is not None and parsed["server_cert"] is None
    for bad in (
        {**good, "type": "web"},
        {**good, "port": 0},
        {**good, "port": "5901"},
        {**good, "password": ""},
    ):
        assert parse_connection(json.dumps(bad).encode(), "vnc", folder) is None
    assert parse_connection(b"not json", "vnc", folder) is None
    # A password file outside the session folder is never rewritten by the portal.
    for path in ("/etc/passwd", f"{folder}/../other/vnc.passwd", f"{folder}x/vnc.passwd"):
        parsed = parse_connection(json.dumps({**good, "passwd_file": path}).encode(), "vnc", folder)
        assert parsed is not None and "passwd_file" not in parsed
    web = {"type": "web", "port": 8888, "token": "abc"}
    assert parse_connection(json.dumps(web).encode(), "web", folder) == {
        "port": 8888,
        "secret": "abc",
        "server_cert": None,
    }


class StandInExecutor:
    """Slurm's process boundary: notes each command and answers as Slurm does when it
    did it (``scancel --verbose`` says so; ``scontrol`` says nothing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str | None]] = []

    def run(self, command: str, args: list[str], *, as_user: str | None = None) -> CommandResult:
        self.calls.append((command, args, as_user))
        said = f"scancel: Terminating job {args[-1]}" if command == "scancel" else ""
        return CommandResult((command, *args), 0, b"", said, 0.01)


def _act_through(tracker: SessionTracker, executor: StandInExecutor) -> None:
    """The adapter's typed actions run their commands on ``executor``."""
    tracker.ctx.submit.adapter.actions = SlurmActions(cast(Any, executor), SlurmCluster())


def test_a_session_that_never_gets_ready_is_cancelled_as_its_owner(database: Database) -> None:
    runas = StandInRunAs({FOLDER.format("a" * 16) + "/output.log": b"jupyter: not found\n"})
    tracker = _tracker(database, runas, StandInAccounting([]))
    executor = StandInExecutor()
    _act_through(tracker, executor)
    with database.session() as session:
        session.add(_row("a" * 16, 10))
    tracker.reconcile(_snap())  # the recorded job started long before the 60 s allowed
    state, port, error = _states(database)["a" * 16]
    assert state == "failed" and port is None
    assert "did not start within 60 s" in (error or "") and "jupyter: not found" in (error or "")
    assert executor.calls == [("scancel", ["--verbose", "10"], "alice")]


def test_a_session_without_tls_is_ended_as_its_owner(database: Database) -> None:
    """A job that offers no certificate (started before TLS, or a site app without it)
    is cancelled, with a message saying why and what to do; nothing is stored."""
    connection = {"type": "web", "port": 8888, "token": "abc"}
    runas = StandInRunAs(
        {FOLDER.format("a" * 16) + "/connection.json": json.dumps(connection).encode()}
    )
    tracker = _tracker(database, runas, StandInAccounting([]))
    executor = StandInExecutor()
    _act_through(tracker, executor)
    with database.session() as session:
        session.add(_row("a" * 16, 10, connection="web"))
    tracker.reconcile(_started_now())
    state, port, error = _states(database)["a" * 16]
    assert (state, port, error) == ("failed", None, NO_TLS)
    assert executor.calls == [("scancel", ["--verbose", "10"], "alice")]
    with database.session() as session:
        row = session.get(InteractiveSession, "a" * 16)
        assert row is not None and row.secret is None and row.server_cert is None


def test_a_secret_that_does_not_open_makes_the_tracker_read_the_session_again(
    database: Database,
) -> None:
    """A key file replaced (or a value altered): the proxy is told to retry, and the
    tracker reads connection.json again and seals anew under the current key."""
    from hpcportal.errors import Conflict
    from hpcportal.services.identity import Principal

    connection = {"type": "web", "port": 8888, "token": "abc", "tls_cert": TLS_CERT}
    runas = StandInRunAs(
        {FOLDER.format("a" * 16) + "/connection.json": json.dumps(connection).encode()}
    )
    tracker = _tracker(database, runas, StandInAccounting([]))
    with database.session() as session:
        session.add(_row("a" * 16, 10, connection="web"))
    tracker.reconcile(_started_now())
    alice = Principal("alice", 2001, 2001, ("alice",), "user")
    target = sessions.target(tracker.ctx, alice, "a" * 16, "web")
    assert (target.port, target.secret, target.server_cert) == (8888, "abc", SERVER_PEM)
    with database.session() as session:
        row = session.get(InteractiveSession, "a" * 16)
        assert row is not None and row.secret is not None
        row.secret = row.secret[:-4] + ("AAAA" if not row.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(Conflict, match="reconnecting"):
        sessions.target(tracker.ctx, alice, "a" * 16, "web")
    assert _states(database)["a" * 16][:2] == ("running", None)
    tracker.reconcile(_started_now())
    assert sessions.target(tracker.ctx, alice, "a" * 16, "web").secret == "abc"


class StandInSlurm(StandInAccounting):
    """The adapter's ``job`` and ``partitions`` from the recording, viz capped at 2 h;
    carol is a Slurm Administrator."""

    def job(self, job_id: str) -> Any:
        return next(j for j in JOBS if j.id == job_id)

    def partitions(self) -> list[Any]:
        return [
            p.model_copy(update={"max_time_minutes": 120}) if p.name == "viz" else p
            for p in PARTITIONS
        ]

    def roles(self) -> SlurmRoles:
        return SlurmRoles(admin_levels={"carol": "Administrator"})


def _extending(database: Database, user: str, state: str) -> tuple[Any, StandInExecutor]:
    """A tracker whose Slurm is ``StandInSlurm``, and ``user``'s session in ``state``."""
    tracker = _tracker(database, StandInRunAs({}), StandInSlurm([]))
    executor = StandInExecutor()
    _act_through(tracker, executor)
    with database.session() as session:
        row = _row("a" * 16, 10)
        row.username, row.state = user, state
        session.add(row)
    return tracker, executor


def test_extend_beyond_the_partitions_max_time_is_refused_before_slurm(
    database: Database,
) -> None:
    """A pending session's owner may raise its limit, up to the partition's MaxTime."""
    from hpcportal.errors import Conflict
    from hpcportal.services.identity import Principal

    tracker, executor = _extending(database, "alice", "pending")
    alice = Principal("alice", 2001, 2001, ("alice",), "user")
    with pytest.raises(Conflict, match="allows at most 2 h 0 min"):
        sessions.extend(tracker.ctx, alice, "a" * 16, 2)  # 10 min + 2 h > 2 h
    assert executor.calls == []
    sessions.extend(tracker.ctx, alice, "a" * 16, 1)  # 10 min + 1 h fits: Slurm is asked
    assert executor.calls == [("scontrol", ["update", "JobId=10", "TimeLimit=+60"], "alice")]


def test_a_running_session_is_extended_only_by_slurm_operators(database: Database) -> None:
    """Slurm refuses a running job's owner more time; the portal says so in one
    sentence without asking, and offers it to operators and administrators."""
    from hpcportal.errors import Forbidden
    from hpcportal.services.identity import Principal

    tracker, executor = _extending(database, "alice", "running")
    alice = Principal("alice", 2001, 2001, ("alice",), "user")
    assert not sessions.may_extend(tracker.ctx, alice, "running")
    assert sessions.may_extend(tracker.ctx, alice, "pending")
    with pytest.raises(Forbidden) as refused:
        sessions.extend(tracker.ctx, alice, "a" * 16, 1)
    assert refused.value.message == sessions.RUNNING_LIMIT_REFUSED
    assert refused.value.message.count("Slurm") == 1
    assert executor.calls == []
    with database.session() as session:
        session.delete(session.get(InteractiveSession, "a" * 16))
    tracker, executor = _extending(database, "carol", "running")
    carol = Principal("carol", 2003, 2003, ("carol",), "user")
    assert sessions.may_extend(tracker.ctx, carol, "running")
    sessions.extend(tracker.ctx, carol, "a" * 16, 1)
    assert executor.calls == [("scontrol", ["update", "JobId=10", "TimeLimit=+60"], "carol")]


def test_a_launch_slurm_did_not_confirm_follows_its_key_row(database: Database) -> None:
    """A row ``creating`` without a job is moved by its key row, with no Slurm call while
    the launch is still in sbatch or once sbatch's answer was stored; relaunching it
    is refused (it may have a job already)."""
    from hpcportal.db.models import Submission
    from hpcportal.errors import Conflict
    from hpcportal.services.identity import Principal

    def key(sid: str, state: str, job_id: int | None = None) -> Submission:
        return Submission(
            username="alice",
            idempotency_key=sessions.session_key(sid),
            request_hash="0" * 64,
            state=state,
            job_id=job_id,
            created_at=datetime.now(UTC),
        )

    with database.session() as session:
        session.add_all([_row("a" * 16, None), key("a" * 16, "submitted", 3)])
        # Older than a launch without a key row may be, but its sbatch is running now.
        session.add_all([_row("b" * 16, None, age=600), key("b" * 16, "submitting")])
    adapter = StandInAccounting([])
    tracker = _tracker(database, StandInRunAs({}), adapter)
    changed = tracker.reconcile(_snap())
    states = _states(database)
    assert states["a" * 16] == ("pending", None, None)  # job 3 of the recorded queue
    assert states["b" * 16] == ("creating", None, None)
    assert [v.id for _, v in changed] == ["a" * 16]
    assert adapter.calls == []
    with database.session() as session:
        row = session.get(InteractiveSession, "a" * 16)
        assert row is not None and row.job_id == 3
    alice = Principal("alice", 2001, 2001, ("alice",), "user")
    with pytest.raises(Conflict, match="waiting for Slurm"):
        sessions.relaunch(tracker.ctx, alice, "b" * 16)
