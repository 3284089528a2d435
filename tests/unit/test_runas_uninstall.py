"""``hpcportal runas uninstall``: removes what ``runas install`` wrote, and only that.

Runs ``install`` for real (root, visudo) into a temporary folder, never the shared
``/usr/local/libexec/hpcportal-runas`` or ``/etc/sudoers.d/hpcportal``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.runas.install import InstallError, install, uninstall

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install writes root-owned files")


def _install(tmp_path: Path) -> tuple[Path, Path]:
    helper, sudoers = tmp_path / "libexec" / "hpcportal-runas", tmp_path / "sudoers" / "hpcportal"
    install("hpcportal", helper, sudoers=sudoers, deny_users=["slurm"])
    assert helper.is_file() and sudoers.is_file()
    return helper, sudoers


def test_uninstall_removes_both_and_is_idempotent(tmp_path: Path) -> None:
    helper, sudoers = _install(tmp_path)
    done = uninstall(helper, sudoers=sudoers)
    assert (done.helper, done.sudoers) == (helper, sudoers)
    assert not helper.exists() and not sudoers.exists()
    again = uninstall(helper, sudoers=sudoers)
    assert (again.helper, again.sudoers) == (None, None)


def test_uninstall_refuses_files_it_did_not_write(tmp_path: Path) -> None:
    helper, sudoers = _install(tmp_path)
    sudoers.write_text("someone ALL=(ALL) ALL\n")  # an admin's own rule at that path
    with pytest.raises(InstallError, match="not written by"):
        uninstall(helper, sudoers=sudoers)
    assert sudoers.exists() and helper.exists(), "nothing is removed when one file is foreign"
    sudoers.unlink()
    helper.write_text("#!/bin/sh\necho not ours\n")
    with pytest.raises(InstallError, match="not written by"):
        uninstall(helper, sudoers=sudoers)
    assert helper.exists()


def test_cli_uninstall(tmp_path: Path) -> None:
    helper, sudoers = _install(tmp_path)
    args = ["runas", "uninstall", "--helper", str(helper), "--sudoers", str(sudoers)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"Removed {sudoers}." in first.output and f"Removed {helper}." in first.output
    assert not helper.exists() and not sudoers.exists()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "already absent" in second.output


def test_cli_install_writes_the_named_sudoers_file(tmp_path: Path) -> None:
    helper, sudoers = tmp_path / "h" / "hpcportal-runas", tmp_path / "s" / "hpcportal-x"
    args = ["runas", "install", "--helper", str(helper), "--sudoers", str(sudoers)]
    result = CliRunner().invoke(app, [*args, "--no-slurm-conf", "--deny-user", "slurm"])
    assert result.exit_code == 0, result.output
    assert f"NOPASSWD: {helper}" in sudoers.read_text()
    assert (
        CliRunner()
        .invoke(app, ["runas", "uninstall", "--helper", str(helper), "--sudoers", str(sudoers)])
        .exit_code
        == 0
    )
    assert not sudoers.exists()
