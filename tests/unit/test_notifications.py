"""Job notifications: event detection, once-only inserts, restarts, several replicas,
accounting for jobs that left the queue, and the owner-only API.

Database tests run on SQLite and PostgreSQL (``database`` fixture of ``conftest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.models import JobSeen, Notification, NotificationPreference
from hpcportal.db.session import Database
from hpcportal.errors import NotFound, SlurmUnreachable
from hpcportal.services import notifications as service
from hpcportal.services.identity import Principal
from hpcportal.services.notification_settings import (
    NotificationSettingsChange,
    change_settings,
    read_settings,
)
from hpcportal.services.notifications import (
    GIVE_UP_AFTER,
    LOOKUP_BACKOFF,
    Delivery,
    NotificationDetector,
    slurm_mail,
    transition_events,
)
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import parse
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus
from tests.unit.conftest import TEST_SECRET
from tests.unit.slurm_fixtures import recorded

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1001, ("research",), "user")
# The recording was made at about 20:52 on this day; job 6 started 20:52:07 with 30 min.
T0 = datetime(2026, 11, 21, 20, 53, tzinfo=UTC)
JOBS = {j.id: j for j in parse.parse_squeue(recorded("squeue.json"))}
NODES = parse.parse_sinfo(recorded("sinfo.json"))
PARTITIONS = parse.parse_partitions(recorded("scontrol_partitions.txt"))
RECORDS = {r.id: r for r in parse.parse_sacct(recorded("sacct.json"))}


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeAccounting:
    """Stands in for ``SlurmAdapter.accounting``; records each call's job ids."""

    def __init__(self, records: Sequence[AccountingRecord] = (), fail: bool = False) -> None:
        self.records = list(records)
        self.fail = fail
        self.calls: list[list[str]] = []

    def accounting(
        self, start: datetime, end: datetime, *, job_ids: Sequence[str] = (), **_: Any
    ) -> list[AccountingRecord]:
        self.calls.append(list(job_ids))
        if self.fail:
            raise SlurmUnreachable("slurmdbd is down")
        return [r for r in self.records if r.id in job_ids]


def snap(
    generation: int, *, drop: Sequence[str] = (), **updates: dict[str, Any]
) -> ClusterSnapshot:
    """The recorded queue, without ``drop`` and with fields of some jobs replaced
    (``snap(2, **{"6": {"state": "COMPLETED"}})``)."""
    jobs: list[Job] = []
    for job in JOBS.values():
        if job.id in drop:
            continue
        change = dict(updates.get(job.id, {}))
        if "state" in change and "status" not in change:
            change["status"] = JobStatus(_STATUS[change["state"]])
        jobs.append(job.model_copy(update=change) if change else job)
    return ClusterSnapshot.build(generation, 0.0, jobs, NODES, PARTITIONS)


_STATUS = {
    "PENDING": "queued",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "TIMEOUT": "timeout",
    "CANCELLED": "cancelled",
}


def settings_for(database: Database, **overrides: Any) -> Settings:
    return Settings(
        database_url=database.engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(TEST_SECRET),
        **overrides,
    )


def detector(
    database: Database,
    accounting: FakeAccounting | None = None,
    clock: Clock | None = None,
    *,
    every_event: bool = True,
) -> NotificationDetector:
    """A detector; with ``every_event`` the recording's users have switched "started"
    on too (off by default), so these tests see every transition."""
    if every_event:
        with database.session() as session:
            for user in ("alice", "bob", "dave"):
                change_settings(session, user, NotificationSettingsChange(started=True))
    return NotificationDetector(
        database, accounting or FakeAccounting(), settings_for(database), clock=clock or Clock()
    )


def events(deliveries: list[Delivery]) -> list[tuple[str, str, str]]:
    return sorted((d.username, d.notification.job_id, d.notification.event) for d in deliveries)


