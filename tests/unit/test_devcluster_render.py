"""Config rendering of the dev cluster: pure text, no root, no daemons."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from hpcportal.devcluster.nodes import parse_sinfo
from hpcportal.devcluster.paths import Layout, fallback_root, resolve_root, socket_fits
from hpcportal.devcluster.templates import (
    ALL_NODES,
    Slot,
    cluster_nodes,
    render_gres_conf,
    render_slurm_conf,
    render_slurmdbd_conf,
)
from hpcportal.devcluster.users import DEMO_USERS

ROOT = Path("/srv/dc")
LAYOUT = Layout(ROOT)
SOCKET = "/srv/dc/munge/run/munge.socket"


def settings(text: str) -> dict[str, str]:
    """Key=value lines of a Slurm config (first value wins), ignoring node/partition lines."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "NodeName=", "PartitionName=")):
            key, _, value = line.partition("=")
            out.setdefault(key, value)
    return out


@pytest.fixture(scope="module")
def slurm_conf() -> str:
    return render_slurm_conf(LAYOUT, "testhost", cluster_nodes(include_gpu=True))


def test_auth_goes_through_our_munge_socket(slurm_conf: str) -> None:
    conf = settings(slurm_conf)
    assert conf["AuthType"] == "auth/munge"
    assert conf["AuthInfo"] == f"socket={SOCKET}"
    assert conf["AccountingStoragePass"] == SOCKET


def test_required_settings(slurm_conf: str) -> None:
    conf = settings(slurm_conf)
    expected = {
        "ClusterName": "hpcdev",
        "SlurmctldHost": "testhost",
        "SlurmctldPort": "16817",
        "SlurmdPort": "16818",
        "AccountingStoragePort": "16819",
        "SlurmdParameters": "config_overrides",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "DefMemPerCPU": "500",
        "AccountingStorageType": "accounting_storage/slurmdbd",
        "AccountingStorageEnforce": "associations,limits,qos",
        "AccountingStorageTRES": "gres/gpu",
        "AccountingStoreFlags": "job_comment,job_script,job_env",
        "GresTypes": "gpu",
        "ReturnToService": "2",
        "StateSaveLocation": "/srv/dc/state",
        "SlurmdSpoolDir": "/srv/dc/spool/%n",
        "SlurmdPidFile": "/srv/dc/run/slurmd-%n.pid",
        "SlurmdLogFile": "/srv/dc/log/slurmd-%n.log",
    }
    assert {k: conf.get(k) for k in expected} == expected
    assert "CgroupPlugin" not in slurm_conf


def word(line: str, key: str) -> str:
    """The value of ``key=value`` within a one-line node definition."""
    match = re.search(rf"(?:^| ){key}=(\S+)", line)
    assert match, f"{key} missing in {line!r}"
    return match.group(1)


def test_node_lines_have_unique_ports(slurm_conf: str) -> None:
    node_lines = [line for line in slurm_conf.splitlines() if line.startswith("NodeName=")]
    names = [word(line, "NodeName") for line in node_lines]
    ports = [word(line, "Port") for line in node_lines]
    assert names == ["node001", "node002", "node003", "node004", "gpu001", "viz-node001"]
    assert len(set(ports)) == len(ports)
    assert ports[0] == "17001"
    assert all("NodeHostname=testhost" in line for line in node_lines)
    assert all("CPUs=4 RealMemory=4000" in line for line in node_lines)
    assert "Gres=gpu:2" in node_lines[4]


def test_partitions(slurm_conf: str) -> None:
    lines = [line for line in slurm_conf.splitlines() if line.startswith("PartitionName=")]
    assert lines == [
        "PartitionName=normal Nodes=node001,node002,node003,node004 Default=YES "
        "MaxTime=INFINITE State=UP",
        "PartitionName=gpu Nodes=gpu001 MaxTime=INFINITE State=UP",
        "PartitionName=viz Nodes=viz-node001 MaxTime=INFINITE State=UP",
    ]


def test_without_gpu_the_node_and_partition_are_gone_and_ports_stay() -> None:
    text = render_slurm_conf(LAYOUT, "testhost", cluster_nodes(include_gpu=False))
    assert "gpu001" not in text
    assert "PartitionName=gpu " not in text
    assert "NodeName=viz-node001 NodeHostname=testhost Port=17006" in text
    assert render_gres_conf(LAYOUT, cluster_nodes(include_gpu=False)).count("NodeName") == 0


def test_gres_conf_gives_gpus_files() -> None:
    text = render_gres_conf(LAYOUT, ALL_NODES)
    assert "NodeName=gpu001 Name=gpu File=/srv/dc/dev/fakegpu[0-1]" in text.splitlines()


