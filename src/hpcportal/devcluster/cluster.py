"""``DevCluster``: bring a real Slurm cluster up on this host, report on it, take it down.

Each step checks before it acts (pid files, config text, sacctmgr state, user
database), so ``up`` on a running cluster only reads, and ``down`` only stops daemons
whose pid files under our directory point at live processes of the expected program.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from hpcportal.devcluster import daemons
from hpcportal.devcluster.accounts import ensure_accounting
from hpcportal.devcluster.alerting import alertmanager_token, alertmanager_url
from hpcportal.devcluster.commands import run, tails, try_run, wait_until
from hpcportal.devcluster.database import (
    db_password,
    drop_database,
    ensure_database,
    ensure_mariadb,
)
from hpcportal.devcluster.errors import DaemonStartError, DevClusterError
from hpcportal.devcluster.files import ensure_dir, touch, write_if_changed
from hpcportal.devcluster.mail import mail_config, mail_secret, write_mailprog
from hpcportal.devcluster.monitoring import (
    check_target,
    has_openmetrics,
    monitoring_daemons,
    prometheus_url,
    read_portal_target,
    read_scrape_interval,
    reload_prometheus,
    write_prolog_scripts,
    write_prometheus_config,
)
from hpcportal.devcluster.munge import munge_works, prepare_munge
from hpcportal.devcluster.nodes import NodeState, query_nodes, wait_for_ready_nodes
from hpcportal.devcluster.packages import MONITORING_BINARIES, ensure_packages
from hpcportal.devcluster.paths import Layout, default_dir, materialize_root, resolve_root
from hpcportal.devcluster.processes import (
    Daemon,
    check_ports_free,
    port_in_use,
    start_all,
    stop_all,
)
from hpcportal.devcluster.releases import (
    HOST_RELEASE,
    Release,
    parse_release,
    release_of_version,
)
from hpcportal.devcluster.roots import SlurmRoot, ensure_root, ensure_self_link, root_for
from hpcportal.devcluster.status import build_status, daemon_component, mariadb_component
from hpcportal.devcluster.templates import (
    BACKUP_HOST,
    GPU_NODE,
    MAX_SLOTS,
    SLOT_STRIDE,
    NodeSpec,
    Slot,
    all_nodes,
    cluster_nodes,
    gpu_device_count,
    normalize_private_data,
    render_backup_hosts,
    render_cgroup_conf,
    render_gres_conf,
    render_slurm_conf,
    render_slurmdbd_conf,
)
from hpcportal.devcluster.users import ensure_demo_users
from hpcportal.devcluster.wrappers import loader_command, root_program, write_scripts

log = logging.getLogger(__name__)

SERVICE_TIMEOUT = 60.0
NODE_TIMEOUT = 120.0


def short_hostname() -> str:
    """``hostname -s``: the name slurmctld and every slurmd of this host use."""
    return socket.gethostname().split(".")[0]


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise DevClusterError(
            f"dev-cluster {action} must run as root: it manages users and system daemons"
        )


def read_slot(layout: Layout) -> Slot:
    """The slot recorded by an earlier ``up``; slot 0 for a directory without one."""
    try:
        return Slot(int(layout.slot_file.read_text().strip()))
    except (FileNotFoundError, ValueError):
        return Slot(0)


def configured_slot(layout: Layout) -> Slot | None:
    """The slot an existing slurm.conf was rendered for, from its SlurmctldPort."""
    try:
        text = layout.slurm_conf.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("SlurmctldPort="):
            return Slot((int(line.split("=", 1)[1]) - Slot(0).slurmctld_port) // SLOT_STRIDE)
    return None


def read_release(layout: Layout) -> Release:
    """The release recorded by an earlier ``up``; the host's for a directory without one."""
    try:
        return parse_release(layout.release_file.read_text())
    except FileNotFoundError:
        return parse_release(HOST_RELEASE)


def read_private_data(layout: Layout) -> str:
    """The ``PrivateData`` flags recorded by an earlier ``up``; none for a directory without."""
    try:
        return normalize_private_data(layout.private_data_file.read_text())
    except (FileNotFoundError, ValueError):
        return ""