def stored(database: Database) -> list[tuple[str, str, str]]:
    with database.session() as session:
        rows = session.execute(
            select(Notification.username, Notification.job_id, Notification.event)
        )
        return sorted((u, j, e) for u, j, e in rows)


# --- Pure rules ----------------------------------------------------------------------------


def test_transition_rules() -> None:
    Q, R, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED
    assert transition_events(Q, R, ran=True) == ["started"]
    assert transition_events(JobStatus.QUEUED_HELD, R, ran=True) == ["started"]
    assert transition_events(R, C, ran=True) == ["completed"]
    assert transition_events(R, JobStatus.COMPLETING, ran=True) == []
    assert transition_events(JobStatus.COMPLETING, JobStatus.FAILED, ran=True) == ["failed"]
    assert transition_events(R, JobStatus.TIMEOUT, ran=True) == ["timed_out"]
    # Queued to finished between two looks: it ran, so it also started.
    assert transition_events(Q, C, ran=True) == ["started", "completed"]
    assert transition_events(None, R, ran=True) == ["started"]
    # A pending job cancelled never started.
    assert transition_events(Q, JobStatus.CANCELLED, ran=False) == ["cancelled"]
    assert transition_events(None, Q, ran=False) == []
    # Already finished: a requeue starts over quietly.
    assert transition_events(C, Q, ran=False) == [] and transition_events(C, R, ran=True) == []


# --- Detection ------------------------------------------------------------------------------


def test_first_look_at_a_new_installation_announces_nothing(database: Database) -> None:
    found = detector(database).process(snap(1))
    assert found == []
    with database.session() as session:
        seen = dict(session.execute(select(JobSeen.job_id, JobSeen.status)).tuples().all())
    # Every job but the record of an array's pending tasks (its id changes).
    assert set(seen) == set(JOBS) - {"7_[0-5%2]"}
    assert seen["6"] == "running" and seen["3"] == "queued_held"


def test_transitions_become_one_notification_each(database: Database) -> None:
    d = detector(database)
    d.process(snap(1))
    later = snap(
        2,
        **{
            "3": {"state": "RUNNING", "batch_host": "node002", "nodes": "node002"},
            "6": {"state": "COMPLETED", "exit_code": 0},
            "10": {"state": "FAILED", "exit_code": 3},
            "8": {"state": "CANCELLED"},  # held, never ran
        },
    )
    found = d.process(later)
    assert events(found) == [
        ("alice", "10", "failed"),
        ("alice", "6", "completed"),
        ("dave", "3", "started"),
        ("dave", "8", "cancelled"),
    ]
    failed = next(x for x in found if x.notification.event == "failed")
    assert failed.notification.params == {
        "job_id": "10",
        "job_name": JOBS["10"].name,
        "state": "FAILED",
        "exit_code": 3,
    }
    assert "failed with exit code 3" in failed.notification.body
    assert failed.notification.title == "Job failed"
    # alice has two new ones: the counts pushed with them are 1 then 2.
    assert sorted(x.unread for x in found if x.username == "alice") == [1, 2]
    # The same snapshot again, or the next unchanged one: nothing new.
    assert d.process(later) == []
    assert d.process(snap(3, **{k: v for k, v in [("3", {"state": "RUNNING"})]})) == []
    assert len(stored(database)) == 4


def test_only_changed_jobs_are_written(database: Database) -> None:
    clock = Clock()
    d = detector(database, clock=clock)
    d.process(snap(1))
    with database.session() as session:
        before = dict(session.execute(select(JobSeen.job_id, JobSeen.updated_at)).tuples().all())
    clock.now += timedelta(seconds=30)
    d.process(snap(2, **{"6": {"state": "COMPLETED"}}))
    with database.session() as session:
        after = dict(session.execute(select(JobSeen.job_id, JobSeen.updated_at)).tuples().all())
    assert [k for k in after if after[k] != before[k]] == ["6"]


