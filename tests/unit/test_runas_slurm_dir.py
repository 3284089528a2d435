"""The run-as helper's Slurm folder (``SLURM_PATH``): only a folder that root alone can
change is accepted, at install and under runuser, and the helper run as alice takes
``squeue`` from it while a request still cannot choose another.

The folders are made under /tmp by root; the ``squeue`` in them is a test script that
says who ran it from where. They need root (to own folders and become alice) and the
demo users (``hpcportal dev-cluster up``); without either they are skipped.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcportal.errors import Misconfigured, SlurmRateLimited
from hpcportal.runas import RunAs
from hpcportal.runas.install import InstallError, helper_text, install
from hpcportal.runas.slurm_dir import UnsafeSlurmDir, installed_slurm_dir, trusted_slurm_dir
from hpcportal.slurm.executor import classify_failure

FAKE_SQUEUE = '#!/bin/sh\necho "fixed-dir squeue as $(id -un) with PATH=$PATH args $*"\n'


@pytest.fixture
def base() -> Iterator[Path]:
    """A root-owned 0755 folder under /tmp (sticky, so it may sit there)."""
    if os.geteuid() != 0:
        pytest.skip("root-owned folders need root")
    path = Path(tempfile.mkdtemp(prefix="hpcportal-slurmdir-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def slurm_dir(base: Path) -> Path:
    """A folder with the test ``squeue``, as ``dev-cluster up`` writes its wrappers."""
    folder = base / "bin"
    folder.mkdir(mode=0o755)
    script = folder / "squeue"
    script.write_text(FAKE_SQUEUE)
    script.chmod(0o755)
    return folder


def _alice() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("alice")
    except KeyError:
        pytest.skip("no user alice (hpcportal dev-cluster up creates the demo users)")


def test_a_root_owned_closed_folder_is_trusted(slurm_dir: Path) -> None:
    assert trusted_slurm_dir(slurm_dir) == slurm_dir
    link = slurm_dir.parent / "current"
    link.symlink_to(slurm_dir)
    assert trusted_slurm_dir(link) == slurm_dir  # fixed as the real folder


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_folder_writable_by_group_or_others_is_refused(slurm_dir: Path, mode: int) -> None:
    slurm_dir.chmod(mode)
    with pytest.raises(UnsafeSlurmDir, match="not writable by group or others"):
        trusted_slurm_dir(slurm_dir)


def test_a_folder_not_owned_by_root_is_refused(slurm_dir: Path) -> None:
    os.chown(slurm_dir, 65534, 65534)
    with pytest.raises(UnsafeSlurmDir, match="owned by root"):
        trusted_slurm_dir(slurm_dir)


def test_a_folder_under_one_others_may_change_is_refused(slurm_dir: Path) -> None:
    os.chown(slurm_dir.parent, 65534, 65534)  # its owner could rename bin/ away
    with pytest.raises(UnsafeSlurmDir, match="can be changed by others"):
        trusted_slurm_dir(slurm_dir)


def test_a_command_others_may_write_is_refused(slurm_dir: Path) -> None:
    (slurm_dir / "squeue").chmod(0o777)
    with pytest.raises(UnsafeSlurmDir, match="squeue must be a root-owned file"):
        trusted_slurm_dir(slurm_dir)


def test_a_command_linked_into_an_open_folder_is_refused(slurm_dir: Path, base: Path) -> None:
    open_dir = base / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    (open_dir / "sbatch").write_text("#!/bin/sh\n")
    (slurm_dir / "sbatch").symlink_to(open_dir / "sbatch")
    with pytest.raises(UnsafeSlurmDir):
        trusted_slurm_dir(slurm_dir)


def test_missing_folder_and_odd_names_are_refused(base: Path) -> None:
    with pytest.raises(UnsafeSlurmDir, match="does not exist"):
        trusted_slurm_dir(base / "nowhere")
    odd = base / "a:b"
    odd.mkdir(mode=0o755)
    with pytest.raises(UnsafeSlurmDir, match="absolute folder name"):
        trusted_slurm_dir(odd)


@pytest.mark.parametrize("unsafe", ["group-writable", "not root's"])
def test_install_refuses_an_unsafe_folder_and_writes_nothing(
    slurm_dir: Path, base: Path, unsafe: str
) -> None:
    if unsafe == "group-writable":
        slurm_dir.chmod(0o775)
    else:
        os.chown(slurm_dir, 65534, 65534)
    helper, sudoers = base / "helper", base / "sudoers"
    with pytest.raises(InstallError, match="refusing --slurm-bin-dir"):
        install("hpcportal", helper, sudoers=sudoers, slurm_bin_dir=slurm_dir)
    assert not helper.exists() and not sudoers.exists()


def test_sudo_mode_says_when_the_installed_helper_runs_another_slurm(
    slurm_dir: Path, base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under sudo the portal cannot fix the folder itself: it names the command that does."""
    helper = base / "hpcportal-runas"
    helper.write_text(helper_text(1000))  # installed without --slurm-bin-dir
    with caplog.at_level("WARNING", logger="hpcportal.runas.boundary"):
        RunAs(method="sudo", helper=helper, slurm_bin_dir=slurm_dir)
    assert f"runas install --slurm-bin-dir {slurm_dir}" in caplog.text
    caplog.clear()
    helper.write_text(helper_text(1000, slurm_dir=slurm_dir))
    with caplog.at_level("WARNING", logger="hpcportal.runas.boundary"):
        RunAs(method="sudo", helper=helper, slurm_bin_dir=slurm_dir)
    assert caplog.text == ""


