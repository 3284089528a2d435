"""The rendered ``portal.env`` reaches the database with no password in it (issue 12).

PostgreSQL: the URL lists every host with ``target_session_attrs=read-write`` and a
libpq passfile, so here the first host is a dead port and the replica still finds the
live server. MariaDB (Galera's URL): pymysql reads the password from an option file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hpcportal.config import Settings
from hpcportal.db.session import normalise_url
from hpcportal.services.operations.config_file import load_config_text
from hpcportal.services.operations.render import render_all
from tests.integration.portal_server import free_port


def env_of(rendered: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in rendered.splitlines() if line[:1] not in ("#", ""))
    return dict(pairs)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.postgres
def test_postgresql_url_skips_a_dead_host_and_reads_the_passfile(
    postgresql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(postgresql_url)
    passfile = tmp_path / "database_password"
    passfile.write_text(f"127.0.0.1:{url.port}:{url.database}:{url.username}:{url.password}\n")
    passfile.chmod(0o600)
    config = load_config_text(
        f"""\
servers: [{{name: p1, address: 127.0.0.1}}]
database:
  engine: postgresql
  primary: {{name: db1, address: 127.0.0.1, port: {free_port()}}}
  standbys: [{{name: db2, address: 127.0.0.1, port: {url.port}}}]
  name: {url.database}
  user: {url.username}
secrets: {{database_password_file: {passfile}}}
"""
    )
    rendered = render_all(config).files["portal/portal.env"]
    assert str(url.password) not in rendered
    settings = settings_from(env_of(rendered), monkeypatch)
    engine = create_engine(normalise_url(settings.database_url))
    try:
        with engine.connect() as connection:
            port = connection.execute(text("SELECT inet_server_port()")).scalar_one()
            writable = connection.execute(text("SELECT NOT pg_is_in_recovery()")).scalar_one()
    finally:
        engine.dispose()
    assert (port, writable) == (url.port, True)


@pytest.mark.mariadb
def test_galera_url_reads_the_option_file(
    mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(mariadb_url)
    option_file = tmp_path / "database_password"
    option_file.write_text(f"[client]\npassword={url.password}\n")
    option_file.chmod(0o600)
    config = load_config_text(
        f"""\
servers: [{{name: p1, address: 127.0.0.1}}]
database:
  engine: galera
  nodes: [{{name: db1, address: 127.0.0.1, port: {url.port or 3306}}}]
  name: {url.database}
  user: {url.username}
secrets: {{database_password_file: {option_file}}}
"""
    )
    rendered = render_all(config).files["portal/portal.env"]
    assert str(url.password) not in rendered
    settings = settings_from(env_of(rendered), monkeypatch)
    engine = create_engine(normalise_url(settings.database_url))
    try:
        with engine.connect() as connection:
            database = connection.execute(text("SELECT DATABASE()")).scalar_one()
    finally:
        engine.dispose()
    assert database == url.database


def test_redis_settings_follow_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    base = "servers: [{name: p1, address: 127.0.0.1}]\ndatabase: {engine: sqlite}\n"
    standalone = load_config_text(
        base + "redis: {mode: standalone, server: {name: r, address: 127.0.0.1, port: 6390}}\n"
    )
    assert env_of(render_all(standalone).files["portal/portal.env"]) == {
        "HPCPORTAL_DATABASE_URL": "sqlite:////var/lib/hpcportal/portal.db",
        "HPCPORTAL_REDIS_URL": "redis://127.0.0.1:6390/0",
    }
    sentinel = load_config_text(
        base + "redis:\n  mode: sentinel\n  master_name: mine\n"
        "  master: {name: r, address: 127.0.0.1}\n"
        "  sentinels: [{name: s1, address: 127.0.0.1}, {name: s2, address: 127.0.0.2}]\n"
        "  quorum: 2\n"
    )
    env = env_of(render_all(sentinel).files["portal/portal.env"])
    assert env["HPCPORTAL_REDIS_SENTINELS"] == '["127.0.0.1:26379","127.0.0.2:26379"]'
    assert env["HPCPORTAL_REDIS_SENTINEL_MASTER"] == "mine"
    settings = settings_from(env, monkeypatch)  # the portal reads them as meant
    assert settings.redis_sentinels == ["127.0.0.1:26379", "127.0.0.2:26379"]
    assert settings.redis_sentinel_master == "mine" and settings.replicated