def test_a_job_seen_first_when_already_finished(database: Database) -> None:
    d = detector(database)
    d.process(snap(1))
    quick = JOBS["1"].model_copy(update={"id": "50", "job_id": 50, "user": "bob"})
    assert quick.status is JobStatus.COMPLETED and quick.batch_host
    never_ran = JOBS["3"].model_copy(
        update={"id": "51", "job_id": 51, "state": "CANCELLED", "status": JobStatus.CANCELLED}
    )
    found = d.process(
        ClusterSnapshot.build(2, 0.0, [*JOBS.values(), quick, never_ran], NODES, PARTITIONS)
    )
    assert events(found) == [
        ("bob", "50", "completed"),
        ("bob", "50", "started"),
        ("dave", "51", "cancelled"),
    ]


def test_restart_emits_nothing_twice_and_catches_what_happened_while_down(
    database: Database,
) -> None:
    first = detector(database)
    first.process(snap(1))
    running = snap(2, **{"3": {"state": "RUNNING", "batch_host": "node002"}})
    assert events(first.process(running)) == [("dave", "3", "started")]

    # The portal stops. While it is down, job 3 completes, job 2_3 times out, and
    # job 10 finishes and leaves the queue (slurmctld's MinJobAge passed).
    done = RECORDS["10"].model_copy(update={"state": "COMPLETED", "status": JobStatus.COMPLETED})
    accounting = FakeAccounting([done])
    restarted = detector(database, accounting, Clock(T0 + timedelta(minutes=5)))
    while_down = snap(
        3,
        drop=["10"],
        **{"3": {"state": "COMPLETED", "batch_host": "node002"}, "2_3": {"state": "TIMEOUT"}},
    )
    assert events(restarted.process(while_down)) == [
        ("alice", "10", "completed"),
        ("bob", "2_3", "timed_out"),
        ("dave", "3", "completed"),
    ]
    # One sacct for every job that left the queue, not one per job.
    assert accounting.calls == [["10"]]
    # Restart again on the same picture: nothing is announced a second time.
    again = detector(database, FakeAccounting([done]), Clock(T0 + timedelta(minutes=6)))
    assert again.process(while_down) == []
    assert stored(database).count(("dave", "3", "started")) == 1
    assert len(stored(database)) == 4


def test_several_replicas_store_and_push_each_event_once(database: Database) -> None:
    a, b = detector(database), detector(database)
    a.process(snap(1))
    b.process(snap(1))
    later = snap(2, **{"6": {"state": "COMPLETED"}})
    pushed = a.process(later) + b.process(later)
    assert events(pushed) == [("alice", "6", "completed")]
    assert stored(database) == [("alice", "6", "completed")]


def test_one_sacct_for_all_jobs_that_left_the_queue(database: Database) -> None:
    records = [
        RECORDS["6"].model_copy(update={"state": "COMPLETED", "status": JobStatus.COMPLETED}),
        RECORDS["2_3"].model_copy(update={"state": "FAILED", "status": JobStatus.FAILED}),
    ]
    accounting = FakeAccounting(records)
    d = detector(database, accounting)
    d.process(snap(1))
    found = d.process(snap(2, drop=["6", "2_3", "10", "1"]))
    # 1 had finished already (nothing to ask); 10 is not in accounting yet.
    assert accounting.calls == [["10", "2_3", "6"]]
    assert events(found) == [("alice", "6", "completed"), ("bob", "2_3", "failed")]
    # Next refresh asks only for the one still unknown, once.
    d.process(snap(3, drop=["6", "2_3", "10", "1"]))
    assert accounting.calls[-1] == ["10"] and len(accounting.calls) == 2


def test_a_job_accounting_never_knows_is_given_up(database: Database) -> None:
    clock = Clock()
    accounting = FakeAccounting()
    d = detector(database, accounting, clock)
    d.process(snap(1))
    d.process(snap(2, drop=["10"]))
    clock.now += GIVE_UP_AFTER
    assert d.process(snap(3, drop=["10"])) == []
    with database.session() as session:
        assert session.get(JobSeen, "10") is None
    d.process(snap(4, drop=["10"]))
    assert len(accounting.calls) == 2  # not asked again


