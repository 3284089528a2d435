"""The live-update hub and WebSocket: who gets what, serialized once, slow sockets,
the protocol, origin checks, authentication and closing on logout.

No network: the hub is fed fake sockets, and the endpoint is exercised through
Starlette's in-process test client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from hpcportal.app import create_app
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database
from hpcportal.runas import RunAs
from hpcportal.services import auth
from hpcportal.services.changes import compute_changes
from hpcportal.services.identity import Principal
from hpcportal.services.live import (
    CLOSE_NOT_AUTHENTICATED,
    CLOSE_POLICY,
    CLOSE_TRY_LATER,
    MAX_BAD_MESSAGES,
    NOT_YOURS,
    Connection,
    LiveHub,
    LiveIdentity,
    origin_allowed,
)
from hpcportal.services.notifications import Delivery, NotificationOut
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm import parse
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import Job, PrivateData, SlurmRoles
from hpcportal.slurm.states import JobStatus
from tests.unit.conftest import TEST_SECRET
from tests.unit.slurm_fixtures import recorded

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1001, ("research",), "user")
DAVE = Principal("dave", 1003, 1002, ("physics",), "user")
CAROL = Principal("carol", 1004, 1003, ("hpc-admins",), "admin")
PEOPLE = {p.username: p for p in (ALICE, BOB, DAVE, CAROL)}
JOBS = parse.parse_squeue(recorded("squeue.json"))
NODES = parse.parse_sinfo(recorded("sinfo.json"))
PARTITIONS = parse.parse_partitions(recorded("scontrol_partitions.txt"))


def build(generation: int, jobs: list[Job]) -> ClusterSnapshot:
    return ClusterSnapshot.build(generation, 0.1, jobs, NODES, PARTITIONS)


def changed(jobs: list[Job], updates: dict[str, dict[str, Any]]) -> list[Job]:
    return [j.model_copy(update=updates[j.id]) if j.id in updates else j for j in jobs]


class FakeAdapter:
    def jobs(self) -> list[Job]:
        return JOBS

    def nodes(self) -> list[Any]:
        return NODES

    def partitions(self) -> list[Any]:
        return PARTITIONS

    def controller_private_data(self) -> PrivateData:
        return PrivateData()


class FakeRunAs:
    """Output files by path; records who read what."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[tuple[str, str, int]] = []

    def read_file(
        self, username: str, path: str, *, offset: int, length: int
    ) -> tuple[dict[str, Any], bytes]:
        self.reads.append((username, path, offset))
        data = self.files[path]
        return {"size": len(data)}, data[offset : offset + length]


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    def say(self, message: Any) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})


def make_hub(runas: Any = None, **overrides: Any) -> LiveHub:
    overrides.setdefault("database_url", "sqlite://")
    settings = Settings(jwt_secret=SecretStr(TEST_SECRET), **overrides)
    snapshot = SnapshotService(cast(SlurmAdapter, FakeAdapter()), settings)
    return LiveHub(
        snapshot,
        settings,
        database=Database(settings),
        runas=cast(RunAs, runas or FakeRunAs({})),
        revocations=auth.RevocationList(3600),
    )


def connect(hub: LiveHub, who: Principal, *channels: str, jti: str | None = None) -> Connection:
    conn = hub.register(FakeSocket(), LiveIdentity(who, jti=jti))
    conn.channels.update(channels)
    return conn


def queued(conn: Connection) -> list[str]:
    items: list[str] = []
    while not conn.queue.empty():
        item = conn.queue.get_nowait()
        assert isinstance(item, str)
        items.append(item)
    return items


def messages(conn: Connection) -> list[dict[str, Any]]:
    return [json.loads(text) for text in queued(conn)]


# --- Origin check ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "allowed", "ok"),
    [
        (None, "ws", "portal.example.org", (), True),  # not a browser
        ("https://portal.example.org", "wss", "portal.example.org", (), True),
        ("https://portal.example.org:443", "wss", "portal.example.org", (), True),
        ("HTTPS://Portal.Example.org", "wss", "portal.example.org:443", (), True),
        ("http://127.0.0.1:8080", "ws", "127.0.0.1:8080", (), True),
        ("http://127.0.0.1:8081", "ws", "127.0.0.1:8080", (), False),  # another port
        ("http://portal.example.org", "wss", "portal.example.org", (), False),  # scheme
        ("https://evil.example.com", "wss", "portal.example.org", (), False),
        ("https://portal.example.org.evil.com", "wss", "portal.example.org", (), False),
        ("null", "wss", "portal.example.org", (), False),
        ("https://ui.example.org", "wss", "portal.example.org", ("https://ui.example.org",), True),
        ("http://[::1]:8080", "ws", "[::1]:8080", (), True),
    ],
)
def test_origin_check(
    origin: str | None, scheme: str, host: str, allowed: tuple[str, ...], ok: bool
) -> None:
    assert origin_allowed(origin, scheme, host, allowed) is ok


