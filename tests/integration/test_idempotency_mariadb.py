"""The fifty-concurrent-submits load of ``test_idempotency`` on MariaDB, the second
server database: every Idempotency-Key replay answers the first job, no job is
submitted twice, every submit is audited once (``check_load``). Runs on a fresh
``hpcportal_t_<random>`` database (the test role may create only those); without a
MariaDB it is skipped locally and fails under ``CI``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.integration.portals import PortalFactory
from tests.integration.test_idempotency import check_load

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]

ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_MARIADB_URL", "mysql+pymysql://hpcportal_test:hpcportal-test@127.0.0.1:3306/"
)


@contextmanager
def fresh_mariadb() -> Iterator[str]:
    """A new MariaDB database for one test, dropped afterwards."""
    admin = create_engine(
        make_url(ADMIN_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"hpcportal_t_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"MariaDB is required when CI is set: {exc.orig}")
        pytest.skip(f"MariaDB not reachable ({exc.orig}); set CI=1 to make this a failure")
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def test_fifty_concurrent_submits_on_mariadb(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    with fresh_mariadb() as url:
        settings = make_portal.settings(tmp_path, slurm_timeout=30.0, database_url=url)
        with make_portal.run(settings) as portal:
            try:
                check_load(portal, devcluster["slurm_conf"])
            finally:
                portal.services.database.dispose()
