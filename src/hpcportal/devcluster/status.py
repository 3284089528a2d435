"""The status report shared by ``status``, ``status --json``, ``up`` and the tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcportal.devcluster.database import mariadb_reachable
from hpcportal.devcluster.nodes import NodeState
from hpcportal.devcluster.processes import Daemon, process_argv, read_pid
from hpcportal.devcluster.templates import GPU_NODE
from hpcportal.devcluster.users import DEMO_USERS

SYSTEM_MARIADB_PID = Path("/run/mysqld/mysqld.pid")


def daemon_component(daemon: Daemon) -> dict[str, Any]:
    pid = daemon.pid()
    return {"name": daemon.name, "pid": pid, "running": pid is not None, "managed": True}


def mariadb_component(ours: Daemon) -> dict[str, Any]:
    """MariaDB counts as up when it answers, whoever started it; ``managed`` says if we did."""
    pid = ours.pid()
    managed = pid is not None
    if pid is None:
        system_pid = read_pid(SYSTEM_MARIADB_PID)
        pid = system_pid if system_pid and process_argv(system_pid) else None
    return {"name": "mariadb", "pid": pid, "running": mariadb_reachable(), "managed": managed}


def build_status(
    *,
    requested: Path,
    root: Path,
    slurm_conf: Path,
    components: Sequence[dict[str, Any]],
    nodes: Sequence[NodeState],
    expected_nodes: Sequence[str],
    notes: Sequence[str],
) -> dict[str, Any]:
    """Assemble the report; ``ok`` means every component runs and every node takes jobs."""
    by_name = {n.name: n for n in nodes}
    missing = [name for name in expected_nodes if name not in by_name]
    not_ready = [n.name for n in nodes if n.name in expected_nodes and not n.ready]
    all_notes = list(notes)
    if missing:
        all_notes.append(f"nodes unknown to slurmctld: {', '.join(missing)}")
    if not_ready:
        all_notes.append(f"nodes not accepting jobs: {', '.join(not_ready)}")
    ok = all(c["running"] for c in components) and not missing and not not_ready
    return {
        "ok": ok,
        "dir": str(requested),
        "root": str(root),
        "slurm_conf": str(slurm_conf),
        "components": list(components),
        "nodes": [n.as_dict() for n in nodes],
        "expected_nodes": list(expected_nodes),
        "gpu": GPU_NODE in by_name,
        "users": [u.as_dict() for u in DEMO_USERS],
        "notes": all_notes,
    }
