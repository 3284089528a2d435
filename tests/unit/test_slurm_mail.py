"""Slurm's mail caught (issue 15.4): the subject parser, hpcportal-mailprog and its bash
twin against a loopback receiver, and the portal side (one notification per event,
shared with the detector's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hpcportal.api import slurm_mail as slurm_mail_api
from hpcportal.config import Settings
from hpcportal.db.models import Notification, NotificationPreference
from hpcportal.db.session import Database
from hpcportal.errors import install_error_handlers
from hpcportal.services.notifications import slurm_mail
from hpcportal.services.notifications.detector import insert_new, new_row
from hpcportal.services.notifications.texts import make_event
from hpcportal.slurm_mail import mailprog
from hpcportal.slurm_mail.subject import parse_subject
from tests.app_services import bare_app

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

# --- The subject, as slurmctld's mail_job_info writes it (22.05 to 26.05) --------------


@pytest.mark.parametrize(
    ("subject", "job_id", "name", "kind", "state", "exit_code"),
    [
        ("Slurm Job_id=12 Name=x Ended, Run time 00:00:05, COMPLETED, ExitCode 0",
         "12", "x", "ended", "COMPLETED", 0),
        ("Slurm Job_id=13 Name=wrap Began, Queued time 00:00:01", "13", "wrap", "began", None,
         None),
        ("Slurm Job_id=14 Name=a b, Ended Failed, Run time 1-02:03:04, FAILED, ExitCode 3",
         "14", "a b, Ended", "failed", "FAILED", 3),
        ("Slurm Job_id=15 Name=t Ended, Run time 00:01:00, TIMEOUT", "15", "t", "ended",
         "TIMEOUT", None),
        ("Slurm Job_id=16 Name=r Requeued, Run time 00:00:02", "16", "r", "requeued", None, None),
        ("Slurm Job_id=17 Name=l Reached time limit, Run time 00:10:00", "17", "l",
         "time_limit", None, None),
        ("Slurm Job_id=18 Name=l Reached 90% of time limit, Run time 00:09:00", "18", "l",
         "time_90", None, None),
        ("Slurm Array Task Job_id=20_3 (23) Name=arr Ended, Run time 00:00:01, COMPLETED, "
         "ExitCode 0", "20_3", "arr", "ended", "COMPLETED", 0),
        ("Slurm Array Summary Job_id=20_* (20) Name=arr Ended, Mixed, ExitCode [0-1]", "20_*",
         "arr", "ended", "Mixed", None),
        ("SLURM Job_id=21 Name=old Ended, Run time 00:00:01, CANCELLED", "21", "old", "ended",
         "CANCELLED", None),
    ],
)  # fmt: skip
def test_slurm_subjects_parse(
    subject: str, job_id: str, name: str, kind: str, state: str | None, exit_code: int | None
) -> None:
    mail = parse_subject(subject)
    assert mail is not None
    assert (mail.job_id, mail.name, mail.mail_type, mail.state, mail.exit_code) == (
        job_id, name, kind, state, exit_code,
    )  # fmt: skip


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "Hello alice",
        "Slurm Job_id=x Name=a Ended, Run time 00:00:01, COMPLETED, ExitCode 0",
        "Slurm Job_id=12 Name=a Exploded",
        "Slurm Job_id=12_3 Name=a Ended, COMPLETED",  # an array id without "Array Task"
        "Slurm Array Task Job_id=12 (12) Name=a Ended, COMPLETED",
        "Slurm Job_id=12 Name=a Ended, Run time 00:00:01, COMPLETED, ExitCode 0\nBcc: x",
        "Slurm Job_id=12 Name=a Ended, Run time soon, COMPLETED",
    ],
)
def test_anything_else_is_no_slurm_mail(subject: str) -> None:
    assert parse_subject(subject) is None


# --- hpcportal-mailprog and mailprog.sh against a loopback receiver (a test peer) --------


class Receiver:
    """A loopback HTTP server standing in for the portal: records each POST."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                outer.posts.append((self.headers.get("Authorization", ""), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/slurm-mail"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = Receiver()
    yield peer
    peer.close()


def _config(tmp_path: Path, url: str) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    config = tmp_path / "slurm-mail.conf"
    config.write_text(f"# test\nurl = {url}\nsecret_file = {secret}\ntimeout = 3\n")
    return config


SUBJECT = 'Slurm Job_id=42 Name=we"ird\\ name Ended, Run time 00:00:05, COMPLETED, ExitCode 0'
ENV = {"SLURM_JOB_USER": "alice", "SLURM_JOB_ID": "42"}
EXPECTED = {"subject": SUBJECT, "recipient": "alice", "job_user": "alice", "job_id": "42"}


def test_mailprog_posts_the_subject_with_the_secret(tmp_path: Path, receiver: Receiver) -> None:
    config = _config(tmp_path, receiver.url)
    assert mailprog.run(["--config", str(config), "-s", SUBJECT, "alice"], ENV) == 0
    assert receiver.posts == [("Bearer s3cret-value", EXPECTED)]