# --- Who gets what ------------------------------------------------------------------------


def test_owners_and_admins_get_private_parts_others_do_not() -> None:
    hub = make_hub()
    alice, bob, carol = (connect(hub, p, "jobs") for p in (ALICE, BOB, CAROL))
    before = build(1, JOBS)
    after = build(
        2,
        changed(
            JOBS,
            {
                "6": {"state": "COMPLETED", "status": JobStatus.COMPLETED},  # alice's
                "2_3": {"state": "COMPLETED", "status": JobStatus.COMPLETED},  # bob's
            },
        ),
    )
    hub.publish(compute_changes(before, after), after)
    seen = {name: messages(c) for name, c in (("alice", alice), ("bob", bob), ("carol", carol))}
    for msgs in seen.values():
        assert len(msgs) == 1 and msgs[0]["type"] == "jobs" and msgs[0]["generation"] == 2
        assert {j["id"] for j in msgs[0]["changed"]} == {"6", "2_3"}
        assert msgs[0]["removed"] == []
    private = {
        name: {j["id"]: j["private"] is not None for j in msgs[0]["changed"]}
        for name, msgs in seen.items()
    }
    assert private["alice"] == {"6": True, "2_3": False}
    assert private["bob"] == {"6": False, "2_3": True}
    assert private["carol"] == {"6": True, "2_3": True}
    # The public fields are the same for everyone.
    job6 = {n: next(j for j in m[0]["changed"] if j["id"] == "6") for n, m in seen.items()}
    assert job6["bob"] == {**job6["alice"], "private": None}


def test_each_variant_is_serialized_once_and_shared() -> None:
    hub = make_hub()
    alice_tabs = [connect(hub, ALICE, "jobs") for _ in range(3)]
    others = [connect(hub, p, "jobs") for p in (BOB, DAVE, BOB)]
    idle = connect(hub, DAVE, "nodes")  # not subscribed to jobs
    before = build(1, JOBS)
    after = build(2, changed(JOBS, {"6": {"state": "COMPLETED", "status": JobStatus.COMPLETED}}))
    hub.publish(compute_changes(before, after), after)
    alice_texts = [queued(c)[0] for c in alice_tabs]
    other_texts = [queued(c)[0] for c in others]
    # The very same string object for every socket of a variant: built once.
    assert all(t is alice_texts[0] for t in alice_texts)
    assert all(t is other_texts[0] for t in other_texts)
    assert alice_texts[0] != other_texts[0]
    assert queued(idle) == []


def test_removed_jobs_and_nothing_when_nothing_changed() -> None:
    hub = make_hub()
    bob = connect(hub, BOB, "jobs", "nodes", "cluster")
    first = build(1, JOBS)
    hub.publish(compute_changes(first, build(2, list(JOBS))), build(2, list(JOBS)))
    assert queued(bob) == []  # same jobs, same nodes: no message at all
    after = build(3, [j for j in JOBS if j.id != "9"])
    hub.publish(compute_changes(first, after), after)
    got = {m["type"]: m for m in messages(bob)}
    assert got["jobs"] == {"type": "jobs", "generation": 3, "changed": [], "removed": ["9"]}
    assert got["cluster"]["summary"]["jobs_total"] == len(JOBS) - 1
    assert "nodes" not in got