def test_runuser_refuses_an_unsafe_folder(slurm_dir: Path) -> None:
    os.chown(slurm_dir, 65534, 65534)
    with pytest.raises(Misconfigured, match="cannot be used for users"):
        RunAs(method="runuser", slurm_bin_dir=slurm_dir)


def _slurm(argv: list[str], **extra: object) -> dict[str, object]:
    return {"op": "slurm", "argv": argv, "env": {}, **extra}


def test_runuser_helper_runs_squeue_from_the_fixed_folder(slurm_dir: Path) -> None:
    _alice()
    runas = RunAs(method="runuser", slurm_bin_dir=slurm_dir)
    done = runas.run("alice", _slurm(["squeue", "--json"]))
    assert done.returncode == 0, done.stderr
    said = done.stdout.decode()
    assert said.startswith("fixed-dir squeue as alice with ")
    assert f"PATH={slurm_dir}:/usr/local/bin:/usr/bin:/bin args --json" in said
    # Without the folder the same request runs the system's squeue, not the test's.
    plain = RunAs(method="runuser").run("alice", _slurm(["squeue", "--version"]))
    assert b"fixed-dir" not in plain.stdout


def test_a_request_cannot_choose_the_folder(slurm_dir: Path) -> None:
    _alice()
    runas = RunAs(method="runuser")
    for request in (
        _slurm([str(slurm_dir / "squeue")]),  # a path is not an allow-listed name
        _slurm(["squeue"], env={"PATH": str(slurm_dir)}),
        _slurm(["squeue"], slurm_path=str(slurm_dir)),  # no such request field
    ):
        done = runas.run("alice", request)
        assert b"fixed-dir" not in done.stdout, request
    refused = runas.run("alice", _slurm(["squeue"], env={"PATH": str(slurm_dir)}))
    assert refused.returncode == 126
    assert "PATH is not allowed" in json.loads(refused.stdout)["message"]


def test_installed_helper_runs_squeue_from_its_folder_and_rechecks_it(
    slurm_dir: Path, base: Path
) -> None:
    """The text ``hpcportal runas install --slurm-bin-dir`` writes, run as alice."""
    _alice()
    helper = base / "hpcportal-runas"
    helper.write_text(helper_text(1000, slurm_dir=trusted_slurm_dir(slurm_dir)))
    helper.chmod(0o755)
    assert installed_slurm_dir(helper) == str(slurm_dir)

    def run() -> subprocess.CompletedProcess[bytes]:
        line = json.dumps({**_slurm(["squeue", "-h"]), "v": 1}).encode() + b"\n"
        return subprocess.run(
            ["runuser", "-u", "alice", "--", str(helper)],
            input=line,
            capture_output=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            check=False,
            timeout=30,
        )

    done = run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"fixed-dir squeue as alice")
    slurm_dir.chmod(0o777)  # opened after install: the helper no longer uses it
    refused = run()
    assert refused.returncode == 126
    assert "open to others than root" in json.loads(refused.stdout)["message"]


@pytest.mark.parametrize(
    "stderr",
    [
        # The two wordings of libslurm 24.11 and 26.05 (ESLURM_RATELIMITED and its sibling).
        "squeue: error: Rate limit exceeded, please retry momentarily",
        "slurm_load_jobs error: Rate limit exceeded, please retry later",
    ],
)
def test_rate_limit_answers_are_typed(stderr: str) -> None:
    error = classify_failure("squeue", stderr)
    assert isinstance(error, SlurmRateLimited)
    assert error.status == 503 and error.headers == {"Retry-After": "5"}
    assert "Rate limit exceeded" in error.message