def test_mailprog_sh_posts_the_same(tmp_path: Path, receiver: Receiver) -> None:
    script = Path(str(files("hpcportal.slurm_mail") / "mailprog.sh"))
    config = _config(tmp_path, receiver.url)
    done = subprocess.run(
        ["bash", str(script), "--config", str(config), "-s", SUBJECT, "alice"],
        env={"PATH": os.environ["PATH"], **ENV}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert receiver.posts == [("Bearer s3cret-value", EXPECTED)]


@pytest.mark.parametrize("program", ["python", "bash"])
def test_failures_exit_0_and_say_why(tmp_path: Path, program: str) -> None:
    peer = Receiver(status=401)
    try:
        config = _config(tmp_path, peer.url)
        args = ["--config", str(config), "-s", SUBJECT, "alice"]
        if program == "python":
            argv = [sys.executable, "-m", "hpcportal.slurm_mail.mailprog"]
        else:
            argv = ["bash", str(files("hpcportal.slurm_mail") / "mailprog.sh")]
        done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30)
    finally:
        peer.close()
    assert done.returncode == 0
    assert "refused" in done.stderr and "401" in done.stderr
    assert len(peer.posts) == 1


def test_a_subject_that_is_no_job_mail_is_not_posted(tmp_path: Path, receiver: Receiver) -> None:
    config = _config(tmp_path, receiver.url)
    assert mailprog.run(["--config", str(config), "-s", "Hello", "alice"], {}) == 0
    assert receiver.posts == []


# --- The portal side -----------------------------------------------------------------------


def _mail(subject: str, user: str = "alice") -> slurm_mail.SlurmMailIn:
    return slurm_mail.SlurmMailIn(subject=subject, recipient=user, job_user=user, job_id=None)


def _rows(database: Database) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    with database.session() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        return [(r.username, r.job_id, r.event, dict(r.params)) for r in rows]


def test_a_mail_becomes_the_detectors_event_once(database: Database) -> None:
    end = "Slurm Job_id=77 Name=wrap Ended, Run time 00:00:01, FAILED, ExitCode 2"
    with database.session() as session:
        first = slurm_mail.receive(session, _mail(end), NOW)
    with database.session() as session:
        again = slurm_mail.receive(session, _mail(end), NOW)
    assert first.answer.events == ["failed"] and first.answer.stored == 1
    assert len(first.deliveries) == 1 and first.deliveries[0].username == "alice"
    assert again.answer.stored == 0 and again.deliveries == []
    # The detector then sees the same end: its insert-if-absent finds the row.
    event = make_event("failed", "alice", "77", "wrap", "FAILED", exit_code=2)
    with database.session() as session:
        row = new_row("alice", "job", event.event, event.title, event.body, event.params, NOW,
                      job_id="77")  # fmt: skip
        assert insert_new(session, [row], ["username", "job_id", "event"]) == []
    [(user, job, name, params)] = _rows(database)
    assert (user, job, name, params["source"], params["exit_code"]) == (
        "alice", "77", "failed", "slurm_mail", 2,
    )  # fmt: skip


def test_what_the_detector_stored_first_is_not_told_again(database: Database) -> None:
    event = make_event("completed", "alice", "78", "wrap", "COMPLETED", exit_code=0)
    with database.session() as session:
        row = new_row("alice", "job", event.event, event.title, event.body, event.params, NOW,
                      job_id="78")  # fmt: skip
        insert_new(session, [row], ["username", "job_id", "event"])
    end = "Slurm Job_id=78 Name=wrap Ended, Run time 00:00:01, COMPLETED, ExitCode 0"
    with database.session() as session:
        received = slurm_mail.receive(session, _mail(end), NOW)
    assert received.answer.accepted and received.answer.stored == 0
    assert len(_rows(database)) == 1


def test_the_owners_choices_apply_and_unknown_users_are_refused(database: Database) -> None:
    began = "Slurm Job_id=79 Name=w Began, Queued time 00:00:01"
    with database.session() as session:  # "started" is off by default
        assert slurm_mail.receive(session, _mail(began), NOW).answer.stored == 0
        session.add(NotificationPreference(username="alice", event="started", enabled=True,
                                           updated_at=NOW))  # fmt: skip
    with database.session() as session:
        assert slurm_mail.receive(session, _mail(began), NOW).answer.stored == 1
    end = "Slurm Job_id=80 Name=w Ended, Run time 00:00:01, COMPLETED, ExitCode 0"
    with database.session() as session:
        nobody = slurm_mail.SlurmMailIn(subject=end, recipient="x@example.org")
        assert not slurm_mail.receive(session, nobody, NOW).answer.accepted
        ghost = _mail(end, "no-such-user-here")
        assert not slurm_mail.receive(session, ghost, NOW).answer.accepted
    assert [r[2] for r in _rows(database)] == ["started"]


def test_the_endpoint_wants_the_secret(
    tmp_path: Path, db_settings: Settings, database: Database
) -> None:
    secret = tmp_path / "mail.secret"
    secret.write_text("right-secret\n")
    settings = db_settings.model_copy(update={"slurm_mail_secret_file": secret})
    app = bare_app(settings, database=database)
    install_error_handlers(app)
    app.include_router(slurm_mail_api.router, prefix="/api/v1")
    body = {"subject": "Slurm Job_id=81 Name=w Ended, Run time 00:00:01, COMPLETED, ExitCode 0",
            "recipient": "alice", "job_user": "alice", "job_id": "81"}  # fmt: skip
    with TestClient(app) as client:
        assert client.post("/api/v1/slurm-mail", json=body).status_code == 401
        wrong = {"Authorization": "Bearer wrong-secret"}
        assert client.post("/api/v1/slurm-mail", json=body, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer right-secret"}
        answer = client.post("/api/v1/slurm-mail", json=body, headers=right)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1 and answer.json()["events"] == ["completed"]