def test_private_data_jobs_each_socket_hears_only_of_jobs_its_user_sees() -> None:
    """Under PrivateData=jobs,nodes: no word of other people's jobs (changed, removed or
    counted), no nodes; carol, a Slurm Administrator, hears everything."""
    private = PrivateData(flags=frozenset({"jobs", "nodes"}))
    roles = SlurmRoles(admin_levels={"carol": "Administrator"})

    def snap(generation: int, jobs: list[Job], nodes: list[Any] = NODES) -> ClusterSnapshot:
        return ClusterSnapshot.build(generation, 0.1, jobs, nodes, PARTITIONS, private, roles)

    hub = make_hub()
    alice, dave, carol = (connect(hub, p, "jobs", "cluster", "nodes") for p in (ALICE, DAVE, CAROL))
    owners = {j.id: j.user for j in JOBS}
    assert (owners["6"], owners["9"], owners["2_1"], owners["2_3"]) == (
        "alice",
        "alice",
        "bob",
        "bob",
    )
    before = snap(1, JOBS)
    after = snap(
        2,
        changed(
            [j for j in JOBS if j.id not in ("9", "2_1")],
            {"6": {"state": "COMPLETED", "status": JobStatus.COMPLETED},
             "2_3": {"state": "COMPLETED", "status": JobStatus.COMPLETED}},
        ),
        [NODES[0].model_copy(update={"cpus_allocated": NODES[0].cpus_allocated + 1}), *NODES[1:]],
    )  # fmt: skip
    hub.publish(compute_changes(before, after), after, before)
    got = {name: messages(c) for name, c in (("alice", alice), ("dave", dave), ("carol", carol))}
    jobs_of = {name: [m for m in msgs if m["type"] == "jobs"] for name, msgs in got.items()}
    assert [j["id"] for j in jobs_of["alice"][0]["changed"]] == ["6"]
    assert jobs_of["alice"][0]["removed"] == ["9"]
    assert jobs_of["dave"] == []  # nothing of his changed: no message at all
    assert {j["id"] for j in jobs_of["carol"][0]["changed"]} == {"6", "2_3"}
    assert jobs_of["carol"][0]["removed"] == ["2_1", "9"]
    summary = {
        n: next(m for m in msgs if m["type"] == "cluster")["summary"] for n, msgs in got.items()
    }
    assert summary["alice"]["jobs_total"] == sum(1 for j in after.jobs if j.user == "alice")
    assert summary["carol"]["jobs_total"] == len(after.jobs)
    assert summary["alice"]["nodes_total"] == 0 < summary["carol"]["nodes_total"]
    assert not [m for m in got["alice"] if m["type"] == "nodes"]
    assert [m["changed"][0]["name"] for m in got["carol"] if m["type"] == "nodes"] == [
        NODES[0].name
    ]


def test_the_first_refresh_sends_no_job_list() -> None:
    """Before the first refresh clients read GET /jobs (it waits for the snapshot)."""
    hub = make_hub()
    conn = connect(hub, ALICE, "jobs", "cluster")
    first = build(1, JOBS)
    hub.publish(compute_changes(None, first), first)
    assert [m["type"] for m in messages(conn)] == ["cluster"]


def test_a_slow_socket_is_dropped_and_the_others_carry_on() -> None:
    hub = make_hub(live_queue_messages=3)

    async def scenario() -> tuple[Connection, Connection]:
        slow, fast = connect(hub, BOB, "jobs"), connect(hub, ALICE, "jobs")
        snaps = [build(1, JOBS)]
        for generation in range(2, 7):
            status = JobStatus.RUNNING if generation % 2 else JobStatus.COMPLETED
            update = {"6": {"state": status.value.upper(), "status": status}}
            snaps.append(build(generation, changed(JOBS, update)))
            hub.publish(compute_changes(snaps[-2], snaps[-1]), snaps[-1])
            assert len(queued(fast)) == 1  # this one keeps up
        await asyncio.sleep(0.05)  # let the close run
        return slow, fast

    slow, fast = asyncio.run(scenario())
    assert slow.closed and slow not in hub.connections
    assert cast(FakeSocket, slow.socket).closed == (CLOSE_TRY_LATER, "Too far behind; reconnect.")
    assert fast in hub.connections and not fast.closed


def test_notifications_go_to_their_owner_only() -> None:
    hub = make_hub()
    alice = connect(hub, ALICE, "notifications")
    alice_jobs_only = connect(hub, ALICE, "jobs")
    bob = connect(hub, BOB, "notifications")
    note = NotificationOut(
        id=7,
        job_id="6",
        event="completed",
        title="Job completed",
        body='Job "train" (6) completed.',
        params={"job_id": "6", "job_name": "train", "state": "COMPLETED"},
        created_at=datetime(2026, 11, 21, tzinfo=UTC),
    )
    hub.deliver([Delivery("alice", note, 3)])
    [got] = messages(alice)
    assert got["type"] == "notification" and got["unread"] == 3
    assert got["notification"]["id"] == 7 and got["notification"]["params"]["job_name"] == "train"
    assert queued(bob) == [] and queued(alice_jobs_only) == []


