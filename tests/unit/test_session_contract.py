"""The session contract and the pure parts of its Slurm batch implementation.

``SessionState`` (what is persisted), the states Slurm's job statuses mean, how a
session ends, what is shown of it, and the job request a launch (and its confirmation)
builds. Launching, polling and stopping against Slurm are exercised in
``tests/integration/test_sessions.py`` and ``test_session_uncertain.py``; here only the
stop of an ended session, which must not reach Slurm at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast, get_args

import pytest

from hpcportal.config import Settings
from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, NotFound
from hpcportal.services.apps import AppCatalog
from hpcportal.services.identity import Principal
from hpcportal.services.sessions import (
    ACTIVE,
    STATUS_STATE,
    SessionContext,
    SessionState,
    SlurmBatchBackend,
    State,
    job_request,
    session_key,
    view,
    waiting_for_slurm,
)
from hpcportal.services.sessions.contract import ENDED
from hpcportal.services.sessions.slurm_batch import backend
from hpcportal.services.sessions.tracker import Ending, ending
from hpcportal.services.submit import SubmitContext
from hpcportal.slurm.states import JobStatus

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ALICE = Principal("alice", 1000, 1000, ("alice",), "user")
BOB = Principal("bob", 1001, 1001, ("bob",), "user")


def _row(**fields: Any) -> InteractiveSession:
    values: dict[str, Any] = {
        "id": "0123456789abcdef",
        "username": "alice",
        "app_id": "desktop",
        "app_name": "Desktop",
        "connection": "vnc",
        "state": "running",
        "options": {"cpus": 2},
        "session_dir": "/home/alice/hpcportal/sessions/0123456789abcdef",
        "job_id": 42,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW,
    }
    values.update(fields)
    return InteractiveSession(**values)


# --- the persisted state ---------------------------------------------------------------


def test_state_is_read_from_the_row_without_its_secrets() -> None:
    row = _row(port=5901, host="10.0.0.7", node="viz1", secret="sealed", ends_at=NOW)
    state = SessionState.of(row)
    assert (state.id, state.username, state.state, state.job_id) == (row.id, "alice", "running", 42)
    assert (state.folder, state.host, state.port, state.ends_at) == (
        row.session_dir,
        "10.0.0.7",
        5901,
        NOW,
    )
    assert not hasattr(state, "secret")
    state.options["cpus"] = 99
    assert row.options == {"cpus": 2}  # a copy: the state never writes the row


@pytest.mark.parametrize(
    ("state", "job_id", "port", "active", "ready", "waiting"),
    [
        ("creating", None, None, True, False, True),
        ("creating", 42, None, True, False, False),
        ("pending", 42, None, True, False, False),
        ("running", 42, None, True, False, False),
        ("running", 42, 5901, True, True, False),
        ("completed", 42, 5901, False, False, False),
        ("failed", None, None, False, False, False),
    ],
)
def test_active_ready_and_waiting(
    state: str, job_id: int | None, port: int | None, active: bool, ready: bool, waiting: bool
) -> None:
    row = _row(state=state, job_id=job_id, port=port)
    got = SessionState.of(row)
    assert (got.active, got.ready, got.waiting) == (active, ready, waiting)
    assert waiting_for_slurm(row) is waiting


def test_every_state_is_active_or_ended() -> None:
    states = set(get_args(State))
    assert states == ACTIVE | ENDED
    assert not ACTIVE & ENDED


def test_every_known_job_status_means_a_state() -> None:
    unmapped = set(JobStatus) - set(STATUS_STATE)
    assert unmapped == {JobStatus.UNDETERMINED}  # which changes nothing
    assert STATUS_STATE[JobStatus.COMPLETING] == "running"
    assert STATUS_STATE[JobStatus.TIMEOUT] == "completed"


# --- how a session ends ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status", "connected", "expected"),
    [
        ("completed", JobStatus.COMPLETED, True, Ending("completed", None)),
        (
            "completed",
            JobStatus.TIMEOUT,
            True,
            Ending("completed", "The session reached its time limit."),
        ),
        (
            "completed",
            JobStatus.COMPLETED,
            False,
            Ending("failed", "The session's job ended before its app was ready", show_log=True),
        ),
        (
            "completed",
            JobStatus.TIMEOUT,
            False,
            Ending("failed", "The session's job ended before its app was ready", show_log=True),
        ),
        ("failed", JobStatus.FAILED, True, Ending("failed", "The session's job failed", True)),
        ("cancelled", JobStatus.CANCELLED, False, Ending("cancelled", None)),
    ],
)
def test_ending(state: State, status: JobStatus, connected: bool, expected: Ending) -> None:
    assert ending(state, status, connected=connected) == expected


# --- what is shown ---------------------------------------------------------------------


def test_a_ready_desktop_is_shown_with_its_time_left_and_relay() -> None:
    shown = view(_row(port=5901, ends_at=NOW + timedelta(minutes=90)), NOW)
    assert (shown.ready, shown.seconds_left) == (True, 5400)
    assert shown.proxy_url == "/api/v1/sessions/0123456789abcdef/vnc"
    assert shown.view_url == "/sessions/0123456789abcdef"
    assert not shown.shared


def test_a_web_app_is_reached_under_its_base_url() -> None:
    shown = view(_row(connection="web", port=8888), NOW)
    assert shown.proxy_url == "/node/0123456789abcdef/"


def test_time_left_never_goes_below_zero_nor_shows_before_running() -> None:
    assert view(_row(ends_at=NOW - timedelta(minutes=5)), NOW).seconds_left == 0
    pending = view(_row(state="pending", ends_at=NOW + timedelta(hours=1)), NOW)
    assert (pending.seconds_left, pending.ready, pending.proxy_url) == (None, False, None)


def test_a_row_and_its_state_show_the_same() -> None:
    row = _row(port=5901, node="viz1", ends_at=NOW + timedelta(minutes=1), share_token_hash="x")
    assert view(row, NOW) == view(SessionState.of(row), NOW)


def test_a_shared_session_says_so_but_not_how() -> None:
    shown = view(_row(share_token_hash="ab" * 32, secret="sealed"), NOW)
    assert shown.shared
    assert "sealed" not in shown.model_dump_json()


# --- the batch job ---------------------------------------------------------------------


def test_job_request_turns_options_into_sbatch_fields() -> None:
    options: dict[str, int | str] = {"partition": "viz", "cpus": 4, "memory_gb": 16, "hours": 3}
    request = job_request("desktop", options, "#!/bin/bash\nvnc\n", "/home/a/s")
    assert (request.name, request.partition, request.cpus_per_task) == (
        "hpcportal-desktop",
        "viz",
        4,
    )
    assert (request.memory, request.time_limit, request.gpus) == ("16G", "3:00:00", None)
    assert (request.work_dir, request.output) == ("/home/a/s", "/home/a/s/output.log")


def test_job_request_leaves_unset_options_to_the_script_and_slurm() -> None:
    request = job_request("lab", {"gpus": 0}, "#!/bin/bash\nlab\n", "/home/a/s")
    fields = ("partition", "cpus_per_task", "memory", "gpus", "time_limit")
    assert all(getattr(request, f) is None for f in fields)


def test_the_same_inputs_give_the_same_request_and_key() -> None:
    """The confirmation rebuilds the launch's request: same hash, same job."""
    args = ("desktop", {"cpus": 2, "hours": 1}, "#!/bin/bash\nx\n", "/home/a/s")
    assert job_request(*args) == job_request(*args)  # type: ignore[arg-type]
    assert session_key("0123456789abcdef") == "session:0123456789abcdef"