def test_slurmdbd_conf() -> None:
    conf = settings(render_slurmdbd_conf(LAYOUT, "s3cret"))
    assert conf["AuthInfo"] == f"socket={SOCKET}"
    assert conf["DbdPort"] == "16819"
    assert conf["StoragePass"] == "s3cret"
    assert conf["StorageUser"] == "hpcdev_slurm"
    assert conf["StorageLoc"] == LAYOUT.db_name
    assert conf["PidFile"] == "/srv/dc/run/slurmdbd.pid"


def test_demo_users_table() -> None:
    by_name = {u.name: u for u in DEMO_USERS}
    assert set(by_name) == {"alice", "bob", "dave", "carol"}
    assert by_name["alice"].password == "alice-demo"
    assert by_name["carol"].admin and by_name["carol"].group == "hpc-admins"
    assert [u.name for u in DEMO_USERS if u.admin] == ["carol"]


def test_private_parent_moves_state_to_a_shared_place(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    requested = private / ".devcluster"
    assert resolve_root(requested) == fallback_root(requested)
    assert str(fallback_root(requested)).startswith("/var/lib/hpcportal-devcluster/")


def test_open_parent_keeps_the_chosen_dir() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        open_dir = Path(name)
        open_dir.chmod(0o755)
        requested = open_dir / ".devcluster"
        assert resolve_root(requested) == requested.resolve()


def test_socket_path_limit() -> None:
    assert socket_fits(Path("/work/main/.devcluster"))
    assert not socket_fits(Path("/x" * 60))


def test_parse_sinfo_merges_partitions_and_flags() -> None:
    nodes = parse_sinfo(
        "node001|idle|normal*|none\n"
        "node001|idle|debug|none\n"
        "gpu001|down*|gpu|Not responding\n"
        "viz-node001|mixed|viz|none\n"
    )
    by_name = {n.name: n for n in nodes}
    assert by_name["node001"].partitions == ["normal", "debug"]
    assert by_name["node001"].ready
    assert not by_name["gpu001"].ready and not by_name["gpu001"].responding
    assert by_name["gpu001"].as_dict()["state"] == "down*"
    assert by_name["gpu001"].reason == "Not responding"
    assert by_name["viz-node001"].ready


def test_slots_give_each_checkout_its_own_ports_and_database() -> None:
    from hpcportal.devcluster.templates import MAX_SLOTS

    first, second = Slot(0), Slot(1)
    text = render_slurm_conf(LAYOUT, "testhost", cluster_nodes(True, second), second)
    assert f"SlurmctldPort={second.slurmctld_port}" in text
    assert f"Port={second.first_node_port} " in text
    assert second.db_user != first.db_user
    assert f"StorageUser={second.db_user}" in render_slurmdbd_conf(LAYOUT, "pw", second)
    used = [port for i in range(MAX_SLOTS) for port in Slot(i).ports()]
    assert len(used) == len(set(used)), "two slots share a port"
    assert (first.slurmctld_port, first.first_node_port) == (16817, 17001)


def test_each_directory_has_its_own_accounting_database() -> None:
    """Two checkouts taking turns on one port slot must not share accounting records:
    both number their jobs from 1, and a record of one would answer for the other."""
    first, other = Layout(Path("/work/a/.devcluster")), Layout(Path("/tmp/fresh/.devcluster"))
    assert first.db_name != other.db_name
    assert first.db_name == Layout(Path("/work/a/.devcluster")).db_name  # stable
    assert re.fullmatch(r"hpcdev_acct_[0-9a-f]{10}", first.db_name)
    text = render_slurmdbd_conf(other, "pw", Slot(0))
    assert f"StorageLoc={other.db_name}\n" in text


def test_a_backup_controller_is_a_second_host_on_its_own_loopback_address() -> None:
    nodes = cluster_nodes(include_gpu=True)
    plain = render_slurm_conf(LAYOUT, "testhost", nodes)
    ha = render_slurm_conf(LAYOUT, "testhost", nodes, backup_controller=True)
    hosts = [line for line in ha.splitlines() if line.startswith("SlurmctldHost=")]
    assert hosts == ["SlurmctldHost=testhost(127.0.0.1)", "SlurmctldHost=hpcdev-backup(127.0.0.2)"]
    assert settings(ha)["CommunicationParameters"] == "NoCtldInAddrAny"
    assert settings(ha)["SlurmctldTimeout"] == "8"
    assert settings(ha)["StateSaveLocation"] == settings(plain)["StateSaveLocation"]
    assert [line for line in plain.splitlines() if line.startswith("SlurmctldHost=")] == [
        "SlurmctldHost=testhost"
    ]
    assert "CommunicationParameters" not in settings(plain)
    assert settings(plain)["SlurmctldTimeout"] == "30"