# --- Job output -----------------------------------------------------------------------------


def test_one_follower_reads_the_output_as_the_owner_for_every_tab() -> None:
    job = next(j for j in JOBS if j.id == "6")  # alice's, running, -o train-%j.out
    assert job.private is not None
    path = f"{job.private.work_dir}/train-6.out"
    runas = FakeRunAs({path: b"epoch 1\n"})
    hub = make_hub(runas, live_output_poll_seconds=0.05)
    subscribe = json.dumps({"type": "subscribe", "channels": ["job_output:6"]})

    async def scenario() -> None:
        hub.on_refresh(None, build(1, JOBS))
        tabs = [hub.register(FakeSocket(), LiveIdentity(ALICE)) for _ in range(2)]
        bob = hub.register(FakeSocket(), LiveIdentity(BOB))
        for conn in tabs:
            hub.handle(conn, subscribe)
        hub.handle(bob, subscribe)
        assert messages(bob) == [{"type": "error", "message": NOT_YOURS}]
        assert "job_output:6" not in bob.channels
        assert len(hub._followers) == 1

        await asyncio.sleep(0.2)  # a few polls
        assert {r[:2] for r in runas.reads} == {("alice", path)}  # as alice, for both tabs
        assert runas.reads[0][2] == 0 and {r[2] for r in runas.reads[1:]} == {8}
        first = {"type": "job_output", "job_id": "6", "stream": "stdout", "offset": 0}
        for conn in tabs:
            assert messages(conn) == [{**first, "data": "epoch 1\n"}]
        runas.files[path] += b"epoch 2\n"
        await asyncio.sleep(0.2)
        assert [m["data"] for m in messages(tabs[0])] == ["epoch 2\n"]

        # A third tab joins late: told how far the follower has read, so it can fetch
        # what it missed; it shares the same follower.
        late = hub.register(FakeSocket(), LiveIdentity(ALICE))
        hub.handle(late, subscribe)
        assert messages(late) == [{**first, "offset": 16, "data": ""}]
        assert len(hub._followers) == 1

        # The last one to leave stops the reading at once.
        for conn in (*tabs, late):
            hub.handle(conn, json.dumps({"type": "unsubscribe", "channels": ["job_output:6"]}))
        assert hub._followers == {}
        await asyncio.sleep(0.01)
        reads = len(runas.reads)
        await asyncio.sleep(0.2)
        assert len(runas.reads) == reads

    asyncio.run(scenario())


def test_a_long_output_is_followed_from_its_last_chunk() -> None:
    job = next(j for j in JOBS if j.id == "6")
    assert job.private is not None
    path = f"{job.private.work_dir}/train-6.out"
    runas = FakeRunAs({path: b"x" * 1000 + b"tail\n"})
    hub = make_hub(runas, live_output_poll_seconds=0.05, output_chunk_bytes=100)

    async def scenario() -> list[dict[str, Any]]:
        hub.on_refresh(None, build(1, JOBS))
        tab = hub.register(FakeSocket(), LiveIdentity(ALICE))
        hub.handle(tab, json.dumps({"type": "subscribe", "channels": ["job_output:6"]}))
        await asyncio.sleep(0.3)
        got = messages(tab)
        hub.handle(tab, json.dumps({"type": "unsubscribe", "channels": ["job_output:6"]}))
        return got

    got = asyncio.run(scenario())
    assert [(m["offset"], m["data"]) for m in got] == [(905, "x" * 95 + "tail\n")]
    assert [r[2] for r in runas.reads[:2]] == [0, 905]  # not the 900 bytes before


