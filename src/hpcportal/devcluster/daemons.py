"""The cluster's daemons as ``Daemon`` values, and the probes that say they answer.

For a release from a Debian root (``wrappers.py``), slurmctld and slurmdbd get the
cluster's ``libexec/in-root`` as ``launcher`` (their command line still starts with
their name) and slurmd gets the root's loader as ``command``.

A live pid is not enough: slurmdbd is only useful once sacctmgr gets answers, and
slurmctld once ``scontrol ping`` says UP. The probes here are what ``up`` waits for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from hpcportal.devcluster.commands import succeeds, try_run
from hpcportal.devcluster.munge import munge_argv
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.processes import Daemon
from hpcportal.devcluster.templates import BACKUP_HOST, NodeSpec, Slot

MARIADB_BINARY = "/usr/sbin/mariadbd"


def munged(layout: Layout) -> Daemon:
    return Daemon(
        name="munged",
        argv=munge_argv(layout),
        pid_file=layout.munge_pid,
        program="munged",
        log_files=(layout.munge_log,),
        output_file=layout.daemon_output("munged"),
        match_args=(f"--socket={layout.munge_socket}",),
    )


def slurmdbd(
    layout: Layout, env: Mapping[str, str], slot: Slot, launcher: tuple[str, ...] = ()
) -> Daemon:
    return _central("slurmdbd", layout, env, slot, launcher)


def slurmctld(
    layout: Layout, env: Mapping[str, str], slot: Slot, launcher: tuple[str, ...] = ()
) -> Daemon:
    return _central("slurmctld", layout, env, slot, launcher)


def _central(
    name: Literal["slurmdbd", "slurmctld"],
    layout: Layout,
    env: Mapping[str, str],
    slot: Slot,
    launcher: tuple[str, ...],
) -> Daemon:
    """slurmdbd or slurmctld: one program, one port, started through ``launcher`` (the
    chroot launcher for a newer release, nothing for the host's own)."""
    if name == "slurmdbd":
        pid_file, log_file, port = layout.slurmdbd_pid, layout.slurmdbd_log, slot.slurmdbd_port
    else:
        pid_file, log_file = layout.slurmctld_pid, layout.slurmctld_log
        port = slot.slurmctld_port
    return Daemon(
        name=name,
        argv=(*launcher, name),
        pid_file=pid_file,
        program=name,
        log_files=(log_file,),
        output_file=layout.daemon_output(name),
        env=env,
        ports=(port,),
    )


def slurmctld_backup(layout: Layout, env: Mapping[str, str]) -> Daemon:
    """The backup slurmctld (``SlurmctldHost`` number two), on this same host.

    slurmctld finds its place among the ``SlurmctldHost`` lines by its host name, and
    slurm.conf has one ``SlurmctldPidFile`` and one ``SlurmctldLogFile``. So it runs in
    its own UTS and mount namespaces (``unshare``): host name ``BACKUP_HOST``, and
    ``run``/``log`` bind-mounted from ``run-backup``/``log-backup``, so its pid file and
    log do not collide with the primary's, and its own /etc/hosts naming it. The state
    directory stays shared, as Slurm's HA requires. Its port is the primary's, on
    another loopback address.
    """
    script = (
        f"hostname {BACKUP_HOST} && mount --bind {layout.backup_run} {layout.run} && "
        f"mount --bind {layout.backup_log} {layout.log} && "
        f"mount --bind {layout.backup_hosts} /etc/hosts && exec slurmctld"
    )
    return Daemon(
        name="slurmctld-backup",
        argv=("unshare", "--uts", "--mount", "--propagation", "private", "--", "sh", "-c", script),
        pid_file=layout.slurmctld_backup_pid,
        program="slurmctld",
        log_files=(layout.slurmctld_backup_log,),
        output_file=layout.daemon_output("slurmctld-backup"),
        env=env,
    )


def slurmd(
    layout: Layout,
    env: Mapping[str, str],
    node: NodeSpec,
    command: tuple[str, ...] = ("slurmd",),
    extra_args: tuple[str, ...] = (),
) -> Daemon:
    """slurmd of ``node``; ``command`` is the root's loader form for a newer release,
    whose process is then known by the loader's name and the rest of ``command``."""
    return Daemon(
        name=f"slurmd-{node.name}",
        argv=(*command, "-N", node.name, *extra_args),
        pid_file=layout.slurmd_pid(node.name),
        program=os.path.basename(command[0]),
        log_files=(layout.slurmd_log(node.name),),
        output_file=layout.daemon_output(f"slurmd-{node.name}"),
        match_args=(*command[1:], "-N", node.name),
        env=env,
        ports=(node.port,),
    )


def mariadb(layout: Layout) -> Daemon:
    """MariaDB as started by us; only used when no server was reachable before ``up``."""
    return Daemon(
        name="mariadb",
        argv=(
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--make-pidfile",
            "--pidfile",
            str(layout.mariadb_pid),
            "--output",
            str(layout.mariadb_log),
            "--exec",
            MARIADB_BINARY,
            "--",
            "--user=mysql",
        ),
        pid_file=layout.mariadb_pid,
        program="mariadbd",
        log_files=(layout.mariadb_log,),
        output_file=layout.daemon_output("mariadb"),
    )


def slurmdbd_answers(env: Mapping[str, str]) -> bool:
    """True once slurmdbd serves sacctmgr (through our munge socket)."""
    return succeeds(["sacctmgr", "-n", "-P", "show", "cluster"], env=env)


def backup_slurmctld_answers(env: Mapping[str, str]) -> bool:
    """True once ``scontrol ping`` reports the backup controller UP too."""
    result = try_run(["scontrol", "ping"], env=env)
    return result is not None and f"(backup) at {BACKUP_HOST} is UP" in result.stdout


def slurmctld_answers(env: Mapping[str, str]) -> bool:
    """True once ``scontrol ping`` reports the controller UP."""
    result = try_run(["scontrol", "ping"], env=env)
    return result is not None and result.returncode == 0 and " is UP" in result.stdout
