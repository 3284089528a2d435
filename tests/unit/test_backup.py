"""Backup and restore on SQLite, PostgreSQL and MariaDB (issue 12, item 5).

Backup, wipe the database and every backed-up file, restore: every table (compared
through a dump written here, independent of the product's own checksums) and every
file is identical. A damaged backup is refused with a clear message and nothing
changes; a restore that fails half way puts the previous state back.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import MetaData, create_engine, inspect, select, text
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.config import Settings, get_settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.models import AuditEntry, LoginFailure, RevokedToken
from hpcportal.db.session import Database, normalise_url
from hpcportal.services.operations.backup import (
    BackupCorrupt,
    BackupRefused,
    RestoreFailed,
    Sources,
    create_backup,
    list_backups,
    restore_backup,
    sources_of,
)
from hpcportal.services.templates import seed_site_templates

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def table_dump(url: str) -> dict[str, str]:
    """Every table's rows, sorted as text, as one SHA-256 per table."""
    engine = create_engine(normalise_url(url))
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        out: dict[str, str] = {}
        with engine.connect() as conn:
            for name, table in sorted(metadata.tables.items()):
                rows = sorted(repr(tuple(r)) for r in conn.execute(select(table)))
                out[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return out
    finally:
        engine.dispose()


def file_sums(paths: list[Path]) -> dict[str, str | None]:
    """SHA-256 and mode of each file (every file below a folder), None if missing."""
    sums: dict[str, str | None] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            files = [path] if path.is_file() else []
        if not files:
            sums[str(path)] = None
        for file in files:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            sums[str(file)] = f"{digest} {file.stat().st_mode & 0o777:o}"
    return sums


def wipe_database(url: str) -> None:
    engine = create_engine(normalise_url(url))
    try:
        names = inspect(engine).get_table_names()
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":
                conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for name in names:
                quoted = f"`{name}`" if engine.dialect.name == "mysql" else f'"{name}"'
                cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
                conn.execute(text(f"DROP TABLE {quoted}{cascade}"))
    finally:
        engine.dispose()


@pytest.fixture
def portal(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A migrated database with rows in several tables, and every kind of file."""
    config = tmp_path / "etc" / "hpcportal.toml"
    config.parent.mkdir()
    config.write_text(f'database_url = "{db_url}"\n')
    config.chmod(0o640)
    monkeypatch.setenv("HPCPORTAL_CONFIG", str(config))
    secrets = tmp_path / "etc" / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "jwt_secret").write_text("a signing key shared by the replicas\n")
    (secrets / "jwt_secret").chmod(0o600)
    monkeypatch.setenv("HPCPORTAL_SECRETS_DIR", str(secrets))
    apps = tmp_path / "apps"
    (apps / "rstudio").mkdir(parents=True)
    (apps / "rstudio" / "app.yaml").write_text("title: RStudio\n")
    (apps / "rstudio" / "script.sh.j2").write_text("#!/bin/bash\nrserver --port {{ port }}\n")
    (tmp_path / "cluster_config.yaml").write_text("servers: []\n")
    settings = Settings(
        database_url=db_url,
        jwt_secret=SecretStr(SECRET),
        secret_key_file=tmp_path / "secrets" / "portal.key",
        app_dirs=[apps],
    )
    settings.secret_key_path.parent.mkdir(mode=0o700)
    settings.secret_key_path.write_bytes(bytes(range(32)))
    settings.secret_key_path.chmod(0o600)
    (settings.secret_key_path.parent / "node-client.crt").write_text("-----BEGIN CERT-----\n")
    upgrade(settings)
    db = Database(settings)
    try:
        seed_site_templates(db)
        now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        with db.session() as session:
            for i in range(50):
                session.add(
                    AuditEntry(
                        at=now - timedelta(minutes=i),
                        username="alice",
                        action="job.submit",
                        target=f"job {i} — ünïcode ✓",
                        result="ok",
                        detail=json.dumps({"n": i}),
                        address="127.0.0.1",
                    )
                )
            session.add(RevokedToken(jti="a" * 32, expires_at=now))
            session.add(LoginFailure(username="bob", address="::1", failed_at=now))
    finally:
        db.dispose()
    return settings


def everything(settings: Settings, tmp_path: Path) -> list[Path]:
    key = settings.secret_key_path
    return [
        tmp_path / "etc" / "hpcportal.toml",
        tmp_path / "etc" / "secrets" / "jwt_secret",
        tmp_path / "cluster_config.yaml",
        key,
        key.parent / "node-client.crt",
        *settings.app_dirs,
    ]


def sources(settings: Settings, tmp_path: Path) -> Sources:
    return sources_of(settings, tmp_path / "cluster_config.yaml")


def test_backup_wipe_restore_is_identical(portal: Settings, tmp_path: Path) -> None:
    tables, files = table_dump(portal.database_url), file_sums(everything(portal, tmp_path))
    assert {"audit_log", "job_templates", "alembic_version"} <= tables.keys()
    made = create_backup(portal, tmp_path / "backups", sources(portal, tmp_path))
    assert made.manifest is not None and made.manifest.alembic_revision is not None
    assert (tmp_path / "backups").stat().st_mode & 0o777 == 0o700

    wipe_database(portal.database_url)
    for path in everything(portal, tmp_path):
        if path.is_dir():
            for file in path.rglob("*.j2"):
                file.unlink()
            (path / "stray.txt").write_text("not in the backup")
        else:
            path.unlink()
    assert table_dump(portal.database_url) != tables

    result = restore_backup(portal, made.path, tmp_path / "backups")
    assert table_dump(portal.database_url) == tables
    assert file_sums(everything(portal, tmp_path)) == files
    assert result.aside.is_dir()


def test_a_damaged_backup_is_refused_and_nothing_changes(portal: Settings, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    made = create_backup(portal, backups, sources(portal, tmp_path))
    (tmp_path / "etc" / "hpcportal.toml").write_text("# edited after the backup\n")
    tables, files = table_dump(portal.database_url), file_sums(everything(portal, tmp_path))

    dump = next((made.path / "database").iterdir())
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    with pytest.raises(
        BackupCorrupt, match=re.escape(f"database/{dump.name} does not match its SHA-256")
    ):
        restore_backup(portal, made.path, backups)

    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    app_file = next(made.path.glob("apps/0/rstudio/app.yaml"))
    app_file.unlink()
    with pytest.raises(BackupCorrupt, match=re.escape("apps/0/rstudio/app.yaml is missing")):
        restore_backup(portal, made.path, backups)

    app_file.write_text("title: RStudio\n")
    manifest = made.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:-20])
    with pytest.raises(BackupCorrupt, match=re.escape("manifest.json is not JSON")):
        restore_backup(portal, made.path, backups)

    assert table_dump(portal.database_url) == tables
    assert file_sums(everything(portal, tmp_path)) == files
    assert not (backups / "aside").exists(), "a refused backup must not even keep state aside"


def test_a_failed_restore_puts_the_previous_state_back(portal: Settings, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    made = create_backup(portal, backups, sources(portal, tmp_path))
    db = Database(portal)
    try:
        with db.session() as session:
            session.add(RevokedToken(jti="b" * 32, expires_at=datetime.now(UTC)))
    finally:
        db.dispose()
    # The config file's folder becomes a file: writing the config back must fail,
    # after the database was already restored.
    etc = tmp_path / "etc"
    shutil.rmtree(etc)
    etc.write_text("in the way")
    tables, files = table_dump(portal.database_url), file_sums(everything(portal, tmp_path))

    with pytest.raises(RestoreFailed, match="the previous state was put back"):
        restore_backup(portal, made.path, backups)
    assert table_dump(portal.database_url) == tables
    assert file_sums(everything(portal, tmp_path)) == files


def test_cli_backup_list_and_refused_restore(
    portal: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backups = tmp_path / "backups"
    monkeypatch.setenv("HPCPORTAL_DATABASE_URL", portal.database_url)
    monkeypatch.setenv("HPCPORTAL_SECRET_KEY_FILE", str(portal.secret_key_path))
    monkeypatch.setenv("HPCPORTAL_APP_DIRS", json.dumps([str(p) for p in portal.app_dirs]))
    monkeypatch.setenv("HPCPORTAL_BACKUP_DIR", str(backups))
    monkeypatch.setenv("HPCPORTAL_CLUSTER_CONFIG", str(tmp_path / "cluster_config.yaml"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        made = runner.invoke(app, ["cluster", "backup"])
        assert made.exit_code == 0, made.output
        assert "backup " in made.output and "1 kept, 0 deleted" in made.output
        (backup,) = list_backups(backups)
        assert backup.manifest is not None
        assert {e.kind for e in backup.manifest.entries} == {"database", "config", "secret", "app"}

        listed = runner.invoke(app, ["cluster", "backups", "--verify"])
        assert listed.exit_code == 0 and f"{backup.path.name}" in listed.output
        assert "intact" in listed.output

        key_copy = backup.path / "secret" / "2-portal.key"
        good = key_copy.read_bytes()
        key_copy.write_bytes(b"x" * 32)
        refused = runner.invoke(app, ["cluster", "restore", backup.path.name, "--yes"])
        assert refused.exit_code == 1
        assert "is damaged and was not restored" in refused.output
        assert "secret/2-portal.key does not match its SHA-256" in refused.output
        assert "Traceback" not in refused.output

        key_copy.write_bytes(good)
        portal.secret_key_path.write_bytes(b"a new key that replaced the old!")
        restored = runner.invoke(app, ["cluster", "restore", backup.path.name, "--yes"])
        assert restored.exit_code == 0, restored.output
        assert "the state before the restore is kept in" in restored.output
        assert portal.secret_key_path.read_bytes() == good
    finally:
        get_settings.cache_clear()


def test_a_restore_leaves_another_applications_table_alone(
    portal: Settings, tmp_path: Path
) -> None:
    engine = create_engine(normalise_url(portal.database_url))
    if engine.dialect.name == "sqlite":
        engine.dispose()
        pytest.skip("the SQLite file is the portal's alone: a restore replaces all of it")
    made = create_backup(portal, tmp_path / "backups", sources(portal, tmp_path))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE other_app (id INTEGER PRIMARY KEY, v VARCHAR(10))"))
            conn.execute(text("INSERT INTO other_app VALUES (1, 'kept')"))
        restore_backup(portal, made.path, tmp_path / "backups")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM other_app")).scalar_one() == "kept"
    finally:
        engine.dispose()


def test_a_backup_this_portal_cannot_take_is_refused_before_anything_changes(
    portal: Settings, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    made = create_backup(portal, backups, sources(portal, tmp_path))
    tables, files = table_dump(portal.database_url), file_sums(everything(portal, tmp_path))
    manifest = made.path / "manifest.json"
    original = json.loads(manifest.read_text())

    newer = {**original, "alembic_revision": "9999"}
    manifest.write_text(json.dumps(newer))
    with pytest.raises(BackupRefused, match=r"revision 9999, which this portal .* does not know"):
        restore_backup(portal, made.path, backups)

    other = "mysql" if original["database_backend"] != "mysql" else "postgresql"
    manifest.write_text(json.dumps({**original, "database_backend": other}))
    with pytest.raises(BackupRefused, match=f"holds a {other} database and this portal uses"):
        restore_backup(portal, made.path, backups)

    assert table_dump(portal.database_url) == tables
    assert file_sums(everything(portal, tmp_path)) == files
    assert not (backups / "aside").exists()
