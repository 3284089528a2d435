"""The interactive-session contract: ``start``, ``poll``, ``stop`` over persisted state.

JupyterHub's spawners (and batchspawner's ``BatchSpawnerBase`` for batch systems)
split a session's life into starting it, polling it and stopping it, with what they
must remember kept in the hub's database so a restarted hub carries on. The portal
does the same, typed: ``SessionBackend`` names the three operations, ``SessionState``
is what is persisted of a session (the ``interactive_sessions`` row, read), and
``State`` the states a session moves through:

``creating`` (row written, the backend not answered yet) -> ``pending`` ->
``running`` (``ready`` once the portal knows where to connect) -> ``completed`` |
``failed`` | ``cancelled``.

The one backend today runs each session as a Slurm batch job (``slurm_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from hpcportal.db.models import InteractiveSession
from hpcportal.slurm.states import JobStatus

if TYPE_CHECKING:  # named in the signatures only
    from hpcportal.services.identity import Principal
    from hpcportal.services.snapshot import ClusterSnapshot

State = Literal["creating", "pending", "running", "completed", "failed", "cancelled"]
ACTIVE: frozenset[str] = frozenset({"creating", "pending", "running"})
ENDED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

#: The session state a Slurm job status means (statuses not listed change nothing).
STATUS_STATE: dict[JobStatus, State] = {
    JobStatus.QUEUED: "pending",
    JobStatus.QUEUED_HELD: "pending",
    JobStatus.SUSPENDED: "pending",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.TIMEOUT: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class SessionState:
    """What is persisted of one session, as the contract sees it (never its secrets).

    Read from its ``InteractiveSession`` row with ``of``; the row stays the one place
    it is written, so another replica, or the portal after a restart, reads the same.
    """

    id: str
    username: str
    app_id: str
    app_name: str
    connection: str
    state: State
    options: dict[str, Any]
    folder: str
    job_id: int | None
    node: str | None
    host: str | None
    port: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    #: A view-only share link is out (the link itself is never kept, only its hash).
    shared: bool

    @classmethod
    def of(cls, row: InteractiveSession) -> SessionState:
        return cls(
            id=row.id,
            username=row.username,
            app_id=row.app_id,
            app_name=row.app_name,
            connection=row.connection,
            state=cast(State, row.state),
            options=dict(row.options),
            folder=row.session_dir,
            job_id=row.job_id,
            node=row.node,
            host=row.host,
            port=row.port,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            ends_at=row.ends_at,
            ended_at=row.ended_at,
            shared=row.share_token_hash is not None,
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def ready(self) -> bool:
        """Running, and the portal knows where to connect."""
        return self.state == "running" and self.port is not None

    @property
    def waiting(self) -> bool:
        """Started, but the backend has not confirmed a job yet: one may exist."""
        return self.state == "creating" and self.job_id is None


class SessionBackend(Protocol):
    """Starts, polls and stops interactive sessions; their state lives in the database.

    ``start`` writes the session's row before asking the backend for anything, so no
    session exists that the portal does not know; ``poll`` moves every active session
    along (one pass for all of them, not one call per session); ``stop`` ends one, as
    its owner, and is idempotent: stopping an ended session changes nothing.
    """

    def start(self, who: Principal, app_id: str, raw: dict[str, object]) -> SessionState:
        """Start a session of app ``app_id`` with the options in ``raw`` for ``who``."""
        ...

    def poll(self, snap: ClusterSnapshot) -> list[SessionState]:
        """Move every active session along from ``snap``; the states of those that changed."""
        ...

    def stop(self, who: Principal, session_id: str) -> SessionState:
        """End ``who``'s session ``session_id``; its state afterwards."""
        ...

    def state(self, session_id: str) -> SessionState | None:
        """The persisted state of session ``session_id`` (None: there is none)."""
        ...


def end_row(row: InteractiveSession, state: State, error: str | None) -> None:
    """Persist the end of a session: its final state, and no secret or share link."""
    now = datetime.now(UTC)
    row.state = state
    row.error = error
    row.ended_at = row.ended_at or now
    row.updated_at = now
    row.secret = row.view_secret = None
    row.share_token_hash = None
