"""The run-as boundary refuses Slurm's daemon account and the deny list whatever their
shell, and, with a group limit, sudo refuses anyone outside the group. Real sudo,
real users, the real helper as ``hpcportal runas install`` writes it.

Debian's ``slurm`` account (UID 64030, above ``min_uid``) is given ``/bin/bash`` for
a test and its shell restored afterwards whatever happens. The dev cluster runs its
daemons as root, so the tests name ``slurm`` as ``SlurmUser`` in a copy of its
slurm.conf, which is what ``runas install`` reads. Each test installs its own helper
and sudoers file under a test name (never the shared ``hpcportal-runas``) and removes
both afterwards.
"""

from __future__ import annotations

import html
import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hpcportal.app import create_app
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.errors import Forbidden
from hpcportal.runas import RunAs
from hpcportal.runas.assemble import SYSTEM_PYTHON, helper_source
from hpcportal.runas.install import ensure_service_account, install
from tests.integration.service_portal import SERVICE_ACCOUNT, run_as_service

STAT = json.dumps({"v": 1, "op": "list", "root": "/", "path": "", "entries": False}) + "\n"


@pytest.fixture
def slurm_conf(devcluster: dict[str, Any], tmp_path: Path) -> Path:
    """The dev cluster's slurm.conf with ``SlurmUser=slurm``, as on a Debian site."""
    text = Path(devcluster["slurm_conf"]).read_text()
    text, count = re.subn(r"(?im)^SlurmUser=.*$", "SlurmUser=slurm", text)
    assert count == 1
    conf = tmp_path / "slurm.conf"
    conf.write_text(text)
    return conf


@pytest.fixture
def slurm_with_bash() -> Iterator[None]:
    """``slurm`` with a login shell for the test; the old shell comes back even on failure."""
    before = pwd.getpwnam("slurm").pw_shell
    subprocess.run(["usermod", "-s", "/bin/bash", "slurm"], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["usermod", "-s", before, "slurm"], check=True, capture_output=True)
        assert pwd.getpwnam("slurm").pw_shell == before


def installed(name: str, **options: Any) -> Iterator[Path]:
    """A helper and sudoers rule of this test's own (sudo skips sudoers.d names with dots)."""
    helper = Path("/usr/local/libexec") / f"hpcportal-runas-{name}-{os.getpid()}"
    sudoers = Path("/etc/sudoers.d") / helper.name
    ensure_service_account(SERVICE_ACCOUNT)
    try:
        install(SERVICE_ACCOUNT, helper, min_uid=1000, sudoers=sudoers, **options)
        yield helper
    finally:
        sudoers.unlink(missing_ok=True)
        helper.unlink(missing_ok=True)


@pytest.fixture
def deny_helper(slurm_conf: Path) -> Iterator[Path]:
    yield from installed("deny", slurm_conf=slurm_conf, deny_users=["dave"])


@pytest.fixture
def group_helper(slurm_conf: Path) -> Iterator[Path]:
    yield from installed("group", slurm_conf=slurm_conf, group="research")