# --- the backend over its persisted state ---------------------------------------------


def _backend(database: Database, settings: Settings) -> SlurmBatchBackend:
    """No Slurm, no run-as: what is exercised here must not reach either."""
    submit = SubmitContext(settings, cast(Any, None), cast(Any, None), database, cast(Any, None))
    made = backend(SessionContext(submit, AppCatalog([])))
    assert isinstance(made, SlurmBatchBackend)
    return made


def test_state_is_read_back_from_the_database(database: Database, db_settings: Settings) -> None:
    with database.session() as session:
        session.add(_row(port=5901))
    sessions = _backend(database, db_settings)
    state = sessions.state("0123456789abcdef")
    assert state is not None
    assert (state.state, state.port, state.ready) == ("running", 5901, True)
    assert sessions.state("fedcba9876543210") is None


def test_stopping_an_ended_session_changes_nothing(
    database: Database, db_settings: Settings
) -> None:
    with database.session() as session:
        session.add(_row(state="completed", ended_at=NOW, error=None))
    sessions = _backend(database, db_settings)
    stopped = sessions.stop(ALICE, "0123456789abcdef")
    assert (stopped.state, stopped.ended_at, stopped.active) == ("completed", NOW, False)


def test_only_the_owner_stops_a_session(database: Database, db_settings: Settings) -> None:
    with database.session() as session:
        session.add(_row())
    sessions = _backend(database, db_settings)
    with pytest.raises(Forbidden):
        sessions.stop(BOB, "0123456789abcdef")
    with pytest.raises(NotFound):
        sessions.stop(ALICE, "../../etc/passwd")
    state = sessions.state("0123456789abcdef")
    assert state is not None and state.state == "running"
