"""Schemathesis over the whole OpenAPI of a real portal: no 5xx, no answer the spec
does not describe.

A portal runs on loopback against the live dev cluster; for every operation in its
OpenAPI document, schemathesis draws valid (positive) and invalid (negative)
requests, sent as alice and as carol (admin), and every answer must pass
``not_a_server_error`` and the conformance checks (:data:`CHECKS`): its status is
documented for the operation, its media type is one the spec lists, its body
matches the schema (the error schema for every 4xx/5xx, ``api/openapi.py``), its
documented headers are well-formed. A failure lists each operation that broke a
check, with the check's message and a curl command that reproduces it.

alice and carol are real users shared with other tests, so the run is fenced in:

- the portal's own database (a throwaway SQLite file);
- ``file_roots``, uploads, job and session folders all inside a throwaway folder,
  one sub-folder per user, owned by that user: the file API never sees a home;
- ``POST /jobs`` and template submission always carry ``dry_run=true`` (a real one
  would run generated scripts as a real user on the shared cluster);
- a job id that could name a real job is replaced, in job actions, by a job this
  run submitted itself (held, so it never runs; carol is a Slurm administrator and
  could otherwise cancel anyone's); output streams get a job of the run that was
  cancelled while held (finished, so the stream ends);
- ``POST /auth/logout`` is left out (it would end the run's own session);
- afterwards every job of the run, sessions included, is cancelled.

Bounded by ``HPCPORTAL_FUZZ_EXAMPLES`` examples per operation and mode (default 6)
and ``HPCPORTAL_FUZZ_SECONDS`` per user (default 150): a few minutes on 2 cores.
``scripts/fuzz_api.sh`` runs it longer by hand.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FailedHealthCheck, Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from sqlalchemy import create_engine, text

from hpcportal.config import FileRoot
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

EXAMPLES = int(os.environ.get("HPCPORTAL_FUZZ_EXAMPLES", "6"))
SECONDS_PER_USER = float(os.environ.get("HPCPORTAL_FUZZ_SECONDS", "150"))
#: Left out, with the reason.
EXCLUDED = {("POST", "/api/v1/auth/logout"): "would revoke the run's own token"}
#: Always dry runs: a real submission would run a generated script as a real user.
DRY_RUN_ONLY = {("POST", "/api/v1/jobs"), ("POST", "/api/v1/templates/{template_id}/submit")}
JOB_ACTIONS = re.compile(r"^/api/v1/jobs/\{job_id\}/(\{action\}|signal)$")
JOB_STREAM = "/api/v1/jobs/{job_id}/output/stream"
LOOKS_LIKE_A_JOB = re.compile(r"^[0-9]+([_+][0-9]+)?$")
#: Every answer: no server error, and only what the spec says.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# tus chunks are bytes under their own media type (declared in api/openapi.py).
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
#: Never runs unless the run releases it, and then only for a minute.
HELD = "#!/bin/bash\n#SBATCH --hold\nsleep 20\n"


@dataclass
class Fuzzer:
    """One user's run: their token, the jobs to point actions at, what went wrong."""

    portal: RunningPortal
    user: str
    headers: dict[str, str]
    held_job: str
    finished_job: str
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)

    def prepare(self, case: Any) -> None:
        """Keep the run off other people's jobs and off real submissions."""
        key = (case.method.upper(), case.operation.path)
        # tus declares Content-Length; a generated one ("&h1") is not HTTP, and uvicorn
        # refuses it before the portal sees it. The client sets the real length.
        for name in [n for n in case.headers or {} if n.lower() == "content-length"]:
            del case.headers[name]
        if key in DRY_RUN_ONLY:
            case.query = {**(case.query or {}), "dry_run": "true"}
        job_id = (case.path_parameters or {}).get("job_id")
        if isinstance(job_id, str) and LOOKS_LIKE_A_JOB.match(job_id):
            if JOB_ACTIONS.match(case.operation.path):
                case.path_parameters["job_id"] = self.held_job
            elif case.operation.path == JOB_STREAM:
                case.path_parameters["job_id"] = self.finished_job

    def check(self, case: Any) -> None:
        self.prepare(case)
        self.requests += 1
        response = case.call(base_url=self.portal.url, headers=self.headers, timeout=60)
        self.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            curl = case.as_curl_command(headers={"Authorization": "Bearer ..."})
            found = "; ".join(_titles(exc))
            self.failures.append(
                f"{case.operation.label} as {self.user}: {response.status_code} [{found}] "
                f"{response.headers.get('content-type', '')} "
                f"{response.text[:200]}\n    {curl}"
            )
            raise


def _titles(exc: BaseException) -> list[str]:
    """Each failed check's title and message, on one line each."""
    failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
    said = []
    for failure in failures:
        title = getattr(failure, "title", type(failure).__name__)
        message = " ".join(str(getattr(failure, "message", failure)).split())
        said.append(f"{title}: {message[:300]}")
    return said


