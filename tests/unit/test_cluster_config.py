"""``cluster_config.yaml``: broken files give clear errors at the right line (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.services.operations.cluster_config import (
    ClusterConfig,
    PostgresDatabase,
    SentinelRedis,
)
from hpcportal.services.operations.config_file import (
    ConfigInvalid,
    load_config_file,
    load_config_text,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "cluster_config.example.yaml"

# Line numbers matter below: each case replaces one line and expects the error there.
BASE = """\
servers:
  - name: portal1
    address: 127.0.0.1
    port: 8001
  - name: portal2
    address: 127.0.0.1
    port: 8002
database:
  engine: postgresql
  primary: {name: db1, address: 127.0.0.1, port: 5432}
redis:
  mode: sentinel
  master: {name: r1, address: 127.0.0.1, port: 6379}
  sentinels:
    - {name: s1, address: 127.0.0.1, port: 26379}
    - {name: s2, address: 127.0.0.1, port: 26380}
  quorum: 2
front_end:
  hosts:
    - {name: lb1, address: 127.0.0.2/8, priority: 150}
    - {name: lb2, address: 127.0.0.3/8, priority: 100}
  virtual_ip: 127.0.0.10
  interface: eth0
  virtual_router_id: 51
slurm:
  controllers:
    - {name: ctl1}
    - {name: ctl2, address: 127.0.0.1}
  state_save_location: /shared/state
backup:
  directory: /var/backups/hpcportal
  keep: {daily: 7, weekly: 4, monthly: 12}
