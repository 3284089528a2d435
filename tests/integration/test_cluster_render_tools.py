"""Every file ``hpcportal cluster render`` writes is checked by its real tool (issue 12).

HAProxy and Keepalived check their files (``-c``, ``--config-test``); Redis, a replica
of it and a Sentinel start on the rendered files on loopback and find each other;
PostgreSQL starts (a throwaway ``initdb``) with the rendered settings and pg_hba lines
included and reports them back, and reads the standby's ``primary_conninfo``;
MariaDB parses the Galera snippet (``--help --verbose``); ``systemd-analyze verify``
checks the unit; slurmctld starts on the ``SlurmctldHost`` lines (with its own munged)
and ``scontrol ping`` names the primary (this host) and the backup. Nothing here uses
the shared dev clusters or services; every address is 127.0.0.0/8.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

from hpcportal.config import Settings
from hpcportal.devcluster.munge import munge_argv, prepare_munge
from hpcportal.devcluster.paths import Layout
from hpcportal.services.operations.cluster_config import ClusterConfig
from hpcportal.services.operations.config_file import load_config_file, load_config_text
from hpcportal.services.operations.render import render_all
from hpcportal.services.operations.status import cluster_status
from tests.integration.portal_server import free_port

REPO = Path(__file__).resolve().parents[2]
HOSTNAME = socket.gethostname().split(".")[0]
#: Keepalived refuses the loopback interface, so its check runs in a network namespace
#: of its own (``unshare -n``) holding a veth of this name (no packet leaves it).
VRRP_INTERFACE = "hpcp0"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/setup.sh installs it)")
    return path


def world_readable_tmp(prefix: str) -> Path:
    """A directory other accounts (postgres, munge) can enter: pytest's tmp is 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    names = ["s1", "s2", "pg1", "pg2", "r1", "r2", "sen1", "sen2", "lb"]
    return {name: free_port() for name in names}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = world_readable_tmp("hpcp-render-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def loopback_yaml(ports: dict[str, int], workdir: Path, database: str) -> str:
    env_file = workdir / "portal.env"
    env_file.write_text("")
    return f"""\
servers:
  - {{name: portal1, address: 127.0.0.1, port: {ports["s1"]}}}
  - {{name: portal2, address: 127.0.0.1, port: {ports["s2"]}}}
portal:
  user: root
  executable: {REPO / ".venv" / "bin" / "hpcportal"}
  environment_file: {env_file}
  working_directory: {workdir}
front_end:
  hosts:
    - {{name: lb1, address: 192.0.2.2/24, priority: 150}}
    - {{name: lb2, address: 192.0.2.3/24, priority: 100}}
  virtual_ip: 192.0.2.10
  interface: {VRRP_INTERFACE}
  virtual_router_id: 51
  bind_address: 127.0.0.1
  port: {ports["lb"]}
{database}
redis:
  mode: sentinel
  master: {{name: r1, address: 127.0.0.1, port: {ports["r1"]}}}
  replicas:
    - {{name: r2, address: 127.0.0.1, port: {ports["r2"]}}}
  sentinels:
    - {{name: sen1, address: 127.0.0.1, port: {ports["sen1"]}}}
    - {{name: sen2, address: 127.0.0.1, port: {ports["sen2"]}}}
  quorum: 1
  data_directory: {workdir}
slurm:
  controllers:
    - {{name: {HOSTNAME}}}
    - {{name: ctl2, address: 127.0.0.1}}
  state_save_location: {workdir / "slurmstate"}
"""


POSTGRES = """\
database:
  engine: postgresql
  primary: {{name: db1, address: 127.0.0.1, port: {pg1}}}
  standbys:
    - {{name: db2, address: 127.0.0.1, port: {pg2}}}
  replication_passfile: {passfile}"""

GALERA = """\
database:
  engine: galera
  nodes:
    - {name: db1, address: 127.0.0.1}
    - {name: db2, address: 127.0.0.2}
    - {name: db3, address: 127.0.0.3}"""


@pytest.fixture(scope="module")
def rendered(ports: dict[str, int], workdir: Path) -> dict[str, Path]:
    database = POSTGRES.format(pg1=ports["pg1"], pg2=ports["pg2"], passfile=workdir / "pgpass")
    config: ClusterConfig = load_config_text(loopback_yaml(ports, workdir, database))
    galera = load_config_text(loopback_yaml(ports, workdir, GALERA))
    files = {**render_all(config).files, **render_all(galera).files}
    out = workdir / "rendered"
    paths: dict[str, Path] = {}
    for relative, text in files.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
        paths[relative] = target
    return paths


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


@contextmanager
def started(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    """A process of ours, killed (and reaped) whatever the test does."""
    process = subprocess.Popen(  # type: ignore[call-overload]
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def wait_for(check: object, what: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
            if last:
                return last
        except Exception as exc:  # not up yet: keep the reason for the failure message
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s; last: {last!r}")


def test_haproxy_accepts_its_configuration(rendered: dict[str, Path]) -> None:
    result = run([tool("haproxy"), "-c", "-f", str(rendered["haproxy/haproxy.cfg"])])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_haproxy_check_does_fail_on_a_broken_file(rendered: dict[str, Path]) -> None:
    """The control: ``haproxy -c`` is a real check, not one that passes anything."""
    broken = rendered["haproxy/haproxy.cfg"].with_name("broken.cfg")
    broken.write_text(rendered["haproxy/haproxy.cfg"].read_text() + "    retry-on nonsense\n")
    assert run([tool("haproxy"), "-c", "-f", str(broken)]).returncode != 0


def keepalived_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``keepalived --config-test`` in a new network namespace with the VRRP interface."""
    script = (
        f"ip link add {VRRP_INTERFACE} type veth peer name {VRRP_INTERFACE}p && "
        f"ip link set {VRRP_INTERFACE} up && "
        f'exec {tool("keepalived")} --config-test -l -n -f "$1"'
    )
    return run(["unshare", "-n", "sh", "-c", script, "sh", str(path)])


@pytest.mark.parametrize("host", ["lb1", "lb2"])
def test_keepalived_accepts_each_front_end(rendered: dict[str, Path], host: str) -> None:
    path = rendered[f"keepalived/{host}.conf"]
    result = keepalived_check(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Line" not in output and "Unknown" not in output, output
    assert ("state MASTER" in path.read_text()) == (host == "lb1")


def test_keepalived_check_does_fail_on_a_broken_file(rendered: dict[str, Path]) -> None:
    broken = rendered["keepalived/lb1.conf"].with_name("broken.conf")
    broken.write_text(rendered["keepalived/lb1.conf"].read_text().replace("priority", "prio"))
    result = keepalived_check(broken)
    assert result.returncode != 0
    assert "Unknown keyword 'prio'" in result.stdout + result.stderr


def test_redis_replica_and_sentinel_start_and_find_each_other(
    rendered: dict[str, Path], ports: dict[str, int], workdir: Path
) -> None:
    # One machine plays every Redis host here, so each gets its own data directory
    # (``--dir`` after the file overrides it); in production each host has its own.
    dirs = {name: workdir / f"redis-{name}" for name in ("r1", "r2", "sen1")}
    for path in dirs.values():
        path.mkdir()
    sentinel_conf = dirs["sen1"] / "sentinel.conf"  # Sentinel rewrites its file
    shutil.copy(rendered["redis/sen1-sentinel.conf"], sentinel_conf)
    server = tool("redis-server")
    with (
        started([server, str(rendered["redis/r1.conf"]), "--dir", str(dirs["r1"])]),
        started([server, str(rendered["redis/r2.conf"]), "--dir", str(dirs["r2"])]),
        started([tool("redis-sentinel"), str(sentinel_conf)]),
    ):
        master = redis.Redis(host="127.0.0.1", port=ports["r1"], socket_timeout=2)
        replica = redis.Redis(host="127.0.0.1", port=ports["r2"], socket_timeout=2)
        sentinel = redis.Redis(host="127.0.0.1", port=ports["sen1"], socket_timeout=2)
        wait_for(master.ping, "the master answers")
        role = wait_for(
            lambda: (r := replica.execute_command("ROLE"))[3] == b"connected" and r,
            "the replica connects to the master",
        )
        assert role[0] == b"slave" and role[2] == ports["r1"]  # type: ignore[index]
        address = wait_for(
            lambda: sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "hpcportal"),
            "the sentinel monitors the master",
        )
        assert address == [b"127.0.0.1", str(ports["r1"]).encode()]
        wait_for(
            lambda: sentinel.execute_command("SENTINEL", "REPLICAS", "hpcportal"),
            "the sentinel finds the replica through the master",
        )
        for client in (master, replica, sentinel):
            client.close()
        # cluster status reads the same roles (sen2 is configured but not started).
        config = load_config_text(loopback_yaml(ports, workdir, GALERA))
        quiet = Settings(database_url=f"sqlite:///{workdir / 'status.db'}")
        report = cluster_status(config, quiet, timeout=0.5)
        roles = [(part.name, part.value, part.ok) for part in report.redis]
        assert roles[:3] == [
            ("r1", "master, 1 replica(s)", True),
            ("r2", f"replica of 127.0.0.1:{ports['r1']} (connected)", True),
            ("sen1 (sentinel)", f"master hpcportal at 127.0.0.1:{ports['r1']}", True),
        ]
        assert roles[3][0] == "sen2 (sentinel)" and roles[3][1].startswith("unreachable: ")


AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


def pg_ctl(data: Path, log: Path, action: str, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [tool("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", *options, action]
    return run([*AS_POSTGRES, *argv])


def postgres_owned(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)
    shutil.chown(path, "postgres", "postgres")


def test_postgresql_primary_and_standby_replicate_on_the_rendered_settings(
    rendered: dict[str, Path], ports: dict[str, int], workdir: Path
) -> None:
    """A throwaway primary runs on db1's file and pg_hba lines; a standby made with
    pg_basebackup runs on db2's file (primary_conninfo, passfile) and streams from it;
    ``cluster status`` then names db1 primary and db2 standby."""
    base = world_readable_tmp("hpcp-pg-")
    shutil.chown(base, "postgres", "postgres")
    primary, standby = base / "primary", base / "standby"
    socket_option = ("-o", f"-c unix_socket_directories={base}")
    try:
        result = run([*AS_POSTGRES, tool("initdb"), "-D", str(primary), "-A", "trust"])
        assert result.returncode == 0, result.stderr
        postgres_owned(primary / "hpcportal.conf", rendered["postgresql/db1.conf"].read_text())
        with (primary / "postgresql.conf").open("a") as handle:
            handle.write("\ninclude 'hpcportal.conf'\n")
        # The socket for the test itself, then exactly the rendered lines.
        postgres_owned(
            primary / "pg_hba.conf",
            "local all postgres trust\n" + rendered["postgresql/pg_hba.conf"].read_text(),
        )
        result = pg_ctl(primary, base / "primary.log", "start", *socket_option)
        assert result.returncode == 0, result.stdout + (base / "primary.log").read_text()
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
            psycopg.connect(host="127.0.0.1", port=ports["pg1"], user="postgres").close()
        with psycopg.connect(
            host=str(base), port=ports["pg1"], user="postgres", autocommit=True
        ) as connection:
            settings = dict(
                connection.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('wal_level', 'listen_addresses', 'hot_standby', 'max_wal_senders')"
                ).fetchall()
            )
            rules = connection.execute(
                "SELECT database, user_name, address, error FROM pg_hba_file_rules "
                "WHERE address = '127.0.0.1'"
            ).fetchall()
            connection.execute("CREATE ROLE hpcportal LOGIN PASSWORD 'render-test'")
            connection.execute("CREATE DATABASE hpcportal OWNER hpcportal")
            connection.execute("CREATE ROLE replicator REPLICATION LOGIN PASSWORD 'repl-test'")
        assert settings == {
            "wal_level": "replica",
            "listen_addresses": "127.0.0.1",
            "hot_standby": "on",
            "max_wal_senders": "6",
        }
        assert (["hpcportal"], ["hpcportal"], "127.0.0.1", None) in rules
        assert (["replication"], ["replicator"], "127.0.0.1", None) in rules
        # The rendered line lets the portal's user in over TCP, with its password.
        with psycopg.connect(
            host="127.0.0.1", port=ports["pg1"], user="hpcportal",
            password="render-test", dbname="hpcportal",
        ) as connection:  # fmt: skip
            assert connection.execute("SELECT current_user").fetchone() == ("hpcportal",)

        # The standby: its replication password where db2's file says (the passfile).
        passfile = rendered["postgresql/db2.conf"].read_text().split("passfile=")[1]
        passfile_path = Path(passfile.split("'")[0])
        assert passfile_path == workdir / "pgpass"
        postgres_owned(
            passfile_path, f"127.0.0.1:{ports['pg1']}:replication:replicator:repl-test\n", 0o600
        )
        result = run(
            [*AS_POSTGRES, "env", f"PGPASSFILE={passfile_path}", tool("pg_basebackup"),
             "-h", "127.0.0.1", "-p", str(ports["pg1"]), "-U", "replicator",
             "-D", str(standby), "-X", "stream", "--checkpoint=fast"]
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        postgres_owned(standby / "hpcportal.conf", rendered["postgresql/db2.conf"].read_text())
        postgres_owned(standby / "standby.signal", "")
        result = pg_ctl(standby, base / "standby.log", "start", *socket_option)
        assert result.returncode == 0, result.stdout + (base / "standby.log").read_text()
        with psycopg.connect(
            host=str(base), port=ports["pg1"], user="postgres", autocommit=True
        ) as connection:  # autocommit: statistics are cached for a transaction's length
            streaming = wait_for(
                lambda: connection.execute(
                    "SELECT application_name, state FROM pg_stat_replication"
                ).fetchall(),
                "the standby streams from the primary",
            )
        assert streaming == [("db2", "streaming")]

        # cluster status reads each host's role with the portal's credentials.
        config = load_config_text(
            loopback_yaml(
                ports,
                workdir,
                POSTGRES.format(pg1=ports["pg1"], pg2=ports["pg2"], passfile=passfile_path),
            )
        )
        portal = Settings(
            database_url=f"postgresql+psycopg://hpcportal:render-test@127.0.0.1:{ports['pg1']}/hpcportal"
        )
        report = cluster_status(config, portal, timeout=0.5)
        assert [(part.name, part.value) for part in report.database] == [
            ("db1", "primary"),
            ("db2", "standby"),
        ]
    finally:
        for data in (standby, primary):
            if data.exists():
                run([*AS_POSTGRES, tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def test_mariadb_parses_the_galera_settings(rendered: dict[str, Path]) -> None:
    path = rendered["galera/db2.cnf"]
    result = run([tool("mariadbd"), f"--defaults-file={path}", "--help", "--verbose"])
    assert result.returncode == 0, result.stderr
    values = dict(
        line.split(None, 1)
        for line in result.stdout.splitlines()
        if line.startswith("wsrep") and len(line.split(None, 1)) == 2
    )
    assert values["wsrep-on"].strip() == "TRUE"
    assert values["wsrep-cluster-address"].strip() == "gcomm://127.0.0.1,127.0.0.2,127.0.0.3"
    assert values["wsrep-node-name"].strip() == "db2"
    assert values["wsrep-node-address"].strip() == "127.0.0.2"
    broken = path.with_name("broken.cnf")
    broken.write_text(path.read_text() + "wsrep_cluster_adress = gcomm://\n")
    failed = run([tool("mariadbd"), f"--defaults-file={broken}", "--help", "--verbose"])
    assert failed.returncode != 0 and "unknown variable" in failed.stderr


def test_systemd_verifies_each_unit(rendered: dict[str, Path], workdir: Path) -> None:
    units = workdir / "units"
    units.mkdir(exist_ok=True)
    for name in ("portal1", "portal2"):
        unit = units / f"hpcportal-{name}.service"
        shutil.copy(rendered[f"systemd/{name}/hpcportal.service"], unit)
        result = run([tool("systemd-analyze"), "verify", str(unit)])
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr
    text = rendered["systemd/portal2/hpcportal.service"].read_text()
    assert f"serve --host 127.0.0.1 --port {free_port_of(text)}" in text


def free_port_of(unit: str) -> str:
    return unit.split("--port ", 1)[1].split()[0]


def test_slurmctld_starts_on_the_controller_lines(rendered: dict[str, Path], workdir: Path) -> None:
    base = world_readable_tmp("hpcp-slurmha-")
    layout = Layout(base)
    state = workdir / "slurmstate"
    state.mkdir(exist_ok=True)
    controller_lines = rendered["slurm/slurm.conf.ha"].read_text()
    assert f"SlurmctldHost={HOSTNAME}\nSlurmctldHost=ctl2(127.0.0.1)\n" in controller_lines
    conf = base / "slurm.conf"
    conf.write_text(
        "ClusterName=hpcpha\n"
        + controller_lines
        + f"SlurmctldPort={free_port()}\nSlurmdPort={free_port()}\n"
        "SlurmUser=root\nAuthType=auth/munge\nCredType=cred/munge\n"
        f"AuthInfo=socket={layout.munge_socket}\n"
        f"SlurmctldPidFile={base}/slurmctld.pid\nSlurmctldLogFile={base}/slurmctld.log\n"
        f"SlurmdSpoolDir={base}/spool\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        "SelectType=select/cons_tres\nAccountingStorageType=accounting_storage/none\n"
        "JobCompType=jobcomp/none\nMailProg=/bin/true\n"
        "NodeName=hpcpha-n1 NodeHostname=localhost CPUs=1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=hpcpha-n1 Default=YES\n"
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    prepare_munge(layout)
    munged = run(list(munge_argv(layout)))
    assert munged.returncode == 0, munged.stderr
    try:
        with started([tool("slurmctld"), "-D", "-f", str(conf)], env=env) as slurmctld:
            ping = wait_for(
                lambda: (
                    (r := run([tool("scontrol"), "ping"], env=env)).returncode == 0
                    and "is UP" in r.stdout
                    and r.stdout
                ),
                "slurmctld answers",
            )
            shown = run([tool("scontrol"), "show", "config"], env=env).stdout
            assert slurmctld.poll() is None
        assert f"Slurmctld(primary) at {HOSTNAME} is UP" in str(ping)
        # The backup's state is not asserted: its address, 127.0.0.1, reaches this very
        # slurmctld. That slurmctld took both lines, in order, is:
        assert "Slurmctld(backup) at ctl2 is" in str(ping)
        lines = [line.split() for line in shown.splitlines() if "SlurmctldHost" in line]
        assert lines == [
            ["SlurmctldHost[0]", "=", HOSTNAME],
            ["SlurmctldHost[1]", "=", "ctl2(127.0.0.1)"],
        ], shown
        assert f"StateSaveLocation       = {workdir / 'slurmstate'}" in shown
    finally:
        pid = layout.munge_pid.read_text().strip() if layout.munge_pid.exists() else ""
        if pid.isdigit():
            os.kill(int(pid), 15)
        shutil.rmtree(base, ignore_errors=True)


def test_the_documented_example_renders_files_the_tools_accept(tmp_path: Path) -> None:
    """docs/cluster_config.example.yaml as shipped: HAProxy and both Keepalived files."""
    config = load_config_file(REPO / "docs" / "cluster_config.example.yaml")
    files = render_all(config).files
    haproxy = tmp_path / "haproxy.cfg"
    haproxy.write_text(files["haproxy/haproxy.cfg"])
    result = run([tool("haproxy"), "-c", "-f", str(haproxy)])
    assert result.returncode == 0, result.stdout + result.stderr
    for host in ("lb1", "lb2"):
        path = tmp_path / f"{host}.conf"
        path.write_text(files[f"keepalived/{host}.conf"].replace("eth0", VRRP_INTERFACE))
        checked = keepalived_check(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
