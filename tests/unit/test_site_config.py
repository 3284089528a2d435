"""Where settings come from on an installed portal: /etc/hpcportal/portal.toml by
default, secret files (systemd credentials, /etc/hpcportal/secrets/), *_file settings,
the state folder; `config show` with origins and masked secrets; the stored JWT key;
the log formats; trusted_proxies validation."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from hpcportal import __version__, config, config_sources, log_setup
from hpcportal.cli.main import app
from hpcportal.config import Settings
from hpcportal.services import signing_key

SECRET = "s3cret-value-that-must-never-be-printed-0123456789"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine running the tests: no /etc file, no secrets folder."""
    for name in ("HPCPORTAL_CONFIG", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPCPORTAL_SECRETS_DIR", "")
    monkeypatch.setattr(config_sources, "DEFAULT_CONFIG_FILE", tmp_path / "etc" / "portal.toml")
    monkeypatch.setattr(config, "DEFAULT_STATE_DIR", tmp_path / "var-lib-hpcportal")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_default_file_is_read_when_it_exists(tmp_path: Path) -> None:
    assert Settings().port == 8080
    write(tmp_path / "etc" / "portal.toml", "port = 8123\n")
    assert Settings().port == 8123


def test_hpcportal_config_names_another_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc" / "portal.toml", "port = 8123\n")
    monkeypatch.setenv("HPCPORTAL_CONFIG", str(write(tmp_path / "other.toml", "port = 8124\n")))
    assert Settings().port == 8124
    monkeypatch.setenv("HPCPORTAL_CONFIG", "")
    assert Settings().port == 8080


def test_state_dir_holds_the_database_and_secrets_when_installed(tmp_path: Path) -> None:
    assert Settings().database_url == "sqlite:///./hpcportal.db"  # a checkout, as before
    installed = tmp_path / "var-lib-hpcportal"
    installed.mkdir()
    settings = Settings()
    assert settings.state_dir == installed
    assert settings.database_url == f"sqlite:///{installed}/hpcportal.db"
    assert settings.secret_key_path == installed / "secrets" / "portal.key"
    elsewhere = Settings(state_dir=tmp_path / "srv")
    assert elsewhere.database_url == f"sqlite:///{tmp_path}/srv/hpcportal.db"
    named = Settings(state_dir=tmp_path / "srv", database_url="sqlite:////x/y.db")
    assert named.database_url == "sqlite:////x/y.db"


def test_secret_files_credentials_first_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_dir = tmp_path / "secrets"
    credentials = tmp_path / "credentials"
    write(secrets_dir / "jwt_secret", "from-the-secrets-folder\n")
    monkeypatch.setenv("HPCPORTAL_SECRETS_DIR", str(secrets_dir))
    assert Settings().jwt_secret.get_secret_value() == "from-the-secrets-folder"
    assert Settings().jwt_secret_configured
    write(credentials / "jwt_secret", "from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert Settings().jwt_secret.get_secret_value() == "from-systemd"
    monkeypatch.setenv("HPCPORTAL_JWT_SECRET", "from-the-environment")
    assert Settings().jwt_secret.get_secret_value() == "from-the-environment"


def test_file_settings_and_the_database_password(tmp_path: Path) -> None:
    key = write(tmp_path / "jwt", f"{SECRET}\n")
    password = write(tmp_path / "dbpw", "p@ss:word\n")
    settings = Settings(
        jwt_secret_file=key,
        database_url="postgresql+psycopg://portal@db.example:5432/hpcportal",
        database_password_file=password,
    )
    assert settings.jwt_secret.get_secret_value() == SECRET
    assert settings.database_url == (
        "postgresql+psycopg://portal:p%40ss%3Aword@db.example:5432/hpcportal"
    )
    with pytest.raises(ValidationError, match="not both"):
        Settings(jwt_secret=SecretStr(SECRET), jwt_secret_file=key)
    with pytest.raises(ValidationError, match="cannot read the secret file"):
        Settings(jwt_secret_file=tmp_path / "missing")


def test_unconfigured_jwt_secret_is_random_per_process() -> None:
    first, second = Settings(), Settings()
    assert not first.jwt_secret_configured
    assert first.jwt_secret.get_secret_value() != second.jwt_secret.get_secret_value()


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies=["10.0.0.5", "10.1.0.0/16", "::1"]).trusted_proxies
    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings(trusted_proxies=["haproxy.example"])


def test_config_show_gives_origins_and_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = write(
        tmp_path / "etc" / "portal.toml",
        'port = 8123\nprometheus_url = "http://scraper:hunter2@prom:9090"\n',
    )
    write(tmp_path / "secrets" / "jwt_secret", SECRET)
    write(tmp_path / "secrets" / "database_password", "db-password-never-shown")
    monkeypatch.setenv("HPCPORTAL_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("HPCPORTAL_HOST", "127.0.0.9")
    monkeypatch.setenv("HPCPORTAL_DATABASE_URL", "postgresql+psycopg://portal@db/hpcportal")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    out = result.output
    for secret in (SECRET, "db-password-never-shown", "hunter2"):
        assert secret not in out
    lines = {line.split(" = ")[0]: line for line in out.splitlines() if " = " in line}
    assert lines["port"].endswith(f"# file {toml}")
    assert lines["host"].endswith("# environment")
    assert lines["jwt_secret"].endswith(f"# secret file {tmp_path}/secrets/jwt_secret")
    assert "**********" in lines["jwt_secret"]
    assert "portal:***@db" in lines["database_url"]
    assert '"http://scraper:***@prom:9090"' in lines["prometheus_url"]
    assert lines["refresh_interval"].endswith("# default")
    assert len(lines) == len(Settings.model_fields)
    as_json = CliRunner().invoke(app, ["config", "show", "--json"])
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert {row["name"] for row in rows} == set(Settings.model_fields)
    assert SECRET not in as_json.output


def test_version_option() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_the_generated_jwt_key_is_stored_once_and_private(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'portal.db'}")
    first = signing_key.with_signing_key(settings)
    again = signing_key.with_signing_key(Settings(database_url=settings.database_url))
    key = first.jwt_secret.get_secret_value()
    assert len(key) >= 48
    assert again.jwt_secret.get_secret_value() == key  # a restart logs nobody out
    stored = tmp_path / "secrets" / "jwt_secret"
    assert stored.read_text() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    configured = Settings(database_url=settings.database_url, jwt_secret=SecretStr(SECRET))
    assert signing_key.with_signing_key(configured).jwt_secret.get_secret_value() == SECRET


def test_replicas_without_a_shared_key_are_warned(tmp_path: Path) -> None:
    single = Settings(database_url=f"sqlite:///{tmp_path / 'portal.db'}")
    assert signing_key.shared_key_warning(single) is None
    server = Settings(database_url="postgresql+psycopg://portal@db/hpcportal")
    warning = signing_key.shared_key_warning(server)
    assert warning is not None and "/etc/hpcportal/secrets/jwt_secret" in warning
    redis = Settings(database_url=single.database_url, redis_url="redis://127.0.0.1:6379/0")
    assert signing_key.shared_key_warning(redis) is not None
    shared = server.model_copy(update={"jwt_secret": SecretStr(SECRET)})
    assert signing_key.shared_key_warning(shared) is None


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "hpcportal.test", logging.WARNING, __file__, 1, message, args or None, None
    )


def test_json_logs_are_one_object_per_line_and_redacted() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    handler = logging.Handler()
    handler.setFormatter(log_setup.formatter("json"))
    line = record("bearer %s refused", token)
    from hpcportal.log_redaction import RedactSecrets

    RedactSecrets().filter(line)
    entry = json.loads(handler.format(line))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "hpcportal.test"
    assert token not in entry["message"] and "[redacted]" in entry["message"]
    assert entry["time"].endswith("+00:00")


def test_plain_logs_leave_the_time_to_journald(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "asctime" in str(log_setup.formatter("plain")._fmt)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert log_setup.formatter("plain").format(record("hello")) == ("WARNING hpcportal.test: hello")