def test_output_of_a_job_not_in_the_snapshot_yet_waits_for_it() -> None:
    hub = make_hub(FakeRunAs({}), live_output_poll_seconds=0.05)
    theirs = next(j for j in JOBS if j.id == "6").model_copy(
        update={"id": "12345", "job_id": 12345}
    )

    async def scenario() -> None:
        first = build(1, JOBS)
        hub.on_refresh(None, first)
        bob = hub.register(FakeSocket(), LiveIdentity(BOB))
        hub.handle(bob, json.dumps({"type": "subscribe", "channels": ["job_output:12345"]}))
        await asyncio.sleep(0.1)
        assert queued(bob) == [] and "job_output:12345" in bob.channels
        # It shows up, and it is alice's: bob is told and unsubscribed, nothing is read.
        hub.on_refresh(first, build(2, [*JOBS, theirs]))
        await asyncio.sleep(0.1)
        assert messages(bob) == [{"type": "error", "message": NOT_YOURS}]
        assert "job_output:12345" not in bob.channels
        assert hub._followers == {}

    asyncio.run(scenario())


# --- The protocol, through serve() ---------------------------------------------------------


def run_session(
    hub: LiveHub, who: Principal, script: list[Any], jti: str | None = None
) -> FakeSocket:
    """Serve one fake socket: say ``script``, then hang up; return what it got."""

    async def main() -> FakeSocket:
        socket = FakeSocket()
        for line in script:
            socket.say(line)
        task = asyncio.create_task(hub.serve(socket, LiveIdentity(who, jti=jti)))
        await asyncio.sleep(0.1)
        if socket.closed is None:
            socket.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, 5)
        await asyncio.sleep(0.05)
        return socket

    return asyncio.run(main())


def test_hello_ping_subscribe_and_current_state() -> None:
    hub = make_hub()
    hub.on_refresh(None, build(4, JOBS))
    socket = run_session(
        hub,
        ALICE,
        [{"type": "ping"}, {"type": "subscribe", "channels": ["cluster", "nodes", "jobs"]}],
    )
    kinds = [m["type"] for m in socket.sent]
    assert socket.sent[0] == {"type": "hello", "user": "alice", "generation": 0}
    assert kinds == ["hello", "pong", "cluster", "nodes"]
    assert socket.sent[2]["summary"]["nodes_total"] == len(NODES)
    assert {n["name"] for n in socket.sent[3]["changed"]} == {n.name for n in NODES}
    assert hub.connections == frozenset()  # gone after the hang-up


def test_bad_messages_get_errors_and_twenty_close_the_socket() -> None:
    hub = make_hub()
    script: list[Any] = [
        "not json",
        [1, 2],
        {"type": "dance"},
        {"type": "subscribe", "channels": "jobs"},
        {"type": "subscribe", "channels": ["jobs", "weather"]},
        {"type": "subscribe", "channels": ["job_output:../etc"]},
        {"type": "ping"},
    ]
    socket = run_session(hub, BOB, script)
    errors = [m for m in socket.sent if m["type"] == "error"]
    assert len(errors) == 6 and socket.closed is None
    assert "weather" in errors[4]["message"]
    assert socket.sent[-1] == {"type": "pong"}

    socket = run_session(hub, BOB, ["nope"] * (MAX_BAD_MESSAGES + 5))
    errors = [m for m in socket.sent if m["type"] == "error"]
    assert len(errors) == MAX_BAD_MESSAGES
    assert socket.closed == (CLOSE_POLICY, "Too many bad messages.")


def test_logout_closes_that_sessions_sockets_only() -> None:
    hub = make_hub()

    async def main() -> tuple[FakeSocket, FakeSocket]:
        await hub.start()
        mine, other = FakeSocket(), FakeSocket()
        tasks = [
            asyncio.create_task(hub.serve(mine, LiveIdentity(ALICE, jti="jti-1"))),
            asyncio.create_task(hub.serve(other, LiveIdentity(ALICE, jti="jti-2"))),
        ]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(hub.session_ended, "jti-1")  # as log_out does, from a thread
        await asyncio.wait_for(tasks[0], 5)
        assert not tasks[1].done()
        await hub.stop()
        await asyncio.wait_for(tasks[1], 5)
        return mine, other

    mine, other = asyncio.run(main())
    assert mine.closed == (CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)
    assert other.closed is not None and other.closed[0] == 1001


