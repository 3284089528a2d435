"""Integration tests run against the live dev cluster, which the session brings up.

Nothing is skipped: if the cluster cannot come up the first test errors with the
reason and the log tail, because a silently skipped integration suite proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from hpcportal.devcluster import DevCluster
from tests.integration.forgotten_job import ForgettableJob, submit_forgettable
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


#: ``scripts/test.sh --slurm REL`` names the release; a directory keeps the one it has.
RELEASE_ENV = "HPCPORTAL_DEVCLUSTER_SLURM"


#: The modules whose talk with Slurm differs between releases: the read API against
#: squeue/sinfo JSON and accounting (field by field on a mix of jobs in
#: test_release_equality), submit/control/output/efficiency as the user (through sudo
#: and runuser), idempotent submits (squeue and sacct by comment), templates, the
#: snapshot and live updates, sessions, PrivateData (on a cluster of the same release
#: with it set), and slurmctld hung, stopped or slow. Plain `scripts/test.sh` (CI) runs
#: them again on 24.11 and 26.05 after the whole suite on 22.05.
SLURM_FACING = frozenset(
    {
        "test_admin_accounts.py",
        "test_admin_nodes.py",
        "test_admin_reservations.py",
        "test_admin_scheduler.py",
        "test_devcluster_monitoring.py",
        "test_idempotency.py",
        "test_input_validation.py",
        "test_job_efficiency.py",
        "test_live.py",
        "test_private_data.py",
        "test_read_api.py",
        "test_release_equality.py",
        "test_runas_slurm.py",
        "test_sessions.py",
        "test_slurm_down.py",
        "test_slurm_slow.py",
        "test_snapshot_load.py",
        "test_submit.py",
        "test_templates_api.py",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm_facing: talks to Slurm in a way that differs between releases "
        "(conftest.SLURM_FACING); `scripts/test.sh --slurm 24.11 --slurm-facing` runs these",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below this folder ``integration`` (the hook sees all items), and
    those of the Slurm-facing modules ``slurm_facing``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            if item.path.name in SLURM_FACING:
                item.add_marker(pytest.mark.slurm_facing)


@pytest.fixture(scope="session")
def devcluster_dir() -> Path:
    """``$HPCPORTAL_DEVCLUSTER_DIR`` or the repository's ``.devcluster``."""
    return Path(os.environ.get("HPCPORTAL_DEVCLUSTER_DIR", REPO_ROOT / ".devcluster"))


@pytest.fixture(scope="session")
def devcluster(devcluster_dir: Path) -> dict[str, Any]:
    """Bring the dev cluster up (quick if it already is) and return its status.

    For a release whose clients are wrappers (24.11, 26.05), those come first on this
    process's ``PATH`` and become ``HPCPORTAL_SLURM_BIN_DIR``, so every portal the
    tests build (``Settings`` reads it), the service account's portal and the tests'
    own Slurm commands use that release, as on a site that installs it elsewhere.
    """
    status = DevCluster(devcluster_dir, release=os.environ.get(RELEASE_ENV) or None).up()
    assert status["ok"], f"dev cluster is not healthy: {status['notes']}"
    if status.get("bin_dir"):
        os.environ["HPCPORTAL_SLURM_BIN_DIR"] = status["bin_dir"]
        os.environ["PATH"] = os.pathsep.join([status["bin_dir"], os.environ.get("PATH", "")])
    return status


@pytest.fixture(scope="session")
def slurm_env(devcluster: dict[str, Any]) -> dict[str, str]:
    """An environment for Slurm commands that talks to the dev cluster."""
    return {**os.environ, "SLURM_CONF": devcluster["slurm_conf"]}


@pytest.fixture(scope="session")
def conf(devcluster: dict[str, Any]) -> str:
    """The shared dev cluster's ``slurm.conf``."""
    return str(devcluster["slurm_conf"])


#: Modules that need a job slurmctld has already forgotten (``MinJobAge``, five minutes
#: on the dev cluster): their job is submitted when the session starts, so the wait runs
#: alongside the tests before them instead of holding the suite up.
NEEDS_FORGOTTEN_JOB = frozenset({"test_browser_finished_jobs.py"})


@pytest.fixture(scope="session", autouse=True)
def forgotten_job_head_start(request: pytest.FixtureRequest) -> Iterator[list[ForgettableJob]]:
    """The jobs submitted early for ``NEEDS_FORGOTTEN_JOB`` (none when no such module
    runs; the dev cluster is then not touched). A module takes one with ``pop``."""
    submitted: list[ForgettableJob] = []
    if any(item.path.name in NEEDS_FORGOTTEN_JOB for item in request.session.items):
        submitted.append(submit_forgettable(request.getfixturevalue("conf")))
    yield submitted


@pytest.fixture(scope="module")
def make_portal(
    request: pytest.FixtureRequest, conf: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalFactory]:
    """The module's one way to settings and running portals (``portals.py``): what
    it starts stops when the module's tests are done. A fixture that starts one
    names ``make_portal`` after what the portal uses (folders, stand-ins), so the
    portal stops before they go."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with ExitStack() as stack:
        yield PortalFactory(conf, lambda: tmp_path_factory.mktemp(name), stack)


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    """A portal with the suite's settings, for the module; a module that needs other
    settings (or the service account's portal) defines its own with ``make_portal``."""
    return make_portal()


# Demo users logged in to the module's ``portal`` fixture (the default above, or the
# module's own: in-process, or run as the service account).
@pytest.fixture(scope="module")
def alice(portal: Any) -> dict[str, str]:
    return dict(portal.login("alice"))


@pytest.fixture(scope="module")
def bob(portal: Any) -> dict[str, str]:
    return dict(portal.login("bob"))


@pytest.fixture(scope="module")
def carol(portal: Any) -> dict[str, str]:
    return dict(portal.login("carol"))


@pytest.fixture(scope="module")
def browser() -> Any:
    """Debian's Chromium under Playwright, one per browser-test module."""
    from tests.integration.browser import chromium

    with chromium() as running:
        yield running