def test_accounting_unreachable_is_retried_later(database: Database) -> None:
    clock = Clock()
    accounting = FakeAccounting(fail=True)
    d = detector(database, accounting, clock)
    d.process(snap(1))
    assert d.process(snap(2, drop=["6"])) == []
    accounting.fail = False
    accounting.records = [
        RECORDS["6"].model_copy(update={"state": "COMPLETED", "status": JobStatus.COMPLETED})
    ]
    clock.now += timedelta(seconds=5)
    assert d.process(snap(3, drop=["6"])) == []  # not asked again at once
    assert len(accounting.calls) == 1
    clock.now += LOOKUP_BACKOFF
    assert events(d.process(snap(4, drop=["6"]))) == [("alice", "6", "completed")]


def test_time_limit_warning_once_and_not_for_short_jobs(database: Database) -> None:
    clock = Clock(T0)
    d = detector(database, clock=clock)
    d.process(snap(1))
    # Job 6 (alice, 30 min from 20:52:07) has 29 min left; job 10 has a 10 min limit.
    assert d.process(snap(2)) == []
    clock.now = datetime(2026, 11, 21, 21, 15, tzinfo=UTC)  # 7 min left for job 6
    found = d.process(snap(3))
    assert events(found) == [("alice", "6", "time_limit")]
    assert found[0].notification.params["minutes_left"] == 7
    clock.now += timedelta(minutes=2)
    assert d.process(snap(4)) == []
    # A restarted portal remembers the warning too (and the unique key would hold).
    assert detector(database, clock=clock).process(snap(5)) == []
    with database.session() as session:
        row = session.get(JobSeen, "6")
        assert row is not None and row.warned


def test_an_empty_start_with_history_still_announces(database: Database) -> None:
    """Once something was recorded, a restart is not a new installation."""
    detector(database).process(snap(1))
    found = detector(database).process(snap(2, **{"6": {"state": "COMPLETED"}}))
    assert events(found) == [("alice", "6", "completed")]


# --- The owner's API --------------------------------------------------------------------------


def _seed(database: Database) -> list[int]:
    d = detector(database)
    d.process(snap(1))
    found = d.process(
        snap(
            2,
            **{"6": {"state": "COMPLETED"}, "10": {"state": "FAILED"}, "2_3": {"state": "FAILED"}},
        )
    )
    return sorted(x.notification.id for x in found if x.username == "alice")


def test_listing_reading_and_deleting_own_notifications(database: Database) -> None:
    first, second = _seed(database)
    with database.session() as session:
        page = service.list_notifications(session, ALICE, unread=None, page=1, limit=10)
        assert [n.id for n in page.items] == [second, first]  # newest first
        assert page.total == 2 and page.unread == 2
        read = service.mark_read(session, ALICE, first)
        assert read.read_at is not None
    with database.session() as session:
        assert service.unread_count(session, "alice") == 1
        unread = service.list_notifications(session, ALICE, unread=True, page=1, limit=10)
        assert [n.id for n in unread.items] == [second]
        assert service.mark_all_read(session, ALICE) == 1
    with database.session() as session:
        assert service.unread_count(session, "alice") == 0
        assert service.unread_count(session, "bob") == 1
        service.delete_notification(session, ALICE, first)
    with database.session() as session:
        count = session.scalar(select(func.count()).select_from(Notification))
        assert count == 2


def test_other_peoples_notifications_are_not_found(database: Database) -> None:
    first, _ = _seed(database)
    with database.session() as session:
        with pytest.raises(NotFound):
            service.mark_read(session, BOB, first)
        with pytest.raises(NotFound):
            service.delete_notification(session, BOB, first)
        with pytest.raises(NotFound):
            service.mark_read(session, ALICE, 999_999)
        assert service.list_notifications(session, BOB, unread=None, page=1, limit=10).total == 1
        assert service.mark_all_read(session, BOB) == 1
    with database.session() as session:
        assert service.unread_count(session, "alice") == 2