def test_expired_and_revoked_sessions_are_closed_after_a_refresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    upgrade(Settings(database_url=url, jwt_secret=SecretStr(TEST_SECRET)))
    hub = make_hub(database_url=url)

    async def main() -> list[tuple[int, str | None] | None]:
        past = datetime.now(UTC) - timedelta(seconds=1)
        sockets = [FakeSocket() for _ in range(3)]
        identities = [
            LiveIdentity(ALICE, jti="old", expires_at=past),
            LiveIdentity(BOB, jti="revoked-elsewhere"),
            LiveIdentity(BOB, jti="fine", expires_at=past + timedelta(hours=1)),
        ]
        tasks = [
            asyncio.create_task(hub.serve(s, i)) for s, i in zip(sockets, identities, strict=True)
        ]
        await asyncio.sleep(0.05)
        # Another replica's logout: only in the database, seen at the next sync.
        claims = auth.TokenClaims(
            "bob", "revoked-elsewhere", "user", past, past + timedelta(hours=1)
        )
        with hub.database.session() as session:
            auth.revoke_token(session, claims)
        await hub._check_sessions(build(1, JOBS))
        await asyncio.sleep(0.05)
        codes = [s.closed for s in sockets]
        for s in sockets:
            await s.close(1000)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return codes

    codes = asyncio.run(main())
    assert codes[0] is not None and codes[0][0] == CLOSE_NOT_AUTHENTICATED
    assert codes[1] == (CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)
    assert codes[2] is None


# --- The snapshot hook --------------------------------------------------------------------


def test_a_failing_listener_does_not_break_the_refresher() -> None:
    settings = Settings(database_url="sqlite://", jwt_secret=SecretStr(TEST_SECRET))
    service = SnapshotService(cast(SlurmAdapter, FakeAdapter()), settings)
    calls: list[tuple[int | None, int]] = []

    def broken(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        raise RuntimeError("listener bug")

    def good(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        calls.append((previous.generation if previous else None, current.generation))

    service.add_listener(broken)
    service.add_listener(good)

    async def main() -> None:
        assert await service.refresh() is not None
        assert await service.refresh() is not None

    asyncio.run(main())
    assert calls == [(None, 1), (1, 2)]
    assert service.health().last_error is None


# --- The endpoint ---------------------------------------------------------------------------


@pytest.fixture
def app_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'live.db'}",
        jwt_secret=SecretStr(TEST_SECRET),
        principal_cache_seconds=0,
        allowed_origins=["https://ui.example.org"],
    )
    upgrade(settings)
    monkeypatch.setattr(auth, "lookup_principal", lambda name, _group: PEOPLE.get(name))
    # Fake people have no Unix account for PAM to check.
    monkeypatch.setattr(auth, "account_refusal", lambda _who, _settings: None)
    return settings


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings, start_refresher=False)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def token_for(settings: Settings, who: Principal) -> auth.IssuedToken:
    return auth.issue_token(settings, who)


def test_a_foreign_origin_is_refused_and_the_same_origin_works(
    client: TestClient, app_settings: Settings
) -> None:
    cookie = {"cookie": f"{app_settings.cookie_name}={token_for(app_settings, ALICE).token}"}
    evil = {**cookie, "origin": "https://evil.example.com"}
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/api/v1/ws", headers=evil),
    ):
        pass
    assert refused.value.status_code == 403
    assert refused.value.json()["code"] == "forbidden"
    for origin in ("http://testserver", "https://ui.example.org"):
        with client.websocket_connect("/api/v1/ws", headers={**cookie, "origin": origin}) as ws:
            assert ws.receive_json() == {"type": "hello", "user": "alice", "generation": 0}


def test_unauthenticated_sockets_are_refused(client: TestClient, app_settings: Settings) -> None:
    attempts: list[dict[str, str]] = [
        {},
        {"cookie": f"{app_settings.cookie_name}=garbage"},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Basic YWxpY2U6YWxpY2UtZGVtbw=="},
        {"authorization": "Bearer hpcp_" + "x" * 40},  # no such API token
    ]
    for headers in attempts:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect("/api/v1/ws", headers=headers),
        ):
            pass
        assert refused.value.status_code == 401, headers
        assert refused.value.json()["code"] == "not_authenticated"


def test_bearer_jwt_works_and_logout_closes_the_socket(
    client: TestClient, app_settings: Settings
) -> None:
    issued = token_for(app_settings, BOB)
    bearer = {"authorization": f"Bearer {issued.token}"}
    with client.websocket_connect("/api/v1/ws", headers=bearer) as ws:
        assert ws.receive_json()["user"] == "bob"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        assert client.post("/api/v1/auth/logout", headers=bearer).status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_NOT_AUTHENTICATED
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/api/v1/ws", headers=bearer),
    ):
        pass
    assert refused.value.status_code == 401