"""


def broken(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        load_config_text(text)
    return [str(issue) for issue in caught.value.issues]


def test_the_base_configuration_is_valid() -> None:
    config = load_config_text(BASE)
    assert [server.name for server in config.servers] == ["portal1", "portal2"]
    assert isinstance(config.database, PostgresDatabase)
    assert isinstance(config.redis, SentinelRedis)
    assert config.backup.keep.monthly == 12


def test_the_documented_example_is_valid() -> None:
    config = load_config_file(EXAMPLE)
    assert isinstance(config, ClusterConfig)
    assert len(config.servers) == 2
    assert config.front_end is not None and str(config.front_end.virtual_ip) == "10.0.0.10"


CASES = [
    pytest.param(
        broken("    port: 8002\n", "    port: 70000\n"),
        "line 7, column 11: servers[1].port: must be between 1 and 65535",
        id="port-out-of-range",
    ),
    pytest.param(
        broken("  - name: portal2\n", "  - name: portal1\n"),
        "line 5, column 11: servers[1].name: duplicate server name 'portal1' (also servers[0])",
        id="duplicate-server-name",
    ),
    pytest.param(
        broken("    port: 8002\n", "    port: 8001\n"),
        "line 7, column 11: servers[1].port: 127.0.0.1:8001 is also servers[0]'s address",
        id="duplicate-server-address",
    ),
    pytest.param(
        broken("  virtual_ip: 127.0.0.10\n", "  virtual_ip: 10.9.0.10\n"),
        "line 22, column 15: front_end.virtual_ip: 10.9.0.10 is in no front end's network "
        "(127.0.0.0/8, 127.0.0.0/8)",
        id="vip-outside-every-network",
    ),
    pytest.param(
        broken("  quorum: 2\n", "  quorum: 3\n"),
        "line 17, column 11: redis.quorum: quorum 3 is greater than the number of sentinels (2)",
        id="quorum-above-sentinels",
    ),
    pytest.param(
        broken("daily: 7,", "daily: -1,"),
        "line 32, column 17: backup.keep.daily: cannot keep -1 copies; 0 or more",
        id="negative-retention",
    ),
    pytest.param(
        broken(
            "  engine: postgresql\n  primary: {name: db1, address: 127.0.0.1, port: 5432}\n",
            "  engine: sqlite\n  path: /var/lib/hpcportal/portal.db\n",
        ),
        "line 9, column 11: database.engine: sqlite serves one server only, and 2 are configured",
        id="sqlite-with-two-servers",
    ),
    pytest.param(
        broken("  quorum: 2\n", "  quorom: 2\n"),
        "line 17, column 3: redis.quorom: unknown key (misspelt?",
        id="misspelt-key",
    ),
    pytest.param(
        broken(
            "    address: 127.0.0.1\n    port: 8002", "    address: 127.0.0.300\n    port: 8002"
        ),
        "line 6, column 14: servers[1].address: '127.0.0.300' is not an IP address",
        id="bad-ip-address",
    ),
    pytest.param(
        broken("  engine: postgresql\n", "  engine: mysql\n"),
        "line 9, column 11: database.engine: 'mysql' is not one of "
        "'postgresql', 'galera', 'sqlite'",
        id="unknown-database-engine",
    ),
    pytest.param(
        broken("  interface: eth0\n", "  interface: eth0\n   virtual_router_id: 52\n"),
        "line 24, column 21: YAML: ",
        id="yaml-indentation",
    ),
    pytest.param(
        broken("  interface: eth0\n", "  interface: eth0\n  interface: eth1\n"),
        "line 24, column 3: front_end.interface: this key appears twice in one section",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        broken(
            "    - {name: lb2, address: 127.0.0.3/8, priority: 100}\n",
            "    - {name: lb2, address: 127.0.0.3/8, priority: 150}\n",
        ),
        "line 21, column 51: front_end.hosts[1].priority: the two front ends need different",
        id="equal-vrrp-priorities",
    ),
    pytest.param(
        broken("  state_save_location: /shared/state\n", "  state_save_location: shared/state\n"),
        "line 29, column 24: slurm.state_save_location: 'shared/state' must be an absolute path",
        id="relative-path",
    ),
    pytest.param(
        broken("  - name: portal2\n", "  - name: portal_2\n"),
        "line 5, column 11: servers[1].name: 'portal_2' has characters not allowed here",
        id="bad-host-name",
    ),
    pytest.param(
        broken("  virtual_router_id: 51\n", "  virtual_router_id: 256\n"),
        "line 24, column 22: front_end.virtual_router_id: must be at most 255",
        id="vrid-out-of-range",
    ),
    pytest.param(
        broken(
            "  state_save_location: /shared/state\n", "  state_save_location: /shared/my state\n"
        ),
        "line 29, column 24: slurm.state_save_location: '/shared/my state': no spaces",
        id="path-with-space",
    ),
    pytest.param(
        BASE.split("redis:\n")[0],
        "line 1, column 1: servers: several servers share sessions and the leader's snapshot "
        "through Redis: add a redis section",
        id="two-servers-without-redis",
    ),
    pytest.param(
        broken("  primary: {name: db1, address: 127.0.0.1, port: 5432}\n", "  primaryy: {}\n"),
        "line 8, column 1: database.primary: required, but missing",
        id="missing-required",
    ),
    pytest.param(
        broken("  interface: eth0\n", "  interface: lo\n"),
        "line 23, column 14: front_end.interface: Keepalived cannot use the loopback interface",
        id="vrrp-on-loopback",
    ),
    pytest.param("", "line 1, column 1: the file is empty", id="empty"),
    pytest.param("- a\n- b\n", "line 1, column 1: the top level must be a mapping", id="list"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_broken_configuration_names_its_line_and_problem(text: str, expected: str) -> None:
    found = issues_of(text)
    assert any(issue.startswith(expected) for issue in found), found


def test_every_problem_is_reported_in_file_order() -> None:
    text = broken("    port: 8002\n", "    port: 0\n").replace("  quorum: 2\n", "  quorum: 0\n")
    found = issues_of(text)
    assert [issue.split(":")[0] for issue in found] == ["line 7, column 11", "line 17, column 11"]


def test_galera_of_two_nodes_is_refused() -> None:
    text = broken(
        "  engine: postgresql\n  primary: {name: db1, address: 127.0.0.1, port: 5432}\n",
        "  engine: galera\n  nodes:\n    - {name: db1, address: 127.0.0.1}\n"
        "    - {name: db2, address: 127.0.0.2}\n",
    )
    found = issues_of(text)
    assert any(
        issue.startswith("line 10, column 3: database.nodes: a Galera cluster of two nodes")
        for issue in found
    ), found


def test_cli_validate_prints_each_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cluster_config.yaml"
    path.write_text(broken("    port: 8002\n", "    port: 70000\n"))
    result = CliRunner().invoke(app, ["cluster", "validate", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}: line 7, column 11: servers[1].port: must be between 1 and 65535" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_cli_validate_accepts_the_example() -> None:
    result = CliRunner().invoke(app, ["cluster", "validate", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid: 2 server(s), database postgresql" in result.output


def test_cli_validate_on_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["cluster", "validate", "--config", str(tmp_path / "nope.yaml")]
    )
    assert result.exit_code == 2
    assert "cannot read: No such file or directory" in result.output