def run_operation(fuzzer: Fuzzer, operation: Any, mode: GenerationMode) -> None:
    """``EXAMPLES`` cases of one operation in one mode; the first failure stops it."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[p for p in settings.default.phases if p.name != "shrink"],
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        fuzzer.check(case)

    try:
        one()
    except (AssertionError, FailureGroup):
        pass  # recorded in fuzzer.failures, with the curl command
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): the positive cases cover it.
        if mode is GenerationMode.POSITIVE:
            fuzzer.skipped.append(f"{operation.label} ({mode.value}): no cases")
    except FailedHealthCheck as exc:
        fuzzer.skipped.append(f"{operation.label} ({mode.value}): {type(exc).__name__}")


def fuzz(fuzzer: Fuzzer) -> None:
    schema = schemathesis.openapi.from_url(
        f"{fuzzer.portal.url}/api/v1/openapi.json", headers=fuzzer.headers
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60, "the OpenAPI document lost its operations"
    deadline = time.monotonic() + SECONDS_PER_USER
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() > deadline:
                fuzzer.skipped.append(f"{operation.label} ({mode.value}): out of time")
                continue
            started = time.monotonic()
            run_operation(fuzzer, operation, mode)
            fuzzer.seconds[operation.label] = (
                fuzzer.seconds.get(operation.label, 0.0) + time.monotonic() - started
            )


# --- the fenced-in portal ---------------------------------------------------------------


@pytest.fixture(scope="module")
def playground() -> Iterator[Path]:
    """A folder every user can enter, with one sub-folder owned by each fuzzed user."""
    base = Path(tempfile.mkdtemp(prefix="hpcportal-fuzz-", dir="/tmp"))
    base.chmod(0o755)
    for user in ("alice", "carol"):
        mine = base / user
        mine.mkdir(mode=0o700)
        shutil.chown(mine, user)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def portal(playground: Path, make_portal: PortalFactory) -> RunningPortal:
    area = f"{playground}/{{user}}"
    (playground / "portal-db").mkdir()
    return make_portal(
        tmp=playground / "portal-db",
        file_roots=[FileRoot(name="fuzz", path=area)],
        upload_root=f"{area}/uploads",
        submission_root=f"{area}/jobs",
        session_root=f"{area}/sessions",
    )


def submit(portal: RunningPortal, headers: dict[str, str], user: str, script: str) -> str:
    body = {
        "script": script,
        "time_limit": "2",
        "work_dir": f"{portal.settings.file_roots[0].path.replace('{user}', user)}",
    }
    with portal.client() as c:
        r = c.post("/api/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["job_id"])


def wait_finished(portal: RunningPortal, headers: dict[str, str], job_id: str) -> None:
    deadline = time.monotonic() + 60
    with portal.client() as c:
        while time.monotonic() < deadline:
            r = c.get(f"/api/v1/jobs/{job_id}", headers=headers)
            if r.status_code == 200 and r.json()["job"]["status"] not in ("queued", "running"):
                return
            time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish")


def run_jobs(portal: RunningPortal) -> list[str]:
    """Job ids of sessions the run launched (from the portal's own database)."""
    engine = create_engine(portal.settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT job_id FROM interactive_sessions"))
            return [str(row[0]) for row in rows if row[0] is not None]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fuzzer_for(
    portal: RunningPortal, devcluster: dict[str, Any]
) -> Iterator[Callable[[str], Fuzzer]]:
    submitted: list[str] = []

    def make(user: str) -> Fuzzer:
        headers = portal.login(user)
        held = submit(portal, headers, user, HELD)
        # Cancelled while held: finished at once, without needing a free node.
        done = submit(portal, headers, user, HELD)
        submitted.extend((held, done))
        with portal.client() as c:
            cancelled = c.post(f"/api/v1/jobs/{done}/cancel", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        wait_finished(portal, headers, done)
        return Fuzzer(portal, user, headers, held_job=held, finished_job=done)

    try:
        yield make
    finally:
        ids = [*submitted, *run_jobs(portal)]
        slurm_cli.scancel(devcluster["slurm_conf"], *map(int, ids), missing_ok=True)


def report(fuzzer: Fuzzer) -> str:
    total = sum(fuzzer.seconds.values())
    lines = [f"{fuzzer.requests} requests as {fuzzer.user} in {total:.0f} s"]
    lines.append("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(fuzzer.statuses.items())))
    slowest = sorted(fuzzer.seconds.items(), key=lambda item: -item[1])[:5]
    lines.append("slowest: " + ", ".join(f"{label} {s:.1f} s" for label, s in slowest))
    if fuzzer.skipped:
        lines.append(f"not fully tested: {'; '.join(fuzzer.skipped)}")
    return "\n".join(lines)


class Tracebacks(logging.Handler):
    """Errors logged with a traceback while the run went on: an exception that escaped
    after a streamed answer had started (a 200 cut short) never shows up as a 5xx."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()}\n{self.format(record)}")


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_every_answer_is_in_the_spec_and_none_is_5xx(
    user: str, fuzzer_for: Callable[[str], Fuzzer], capsys: pytest.CaptureFixture[str]
) -> None:
    fuzzer = fuzzer_for(user)
    tracebacks = Tracebacks()
    # uvicorn's loggers do not propagate to the root logger; the portal's do.
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(tracebacks)
    try:
        fuzz(fuzzer)
    finally:
        for logger in loggers:
            logger.removeHandler(tracebacks)
    with capsys.disabled():
        print(f"\n{report(fuzzer)}")
    assert fuzzer.requests > 100, "the run sent almost nothing"
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
    assert not tracebacks.records, "\n\n".join(tracebacks.records[:5])


def test_the_fence_holds(portal: RunningPortal, playground: Path) -> None:
    """The file API of this portal sees only the throwaway folder."""
    headers = portal.login("alice")
    with httpx.Client(base_url=portal.url, headers=headers, timeout=30) as c:
        roots = c.get("/api/v1/files").json()
    assert [r["name"] for r in roots] == ["fuzz"]
    assert roots[0]["path"].startswith(str(playground))