def helper_as(user: str, program: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the helper as ``user`` directly (root's runuser): no sudo rule in the way,
    so what answers is the helper's own check."""
    return subprocess.run(
        ["runuser", "-u", user, "--", *program],
        input=STAT,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        check=False,
    )


def through_sudo(helper: Path, user: str) -> subprocess.CompletedProcess[str]:
    """The service account asks sudo to run the helper as ``user``, as the portal does."""
    return run_as_service(["sudo", "-n", "-u", user, "--", str(helper)], input=STAT)


def answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[0])
    return result


def assert_sudo_refused(done: subprocess.CompletedProcess[str]) -> None:
    """sudo itself said no: the helper never ran, so it printed nothing."""
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr.startswith("sudo:"), done.stderr


def test_the_helper_refuses_slurm_with_a_login_shell(
    slurm_with_bash: None, deny_helper: Path
) -> None:
    assert pwd.getpwnam("slurm").pw_shell == "/bin/bash"
    # The control: a helper with no deny list acts as slurm now that its shell is a
    # real one; only the shell protected it before.
    plain = helper_as("slurm", [SYSTEM_PYTHON, "-I", "-S", "-c", helper_source()])
    assert plain.returncode == 0, plain.stderr
    assert answer(plain)["ok"] is True

    refused = helper_as("slurm", [str(deny_helper)])
    assert refused.returncode == 126, refused
    assert answer(refused) == {
        "ok": False,
        "error": "refused",
        "message": "refusing to run as slurm: a Slurm daemon or denied account",
    }
    assert_sudo_refused(through_sudo(deny_helper, "slurm"))
    assert answer(through_sudo(deny_helper, "alice"))["ok"] is True


def test_a_user_on_the_deny_list_is_refused_by_helper_and_sudo(deny_helper: Path) -> None:
    assert pwd.getpwnam("dave").pw_shell == "/bin/bash"
    refused = helper_as("dave", [str(deny_helper)])
    assert refused.returncode == 126
    assert answer(refused)["error"] == "refused"
    assert_sudo_refused(through_sudo(deny_helper, "dave"))
    assert answer(through_sudo(deny_helper, "carol"))["ok"] is True


def test_outside_the_group_sudo_refuses(group_helper: Path) -> None:
    assert answer(through_sudo(group_helper, "alice"))["ok"] is True
    assert answer(through_sudo(group_helper, "bob"))["ok"] is True
    assert_sudo_refused(through_sudo(group_helper, "dave"))  # physics, not research
    assert_sudo_refused(through_sudo(group_helper, "carol"))
    # The limit is sudo's: the helper itself would act as dave.
    assert answer(helper_as("dave", [str(group_helper)]))["ok"] is True


def test_the_portal_says_why_as_a_403(slurm_with_bash: None, slurm_conf: Path) -> None:
    """The portal refuses before starting anything, with the reason, as a 403 error."""
    runas = RunAs(method="runuser", slurm_conf=slurm_conf, deny_users=["dave"], group="research")
    for user, reason in [
        ("slurm", "'slurm' is a Slurm daemon account or on the deny list (runas_deny_users)"),
        ("dave", "'dave' is a Slurm daemon account or on the deny list (runas_deny_users)"),
        ("carol", "'carol' is not in the group 'research' of portal users"),
    ]:
        with pytest.raises(Forbidden) as refused:
            runas.call(user, {"op": "list", "root": "/", "path": "", "entries": False})
        assert refused.value.status == 403
        assert str(refused.value) == f"The portal does not act as that user: {reason}."
    assert runas.call("alice", {"op": "list", "root": "/", "path": "", "entries": False})["ok"]


def test_a_denied_user_sees_a_clear_403_not_a_stack_trace(
    devcluster: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'portal.db'}",
        jwt_secret=SecretStr("runas-deny-test-secret-long-enough-for-hs256"),
        slurm_conf=Path(devcluster["slurm_conf"]),
        runas_deny_users=["dave"],
        login_failure_delay_seconds=0,
    )
    upgrade(settings)
    with TestClient(create_app(settings, start_refresher=False)) as client:
        login = client.post(
            "/api/v1/auth/token", data={"username": "dave", "password": "dave-demo"}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        listing = client.get("/api/v1/files/home", headers=headers)
        page = client.get("/files/home", headers=headers)
    assert listing.status_code == 403, listing.text
    assert "dave" in listing.json()["detail"]
    assert "deny list" in listing.json()["detail"]
    assert page.status_code == 403, page.text[:500]
    shown = html.escape(listing.json()["detail"], quote=True).replace("&#x27;", "&#39;")
    assert f'<p data-testid="error-message">{shown}</p>' in page.text
    for text in (listing.text, page.text):
        assert "Traceback" not in text
        assert "RunAsRefused" not in text