# --- Disk alert notifications beside job ones -----------------------------------------------


def _disk(
    user: str, episode: int = 1, event: service.DiskEventName = "disk_critical"
) -> service.DiskEvent:
    return service.disk_event(
        user, episode, event, target=f"user:{user}:home", area="quota", name="home",
        percent=97.5, threshold=90.0, used_bytes=975, total_bytes=1000,
    )  # fmt: skip


def test_disk_notifications_live_beside_job_ones(database: Database) -> None:
    job_ids = _seed(database)  # alice: two job notifications
    with database.session() as session:
        [pushed] = service.store_disk_events(session, [_disk("alice")])
    # The unread count pushed with it counts the job notifications too.
    assert pushed.unread == 3 and pushed.username == "alice"
    note = pushed.notification
    assert (note.kind, note.job_id, note.target, note.event) == (
        "disk", None, "user:alice:home", "disk_critical",
    )  # fmt: skip
    assert note.title == "Disk usage critical"
    assert note.body == "You have used 97.5 % of your quota on home (threshold 90.0 %)."
    assert note.params == {
        "target": "user:alice:home", "area": "quota", "name": "home", "level": "critical",
        "percent": 97.5, "threshold": 90.0, "used_bytes": 975, "total_bytes": 1000,
    }  # fmt: skip
    with database.session() as session:
        page = service.list_notifications(session, ALICE, unread=None, page=1, limit=10)
        assert [n.id for n in page.items] == [note.id, *reversed(job_ids)]
        assert {n.kind for n in page.items} == {"job", "disk"}
        assert all(n.job_id for n in page.items if n.kind == "job")
        with pytest.raises(NotFound):  # bob's view of alice's disk notification
            service.mark_read(session, BOB, note.id)
        assert service.mark_read(session, ALICE, note.id).read_at is not None
        service.delete_notification(session, ALICE, note.id)
    with database.session() as session:
        assert service.unread_count(session, "alice") == 2


def test_disk_events_are_keyed_by_user_target_episode_and_event(database: Database) -> None:
    with database.session() as session:
        first = service.store_disk_events(
            session,
            [_disk("alice"), _disk("alice"), _disk("bob"), _disk("alice", 1, "disk_cleared")],
        )
    assert sorted((d.username, d.notification.event) for d in first) == [
        ("alice", "disk_cleared"), ("alice", "disk_critical"), ("bob", "disk_critical"),
    ]  # fmt: skip
    with database.session() as session:
        assert service.store_disk_events(session, [_disk("alice"), _disk("bob")]) == []
    # Job events keep their own key: a job notification is unaffected by disk rows.
    d = detector(database)
    d.process(snap(1))
    assert events(d.process(snap(2, **{"6": {"state": "COMPLETED"}}))) == [
        ("alice", "6", "completed")
    ]


# --- Notification settings (services/notification_settings.py) ---------------------------


def test_a_job_start_notifies_nobody_by_default(database: Database) -> None:
    d = detector(database, every_event=False)
    d.process(snap(1))
    found = d.process(
        snap(2, **{"3": {"state": "RUNNING", "batch_host": "node002", "nodes": "node002"},
                   "6": {"state": "COMPLETED", "exit_code": 0}})
    )  # fmt: skip
    assert events(found) == [("alice", "6", "completed")]
    assert stored(database) == [("alice", "6", "completed")]


