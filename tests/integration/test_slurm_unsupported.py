"""A Slurm release the portal does not read: /ready says so, nothing reads as zeros.

The portal's ``slurm_bin_dir`` holds one clearly named stand-in, ``scontrol``, that
answers ``scontrol version`` as a Slurm 21.08 would (no other command is there), so
the adapter's first question decides, and every refresh fails with the typed error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

STANDIN = """#!/bin/sh
# Stand-in for scontrol of Slurm 21.08 (tests/integration/test_slurm_unsupported.py).
echo "slurm 21.08.8"
"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    tmp_path.chmod(0o755)
    path.chmod(0o755)
    scontrol = path / "scontrol"
    scontrol.write_text(STANDIN)
    scontrol.chmod(0o755)
    return path


@pytest.fixture
def portal(make_portal: PortalFactory, tmp_path: Path, bin_dir: Path) -> Iterator[RunningPortal]:
    with make_portal.run(tmp=tmp_path, slurm_bin_dir=bin_dir, refresh_interval=0.5) as running:
        yield running


def test_an_unsupported_release_is_named_in_ready(portal: RunningPortal) -> None:
    deadline = time.monotonic() + 30
    while portal.services.snapshot.health().last_error is None:
        assert time.monotonic() < deadline, "the refresh never failed"
        time.sleep(0.1)
    with portal.client() as c:
        ready = c.get("/ready")
        cluster = c.get("/api/v1/cluster", headers=portal.login("alice"))
    assert ready.status_code == 503
    body = ready.json()
    assert body["slurm"] == "unsupported"
    assert any("Slurm 21.08.8 is older than the portal supports" in p for p in body["problems"])
    # No snapshot was ever published: reads say why instead of showing an empty cluster.
    assert cluster.status_code == 503 and "21.08.8" in cluster.json()["detail"]


def test_hpcportal_version_names_an_unsupported_release(bin_dir: Path) -> None:
    env = {**os.environ, "HPCPORTAL_SLURM_BIN_DIR": str(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "hpcportal.cli.main", "version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Slurm: unsupported: Slurm 21.08.8 is older than the portal supports" in done.stdout