#: slurm.conf keys whose change ``scontrol reconfigure`` applies without a restart.
RECONFIGURABLE_KEYS = frozenset(
    {"Prolog", "Epilog", "PrologSlurmctld", "EpilogSlurmctld", "MailProg"}
)


def only_reconfigurable_changes(before: str, after: str) -> bool:
    """True if the two slurm.conf texts differ only in ``RECONFIGURABLE_KEYS`` lines."""

    def rest(text: str) -> list[str]:
        return [
            line for line in text.splitlines() if line.split("=", 1)[0] not in RECONFIGURABLE_KEYS
        ]

    return rest(before) == rest(after)


def describe(name: str, states: dict[str, NodeState]) -> str:
    """``node=state (reason)`` for error messages."""
    node = states.get(name)
    if node is None:
        return f"{name}=unknown to slurmctld"
    reason = f" ({node.reason})" if node.reason else ""
    return f"{name}={node.state}{node.flags}{reason}"


class DevCluster:
    """One dev cluster, identified by its directory (default ``./.devcluster``).

    ``release`` is the Slurm release to bring up (``up`` only); without it, the one this
    directory was brought up with, or the host's 22.05 for a new directory.
    ``private_data`` (``"jobs,usage"``; ``""`` for none) is written as ``PrivateData=``
    into slurm.conf and slurmdbd.conf; without it, the directory's recorded flags stay.
    ``backup_controller`` adds a backup slurmctld (``SlurmctldHost`` twice, one shared
    state directory; 22.05 only); without it, the directory's recorded choice stays.
    ``scrape_interval`` (seconds) and ``portal_target`` (``host:port`` of a portal's
    ``/metrics``) configure the cluster's Prometheus (``monitoring.py``); without them,
    the directory's recorded ones stay (5 s and the slot's usual portal port).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        release: str | None = None,
        private_data: str | None = None,
        backup_controller: bool | None = None,
        scrape_interval: int | None = None,
        portal_target: str | None = None,
    ) -> None:
        self.requested = Path(os.path.abspath(path)) if path is not None else default_dir()
        self.root = resolve_root(self.requested)
        self.layout = Layout(self.root)
        self.hostname = short_hostname()
        self.slot = read_slot(self.layout)
        self.recorded_release = read_release(self.layout)
        self.release = parse_release(release) if release else self.recorded_release
        try:
            self.private_data = (
                read_private_data(self.layout)
                if private_data is None
                else normalize_private_data(private_data)
            )
        except ValueError as exc:
            raise DevClusterError(str(exc)) from exc
        self.backup_controller = (
            self.layout.backup_controller_file.exists()
            if backup_controller is None
            else backup_controller
        )
        if scrape_interval is not None and not 1 <= scrape_interval <= 3600:
            raise DevClusterError("--scrape-interval must be 1 to 3600 seconds")
        self.scrape_interval = (
            read_scrape_interval(self.layout) if scrape_interval is None else scrape_interval
        )
        try:
            self.portal_target = (
                read_portal_target(self.layout, self.slot)
                if portal_target is None
                else check_target(portal_target)
            )
        except ValueError as exc:
            raise DevClusterError(str(exc)) from exc

    # ----------------------------------------------------------------- facts
    @property
    def slurm_conf(self) -> Path:
        """The real (symlink-free) slurm.conf path to put into ``SLURM_CONF``."""
        return self.layout.slurm_conf

    @property
    def slurm_root(self) -> SlurmRoot | None:
        """The Debian root whose Slurm this cluster runs; None for the host's 22.05."""
        return root_for(self.release) if self.release.from_root else None

    @property
    def bin_dir(self) -> Path | None:
        """Where this cluster's Slurm clients are (``slurm_bin_dir``); None means PATH."""
        return self.layout.bin if self.release.from_root else None

    @property
    def env(self) -> dict[str, str]:
        """The current environment plus ``SLURM_CONF`` (and the release's clients first on
        ``PATH``), for any Slurm command."""
        env = {**os.environ, "SLURM_CONF": str(self.slurm_conf)}
        if self.bin_dir is not None:
            env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "/usr/bin:/bin")])
        return env

    @property
    def _launcher(self) -> tuple[str, ...]:
        """How slurmctld and slurmdbd start: chrooted for a release from a root."""
        return (str(self.layout.in_root),) if self.release.from_root else ()

    @property
    def include_gpu(self) -> bool:
        """False once ``up`` found that the fake GPU node cannot register here."""
        return not self.layout.gpu_disabled_marker.exists()

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return cluster_nodes(self.include_gpu, self.slot)

    @property
    def all_nodes(self) -> tuple[NodeSpec, ...]:
        return all_nodes(self.slot)

    def _slurm_daemon_env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.slurm_conf)}

    def _slurmds(self, nodes: tuple[NodeSpec, ...]) -> list[Daemon]:
        env, root = self._slurm_daemon_env(), self.slurm_root
        if root is None:
            return [daemons.slurmd(self.layout, env, n) for n in nodes]
        command = loader_command(root, root_program(root, "slurmd"), "slurmd")
        stepd = ("-d", str(self.layout.slurmstepd_wrapper))
        return [daemons.slurmd(self.layout, env, n, command, stepd) for n in nodes]

    def _slurmctld(self) -> Daemon:
        return daemons.slurmctld(self.layout, self._slurm_daemon_env(), self.slot, self._launcher)

    def _slurmctld_backup(self) -> Daemon:
        return daemons.slurmctld_backup(self.layout, self._slurm_daemon_env())

    def _controllers(self) -> list[Daemon]:
        """slurmctld, and its backup when this cluster has one."""
        backup = [self._slurmctld_backup()] if self.backup_controller else []
        return [self._slurmctld(), *backup]

    def _slurmdbd(self) -> Daemon:
        return daemons.slurmdbd(self.layout, self._slurm_daemon_env(), self.slot, self._launcher)

    def _monitoring(self) -> list[Daemon]:
        """Prometheus and its exporters (``monitoring.py``), in start order."""
        return monitoring_daemons(self.layout, self.slot, self.nodes)

    def _daemons(self) -> list[Daemon]:
        """Ours, in start order."""
        return [
            daemons.munged(self.layout),
            self._slurmdbd(),
            *self._controllers(),
            *self._slurmds(self.nodes),
        ]

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Components, nodes, users and ``SLURM_CONF``; ``ok`` if all is up and idle."""
        components = [daemon_component(d) for d in self._daemons()]
        components.append(mariadb_component(daemons.mariadb(self.layout)))
        components += [daemon_component(d) for d in self._monitoring()]
        controller_up = any(c["name"] == "slurmctld" and c["running"] for c in components)
        nodes: list[NodeState] = (query_nodes(self.env) or []) if controller_up else []
        notes = []
        if not self.include_gpu:
            reason = self.layout.gpu_disabled_marker.read_text().strip()
            notes.append(f"{GPU_NODE} and the gpu partition are left out: {reason}")
        report = build_status(
            requested=self.requested,
            root=self.root,
            slurm_conf=self.slurm_conf,
            components=components,
            nodes=nodes,
            expected_nodes=[n.name for n in self.nodes],
            notes=notes,
        )
        report["release"] = self.release.name
        report["slurm_version"] = self.slurm_version()
        report["bin_dir"] = str(self.bin_dir) if self.bin_dir is not None else None
        report["private_data"] = self.private_data or "none"
        report["prometheus_url"] = prometheus_url(self.slot)
        report["monitoring"] = self._monitoring_report()
        return report

    def _monitoring_report(self) -> dict[str, Any]:
        """Where the monitoring parts listen and the files a test steers the GPUs with."""
        slot = self.slot
        return {
            "prometheus_url": prometheus_url(slot),
            "scrape_interval_seconds": self.scrape_interval,
            "portal_target": self.portal_target,
            "node_exporters": {
                n.name: f"127.0.0.1:{slot.node_exporter_port(n.port - slot.first_node_port)}"
                for n in self.nodes
            },
            "gpu_exporter": {n.name: f"127.0.0.1:{slot.dcgm_port}" for n in self.nodes if n.gpus},
            "gpu_job_dir": str(self.layout.gpu_job_dir),
            "gpu_load_dir": str(self.layout.gpu_load_dir),
            "alertmanager_url": alertmanager_url(slot),
            "alertmanager_token_file": str(alertmanager_token(self.layout)),
            "slurm_mail_config": str(mail_config(self.layout)),
            "slurm_mail_secret_file": str(mail_secret(self.layout)),
        }

    def slurm_version(self) -> str | None:
        """What ``scontrol version`` says (``slurm 24.11.5``); None if it cannot run."""
        result = try_run(["scontrol", "version"], env=self.env)
        if result is None or result.returncode != 0:
            return None
        return result.stdout.strip() or None

    def is_up(self) -> bool:
        return bool(self.status()["ok"])

    # -------------------------------------------------------------------- up
    def up(self) -> dict[str, Any]:
        """Install, configure and start whatever is missing; return the status when idle."""
        require_root("up")
        if self.release != self.recorded_release and self.layout.slurm_conf.exists():
            raise DevClusterError(
                f"{self.requested} holds a Slurm {self.recorded_release.name} cluster; "
                f"use another --dir for {self.release.name}, or `down --purge` this one first"
            )
        ensure_packages()
        ensure_packages(MONITORING_BINARIES)
        ensure_demo_users()
        materialize_root(self.requested, self.root)
        self._make_directories()
        self._prepare_release()
        self._claim_slot()
        write_if_changed(self.layout.private_data_file, f"{self.private_data}\n")
        write_if_changed(self.layout.scrape_interval_file, f"{self.scrape_interval}\n")
        write_if_changed(self.layout.portal_target_file, f"{self.portal_target}\n")
        self._record_backup_controller()
        check_ports_free([*self._daemons(), *self._monitoring()])
        self._start_munge()
        ensure_mariadb(self.layout)
        self._start_slurm()
        self._start_monitoring()
        return self.status()

    def _start_monitoring(self) -> None:
        """prometheus.yml, then the exporters and Prometheus; a running Prometheus whose
        config changed re-reads it (SIGHUP), keeping its data."""
        root = self.slurm_root
        changed = write_prometheus_config(
            self.layout,
            self.slot,
            self.nodes,
            self.scrape_interval,
            self.portal_target,
            slurmctld_metrics=has_openmetrics(root.plugin_dir if root is not None else None),
        )
        daemons_ = self._monitoring()
        prometheus, alertmanager = daemons_[-1], daemons_[-2]
        if changed and reload_prometheus(prometheus):
            log.info("prometheus re-reads %s", self.layout.prometheus_yml)
        if changed and reload_prometheus(alertmanager):  # the same SIGHUP
            log.info("alertmanager re-reads its configuration")
        start_all(daemons_)

    def _record_backup_controller(self) -> None:
        if not self.backup_controller:
            self.layout.backup_controller_file.unlink(missing_ok=True)
            return
        if self.release.from_root:
            raise DevClusterError("--backup-controller is supported on the host's Slurm 22.05 only")
        write_if_changed(self.layout.backup_controller_file, f"{BACKUP_HOST}\n")
        hosts = render_backup_hosts(Path("/etc/hosts").read_text())
        write_if_changed(self.layout.backup_hosts, hosts)

    def _prepare_release(self) -> None:
        """For a release from a Debian root: the root (made once per host), then this
        cluster's client wrappers and daemon launcher. Nothing for the host's 22.05."""
        if not self.release.from_root:
            return
        root = ensure_root(self.release)
        ensure_self_link(root)
        version = root.slurm_version() or "unknown"
        if release_of_version(version) != self.release.name:
            log.warning(
                "the Debian %s root holds Slurm %s, not %s; running it anyway",
                self.release.suite,
                version,
                self.release.name,
            )
        write_if_changed(self.layout.release_file, f"{self.release.name}\n")
        if write_scripts(self.layout, root, f"{self.release.name} ({version})"):
            # Daemons started through older scripts would keep them: restart them.
            stop_all([*self._slurmds(self.all_nodes), self._slurmctld(), self._slurmdbd()])

    def _claim_slot(self) -> None:
        """Keep this directory's slot; a new directory takes the first slot whose ports are free."""
        if self.layout.slot_file.exists():
            return
        configured = configured_slot(self.layout)
        if configured is not None:  # configured before slots were recorded: keep its ports
            self.slot = configured
            self.layout.slot_file.write_text(f"{configured.index}\n")
            return
        for index in range(MAX_SLOTS):
            if not any(port_in_use(port) for port in Slot(index).ports()):
                self.slot = Slot(index)
                self.layout.slot_file.write_text(f"{index}\n")
                log.info("using port slot %d (slurmctld port %d)", index, self.slot.slurmctld_port)
                return
        raise DevClusterError(f"no free port slot among {MAX_SLOTS}: stop another dev cluster")

    def _make_directories(self) -> None:
        """Every directory 0755 so jobs running as the demo users can read configs."""
        layout = self.layout
        for directory in (layout.etc, layout.run, layout.log, layout.state, layout.dev) + (
            (layout.backup_run, layout.backup_log) if self.backup_controller else ()
        ):
            ensure_dir(directory)
        for node in self.all_nodes:
            ensure_dir(layout.slurmd_spool(node.name))
        for index in range(gpu_device_count(self.all_nodes)):
            touch(layout.fake_gpu(index))

    def _start_munge(self) -> None:
        prepare_munge(self.layout)
        munged = daemons.munged(self.layout)
        munged.start()
        if not wait_until(lambda: munge_works(self.layout.munge_socket), SERVICE_TIMEOUT):
            raise DevClusterError("munged runs but does not answer", munged.log_tail())

    def _write_configs(self) -> tuple[bool, bool, bool]:
        """Render all configs; return (slurmdbd.conf changed, slurm.conf/gres.conf changed
        in a way only a restart applies, changed in lines ``scontrol reconfigure`` applies)."""
        layout, nodes = self.layout, self.nodes
        prolog = write_prolog_scripts(layout, nodes)
        mail_prog = write_mailprog(layout, self.portal_target, in_root=self.release.from_root)
        try:
            before = layout.slurm_conf.read_text()
        except FileNotFoundError:
            before = ""
        dbd_changed = write_if_changed(
            layout.slurmdbd_conf,
            render_slurmdbd_conf(layout, db_password(layout), self.slot, self.private_data),
            mode=0o600,
        )
        root = self.slurm_root
        plugin_dir = root.plugin_dir if root is not None else None
        slurm_changed = write_if_changed(
            layout.slurm_conf,
            render_slurm_conf(
                layout,
                self.hostname,
                nodes,
                self.slot,
                plugin_dir,
                self.private_data,
                self.backup_controller,
                prolog,
                mail_prog,
                has_openmetrics(plugin_dir),
            ),
        )
        gres_changed = write_if_changed(layout.gres_conf, render_gres_conf(layout, nodes))
        if root is not None:
            gres_changed |= write_if_changed(layout.cgroup_conf, render_cgroup_conf())
        reconfigurable = (
            slurm_changed
            and not gres_changed
            and bool(before)
            and only_reconfigurable_changes(before, layout.slurm_conf.read_text())
        )
        return dbd_changed, (slurm_changed or gres_changed) and not reconfigurable, reconfigurable

    def _start_slurm(self) -> None:
        """Configs, then slurmdbd, accounting, slurmctld and the slurmds, then idle nodes."""
        dbd_changed, slurm_changed, reconfigure = self._write_configs()
        if slurm_changed:
            # Nodes cannot be added or removed by reconfigure in 22.05; restart instead.
            stop_all([*self._slurmds(self.all_nodes), self._slurmctld_backup(), self._slurmctld()])
        if dbd_changed:
            stop_all([self._slurmdbd()])
        self._start_slurmdbd()
        accounting_changed = ensure_accounting(self.env)
        if reconfigure:
            # slurmctld reads PrologSlurmctld/EpilogSlurmctld only when it starts (its
            # prep plugin); its jobs and nodes survive the restart. A loader-started
            # slurmd cannot re-read its config: it restarts too (its jobs keep running
            # under their slurmstepd); the host's slurmds re-read it when told.
            stop_all([self._slurmctld_backup(), self._slurmctld()])
            if self.release.from_root:
                stop_all(self._slurmds(self.all_nodes))
        self._start_slurmctld(reconfigure=accounting_changed)
        if reconfigure and not self.release.from_root:
            run(["scontrol", "reconfigure"], env=self.env)
        if not self._start_slurmds() or not self._wait_for_nodes():
            # The GPU node was just left out: render without it and restart.
            self._start_slurm()

    def _start_slurmds(self) -> bool:
        """Start every node's slurmd; False if only the GPU node's failed (it is then dropped)."""
        try:
            start_all(self._slurmds(self.nodes))
        except DaemonStartError as error:
            if not self.include_gpu or error.names != [f"slurmd-{GPU_NODE}"]:
                raise
            last_log_line = (error.details.strip().splitlines() or [error.message])[-1]
            self._disable_gpu(f"its slurmd did not start: {last_log_line}")
            return False
        return True

    def _start_slurmdbd(self) -> None:
        slurmdbd = self._slurmdbd()
        if not slurmdbd.is_running():
            if not self.layout.job_state.exists():
                drop_database(self.layout.db_name)  # new job ids: no records from before
            ensure_database(db_password(self.layout), self.slot, self.layout.db_name)
            slurmdbd.start()
        if not wait_until(lambda: daemons.slurmdbd_answers(self.env), SERVICE_TIMEOUT):
            raise DevClusterError("slurmdbd does not answer sacctmgr", slurmdbd.log_tail())

    def _start_slurmctld(self, *, reconfigure: bool) -> None:
        """Start slurmctld; if it already ran, make it re-read the changed associations."""
        slurmctld = self._slurmctld()
        was_running = slurmctld.is_running()
        slurmctld.start()
        if not wait_until(lambda: daemons.slurmctld_answers(self.env), SERVICE_TIMEOUT):
            raise DevClusterError("slurmctld does not answer `scontrol ping`", slurmctld.log_tail())
        if self.backup_controller:
            backup = self._slurmctld_backup()
            backup.start()
            if not wait_until(lambda: daemons.backup_slurmctld_answers(self.env), SERVICE_TIMEOUT):
                raise DevClusterError("the backup slurmctld does not answer", backup.log_tail())
        if was_running and reconfigure:
            run(["scontrol", "reconfigure"], env=self.env)

    def _wait_for_nodes(self) -> bool:
        """Wait for idle nodes; False if only the GPU node did not register (it is dropped)."""
        expected = [n.name for n in self.nodes]
        ready, states = wait_for_ready_nodes(self.env, expected, NODE_TIMEOUT)
        if ready:
            return True
        by_name = {n.name: n for n in states}
        pending = [name for name in expected if name not in by_name or not by_name[name].ready]
        if self.include_gpu and pending == [GPU_NODE]:
            self._disable_gpu(f"it did not register ({describe(GPU_NODE, by_name)})")
            return False
        described = ", ".join(describe(name, by_name) for name in pending)
        logs = [self.layout.slurmctld_log, *(self.layout.slurmd_log(n) for n in pending)]
        raise DevClusterError(
            f"nodes not idle after {NODE_TIMEOUT:.0f} s: {described}", tails(logs, 15)
        )

    def _disable_gpu(self, reason: str) -> None:
        """Remember why the GPU node is left out; the next config render omits it."""
        log.warning("%s is left out with the gpu partition: %s", GPU_NODE, reason)
        self.layout.gpu_disabled_marker.write_text(reason + "\n")
        stop_all(self._slurmds(self.all_nodes))

    # ------------------------------------------------------------------ down
    def down(self, *, purge: bool = False) -> list[str]:
        """Stop what ``up`` started, newest first; with ``purge`` also forget all state.

        Returns the names of the daemons that were stopped.
        """
        require_root("down")
        stopped = stop_all(monitoring_daemons(self.layout, self.slot, self.all_nodes))
        stopped += stop_all(self._slurmds(self.all_nodes))
        stopped += stop_all([self._slurmctld_backup(), self._slurmctld()])
        stopped += stop_all([self._slurmdbd()])
        stopped += stop_all([daemons.munged(self.layout)])
        if purge:
            drop_database(self.layout.db_name)
        stopped += stop_all([daemons.mariadb(self.layout)])
        if purge:
            self._remove_directory()
        return stopped

    def _remove_directory(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        if self.requested.is_symlink():
            self.requested.unlink()
        log.info("removed %s", self.root)