def test_switching_events_applies_to_the_next_refresh(database: Database) -> None:
    d = detector(database, every_event=False)
    d.process(snap(1))
    with database.session() as session:
        assert read_settings(session, "dave").started is False
        change_settings(session, "dave", NotificationSettingsChange(started=True))
        change_settings(session, "alice", NotificationSettingsChange(completed=False))
    found = d.process(
        snap(2, **{"3": {"state": "RUNNING", "batch_host": "node002", "nodes": "node002"},
                   "6": {"state": "COMPLETED", "exit_code": 0},
                   "10": {"state": "FAILED", "exit_code": 3}})
    )  # fmt: skip
    assert events(found) == [("alice", "10", "failed"), ("dave", "3", "started")]
    with database.session() as session:
        dave = read_settings(session, "dave")
        alice = read_settings(session, "alice")
        bob = read_settings(session, "bob")
    assert dave.started and dave.completed
    assert not alice.completed and not alice.started and alice.failed
    assert bob.model_dump() == {
        "started": False, "completed": True, "failed": True,
        "timed_out": True, "cancelled": True, "time_limit": True,
    }  # fmt: skip


def test_a_changed_switch_is_stored_once_and_can_be_turned_back(database: Database) -> None:
    with database.session() as session:
        change_settings(session, "alice", NotificationSettingsChange(started=True))
        change_settings(session, "alice", NotificationSettingsChange(started=False))
        assert read_settings(session, "alice").started is False
        rows = session.scalar(select(func.count()).select_from(NotificationPreference))
    assert rows == 1


# --- Held and requeued, from the portal's own snapshot (issue 15.2) ------------------------


def test_hold_and_requeue_rules() -> None:
    Q, H, R = JobStatus.QUEUED, JobStatus.QUEUED_HELD, JobStatus.RUNNING
    assert transition_events(Q, H, ran=False) == ["held"]
    assert transition_events(None, H, ran=False) == []  # submitted held: no news
    assert transition_events(H, H, ran=False) == []
    assert transition_events(H, Q, ran=False) == []  # released
    assert transition_events(R, Q, ran=True) == ["requeued"]
    assert transition_events(R, H, ran=True) == ["requeued", "held"]  # requeue-hold
    assert transition_events(JobStatus.COMPLETED, Q, ran=False) == []


def test_held_and_requeued_once_per_job_even_switched_off_by_default(
    database: Database,
) -> None:
    d = detector(database, every_event=False)
    d.process(snap(1))
    # In the recording job 6 (alice) runs and job 3 (dave) is held.
    requeued: dict[str, Any] = {"state": "PENDING", "batch_host": None, "nodes": None}
    released: dict[str, Any] = {"state": "PENDING"}
    held: dict[str, Any] = {"state": "PENDING", "status": JobStatus.QUEUED_HELD}
    assert events(d.process(snap(2, drop=(), **{"3": released, "6": requeued}))) == [
        ("alice", "6", "requeued")
    ]
    assert events(d.process(snap(3, drop=(), **{"3": held, "6": requeued}))) == [
        ("dave", "3", "held")
    ]
    # Released and running again, then held and requeued again: still once per job.
    assert d.process(snap(4, drop=(), **{"3": released, "6": {"state": "RUNNING"}})) == []
    assert d.process(snap(5, drop=(), **{"3": held, "6": requeued})) == []
    assert sorted(e for e in stored(database) if e[2] in ("held", "requeued")) == [
        ("alice", "6", "requeued"),
        ("dave", "3", "held"),
    ]


def test_requeued_from_the_snapshot_and_from_slurm_mail_is_one_row(database: Database) -> None:
    d = detector(database, every_event=False)
    d.process(snap(1))
    d.process(snap(2, drop=(), **{"6": {"state": "PENDING", "batch_host": None, "nodes": None}}))
    mail = slurm_mail.SlurmMailIn(
        subject="Slurm Job_id=6 Name=x Requeued, Run time 00:00:02", recipient="alice"
    )
    with database.session() as session:
        got = slurm_mail.receive(session, mail, T0)
    assert got.answer.accepted and got.deliveries == []  # already stored by the detector
    with database.session() as session:
        rows = session.scalars(
            select(Notification).where(Notification.job_id == "6", Notification.event == "requeued")
        ).all()
    assert len(rows) == 1 and rows[0].title == "Job requeued"
