"""``cluster join``: one server becomes two, the file keeps its comments (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.services.operations.config_file import ConfigInvalid, load_config_file
from hpcportal.services.operations.join import join
from hpcportal.services.operations.render import render_haproxy

ONE_SERVER = """\
# Our portal.
servers:
  # The first one, since 2025.
  - name: portal1
    address: 10.0.0.11   # rack 4
    port: 8080

# The shared database.
database:
  engine: postgresql
  primary: {name: db1, address: 10.0.0.21}
redis:
  mode: standalone
  server: {name: r1, address: 10.0.0.31}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster_config.yaml"
    path.write_text(ONE_SERVER)
    path.chmod(0o640)
    return path


def test_one_server_becomes_two_and_every_comment_stays(config_file: Path) -> None:
    joined = join(config_file, "portal2", "10.0.0.12", 8081)
    text = config_file.read_text()
    assert text == ONE_SERVER.replace(
        "    port: 8080\n",
        "    port: 8080\n  - name: portal2\n    address: 10.0.0.12\n    port: 8081\n",
    )
    assert (config_file.stat().st_mode & 0o777) == 0o640
    config = load_config_file(config_file)
    assert [(s.name, str(s.address), s.port) for s in config.servers] == [
        ("portal1", "10.0.0.11", 8080),
        ("portal2", "10.0.0.12", 8081),
    ]
    haproxy = render_haproxy(config)
    assert "server portal1 10.0.0.11:8080 check" in haproxy
    assert "server portal2 10.0.0.12:8081 check" in haproxy
    assert joined.rendered.files["haproxy/haproxy.cfg"] == haproxy
    assert "systemd/portal2/hpcportal.service" in joined.rendered.files
    assert "10.0.0.12/32" in joined.rendered.files["postgresql/pg_hba.conf"]
    assert any("portal2" in step for step in joined.steps)


def test_then_three(config_file: Path) -> None:
    join(config_file, "portal2", "10.0.0.12")
    join(config_file, "portal3", "10.0.0.13")
    names = [server.name for server in load_config_file(config_file).servers]
    assert names == ["portal1", "portal2", "portal3"]


def test_a_flow_style_item_list_gets_a_block_item(tmp_path: Path) -> None:
    path = tmp_path / "cluster_config.yaml"
    path.write_text(
        "servers:\n  - {name: a, address: 127.0.0.1, port: 8001}\n"
        "database: {engine: postgresql, primary: {name: db, address: 127.0.0.1}}\n"
        "redis: {mode: standalone, server: {name: r, address: 127.0.0.1}}\n"
    )
    join(path, "b", "127.0.0.1", 8002)
    assert [s.port for s in load_config_file(path).servers] == [8001, 8002]


@pytest.mark.parametrize(
    ("name", "address", "port", "expected"),
    [
        ("portal1", "10.0.0.99", 8080, "servers[1].name: duplicate server name 'portal1'"),
        ("portal2", "10.0.0.11", 8080, "servers[1].port: 10.0.0.11:8080 is also servers[0]'s"),
        ("portal2", "10.0.0.300", 8080, "--address: '10.0.0.300' is not an IP address"),
        ("bad name\n  port: 1", "10.0.0.12", 8080, "--name: 'bad name\\n  port: 1' is not"),
    ],
)
def test_a_bad_join_is_refused_and_the_file_unchanged(
    config_file: Path, name: str, address: str, port: int, expected: str
) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        join(config_file, name, address, port)
    assert any(expected in str(issue) for issue in caught.value.issues), caught.value.issues
    assert config_file.read_text() == ONE_SERVER


def test_sqlite_cannot_take_a_second_server(tmp_path: Path) -> None:
    path = tmp_path / "cluster_config.yaml"
    path.write_text(
        "servers:\n  - name: only\n    address: 10.0.0.11\n"
        "database:\n  engine: sqlite\n"
        "redis: {mode: standalone, server: {name: r, address: 10.0.0.31}}\n"
    )
    before = path.read_text()
    with pytest.raises(ConfigInvalid) as caught:
        join(path, "second", "10.0.0.12")
    assert [str(issue) for issue in caught.value.issues] == [
        "line 8, column 11: database.engine: sqlite serves one server only, and 2 are "
        "configured; use postgresql or galera"
    ]
    assert path.read_text() == before


def test_cli_join_prints_the_block_and_the_steps(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rendered"
    result = CliRunner().invoke(
        app,
        ["cluster", "join", "--config", str(config_file), "--name", "portal2",
         "--address", "10.0.0.12", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(2 servers now)" in result.output
    assert "  - name: portal2\n    address: 10.0.0.12\n    port: 8080" in result.output
    assert "systemctl reload haproxy" in result.output
    assert "server portal2 10.0.0.12:8080" in (out / "haproxy/haproxy.cfg").read_text()


def test_cli_join_refusal_says_the_file_is_unchanged(config_file: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["cluster", "join", "--config", str(config_file), "--name", "portal1",
         "--address", "10.0.0.12"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "duplicate server name 'portal1'" in result.output
    assert f"{config_file} is unchanged." in result.output
    assert config_file.read_text() == ONE_SERVER
