"""Writes that survive a busy SQLite, side writes that never fail a request, and which
sbatch failures forget an Idempotency-Key."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from hpcportal.config import Settings
from hpcportal.db import session as db_session
from hpcportal.db.migrate import upgrade
from hpcportal.db.models import AuditEntry
from hpcportal.db.session import LOST_WRITES, Database
from hpcportal.errors import (
    Forbidden,
    InvalidInput,
    SlurmError,
    SlurmInvalidRequest,
    SlurmPermissionDenied,
    SlurmTimeout,
    SlurmUnreachable,
    SubmissionUncertain,
)
from hpcportal.services import audit
from hpcportal.services.identity import Principal
from hpcportal.services.submit import definitely_refused
from hpcportal.slurm.executor import classify_failure

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ALICE = Principal(username="alice", uid=1001, gid=1001, groups=(), role="user")


def hold_write_lock(path: Path, seconds: float, holding: threading.Event) -> None:
    """Another process's writer, as SQLite sees it: a connection in BEGIN IMMEDIATE."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    holding.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_a_write_is_retried_when_sqlites_writer_ahead_holds_on_too_long(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=sqlite_url, jwt_secret=SecretStr(SECRET))
    upgrade(settings)
    # A short busy timeout, so the first attempt gives up while the lock is still held.
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 200)
    busy = Database(settings)
    holding = threading.Event()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    holder = threading.Thread(target=hold_write_lock, args=(path, 0.6, holding))
    holder.start()
    holding.wait(5)
    try:
        with pytest.raises(OperationalError, match="locked"), busy.session() as session:
            audit.add(session, audit.Event.of(ALICE, "probe.once", None, None))
        stored = busy.write(
            lambda s: audit.add(s, audit.Event.of(ALICE, "probe.retried", None, None)),
            what="audit",
            attempts=8,
        )
        assert stored.id is not None
        with busy.session() as session:
            actions = session.scalars(select(AuditEntry.action)).all()
        assert actions == ["probe.retried"]
    finally:
        holder.join()
        busy.dispose()


def test_a_lost_side_write_is_logged_and_counted_never_raised(
    db_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit table is missing (a database never migrated): the entry cannot be
    written, and the action's own answer must still stand."""
    unmigrated = Database(db_settings)
    before = LOST_WRITES.labels("audit")._value.get()
    try:
        event = audit.Event.of(ALICE, "job.cancel", "job:1", "127.0.0.1", SlurmTimeout("slow"))
        stored = audit.write(unmigrated, event)
    finally:
        unmigrated.dispose()
    assert stored is False
    assert LOST_WRITES.labels("audit")._value.get() == before + 1
    lost = [r for r in caplog.records if r.levelname == "ERROR" and "LOST audit" in r.message]
    assert lost and "job.cancel by alice on job:1: error" in lost[0].message


def test_an_audit_entry_is_written_in_its_own_transaction(database: Database) -> None:
    assert audit.write(
        database, audit.Event.of(ALICE, "job.submit", None, "::1", InvalidInput("bad"))
    )
    with database.session() as session:
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.result, entry.detail, entry.address) == ("refused", "bad", "::1")
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 1


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
         SlurmUnreachable),
        ("sbatch: error: Batch job submission failed: Communication connection failure",
         SlurmUnreachable),
        ("sbatch: error: Batch job submission failed: Message receive failure",
         SlurmUnreachable),
        ("sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received",
         SlurmUnreachable),
        ("sbatch: error: Batch job submission failed: Invalid partition name specified",
         SlurmInvalidRequest),
        ("sbatch: error: Batch job submission failed: Access/permission denied",
         SlurmPermissionDenied),
    ],
)  # fmt: skip
def test_only_slurms_certain_refusals_forget_a_key(stderr: str, kind: type[SlurmError]) -> None:
    error = classify_failure("sbatch", stderr)
    assert type(error) is kind
    assert definitely_refused(error) is (kind in (SlurmInvalidRequest, SlurmPermissionDenied))


@pytest.mark.parametrize(
    ("error", "certain"),
    [
        (SlurmTimeout("Slurm did not answer within 3 s (sbatch)."), False),
        (SlurmError("sbatch answered something unexpected: b'garbage'"), False),
        (SubmissionUncertain("maybe"), False),
        (OSError("broken pipe"), False),
        (Forbidden("Refused by the run-as boundary: disabled shell."), True),
        (InvalidInput("No uploaded file 'x'; upload it first."), True),
    ],
)
def test_what_counts_as_a_certain_refusal(error: Exception, certain: bool) -> None:
    assert definitely_refused(error) is certain
