"""The dev cluster's monitoring: a real Prometheus, node exporters, a GPU exporter stand-in.

Everything runs on this host, on loopback, on ports of the cluster's slot
(``templates.Slot``), with its config, data, logs and pid files under the cluster's
directory, so the 22.05, 24.11 and 26.05 clusters each have their own:

- one Debian ``prometheus`` (``monitoring/prometheus.yml``, ``monitoring/data``);
- one ``prometheus-node-exporter`` per Slurm node name: all report this same host,
  each scraped as its node (``node="node001"``, ``instance="node001"``);
- for the GPU node, ``dcgm_standin.py``: the one stand-in, for NVIDIA's DCGM exporter,
  because no GPU exists here. Its ``hpc_job`` labels come from the job mapping
  directory that the cluster's ``PrologSlurmctld`` writes and ``EpilogSlurmctld``
  clears (the scripts below). slurmctld's prolog, not slurmd's: every node runs on
  this host, and a newer release's slurmd, started through its root's loader, cannot
  start scripts (26.05 runs them through ``slurm_script_launcher``, which it finds as
  its own executable: the loader). slurmctld gives them ``SLURM_JOB_GPUS`` (the GPU
  indices Slurm allocated, also for the fake GPUs, which slurmd's environment lacks);
- on a release whose Slurm has the OpenMetrics plugin (25.11 and later: our 26.05),
  a scrape of slurmctld's own ``/metrics/...`` paths on its port (job ``slurmctld``);
- a scrape of the portal's own ``/metrics`` at ``portal_target`` (a portal that is not
  running there is a target that is down, nothing more).

The daemons do not fork on their own: ``start-stop-daemon --background`` starts them
and writes their pid files, so ``processes.Daemon`` knows them as it knows slurmd.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from hpcportal.devcluster.alerting import (
    alert_rules_file,
    alertmanager_data,
    alertmanager_pid,
    alertmanager_yml,
    write_alerting_config,
)
from hpcportal.devcluster.files import ensure_dir, write_if_changed
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.processes import Daemon
from hpcportal.devcluster.templates import HEADER, NodeSpec, Slot

PROMETHEUS_BINARY = "/usr/bin/prometheus"
NODE_EXPORTER_BINARY = "/usr/bin/prometheus-node-exporter"
ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
DEFAULT_SCRAPE_SECONDS = 5
#: Enough history for a day of tests and a demo; the cluster's disk is not a site's.
RETENTION = "7d"


def read_scrape_interval(layout: Layout) -> int:
    """The recorded scrape interval in seconds (``up --scrape-interval``), else 5."""
    try:
        value = int(layout.scrape_interval_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return DEFAULT_SCRAPE_SECONDS
    return value if 1 <= value <= 3600 else DEFAULT_SCRAPE_SECONDS


def read_portal_target(layout: Layout, slot: Slot) -> str:
    """The recorded portal ``host:port`` (``up --portal-target``), else the slot's usual one."""
    try:
        value = layout.portal_target_file.read_text().strip()
    except FileNotFoundError:
        value = ""
    return value or f"127.0.0.1:{slot.portal_port}"


def check_target(value: str) -> str:
    """``host:port`` with a port number and nothing YAML could misread; else ValueError."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--portal-target must be host:port, not {value!r}")
    if any(c in host for c in " \"'#{}[],&*!|>%@`"):
        raise ValueError(f"--portal-target has an unexpected character: {value!r}")
    return f"{host}:{int(port)}"


def prometheus_url(slot: Slot) -> str:
    return f"http://127.0.0.1:{slot.prometheus_port}"


def node_index(node: NodeSpec, slot: Slot) -> int:
    """The node's place in the layout (its exporter's port follows it, like slurmd's)."""
    return node.port - slot.first_node_port


#: slurmctld's OpenMetrics paths (Slurm 25.11 ``metrics/openmetrics``), one scrape job each.
SLURMCTLD_METRICS_PATHS = (
    "/metrics/nodes",
    "/metrics/partitions",
    "/metrics/jobs",
    "/metrics/scheduler",
)


def has_openmetrics(plugin_dir: Path | None) -> bool:
    """True when the release's Slurm ships ``metrics/openmetrics`` (Slurm 25.11+).

    Only a release from a Debian root has a plugin directory we can look in; the host's
    22.05 and trixie's 24.11 predate the plugin."""
    return plugin_dir is not None and (plugin_dir / "metrics_openmetrics.so").is_file()


def gpu_nodes(nodes: Sequence[NodeSpec]) -> list[NodeSpec]:
    return [n for n in nodes if n.gpus]


def render_prometheus_yml(
    nodes: Sequence[NodeSpec],
    slot: Slot,
    scrape_seconds: int,
    portal_target: str,
    rules_file: Path | None = None,
    slurmctld_metrics: bool = False,
) -> str:
    """prometheus.yml: the node exporters as their nodes, the GPU stand-in, the portal;
    with ``rules_file``, the portal's alert rules and this cluster's Alertmanager
    (``alerting.py``); with ``slurmctld_metrics``, slurmctld's own OpenMetrics paths
    (``SLURMCTLD_METRICS_PATHS``), one job each since a job has one ``metrics_path``."""

    def target(address: str, node: str) -> list[str]:
        return [
            f"      - targets: ['{address}']",
            "        labels:",
            f"          node: '{node}'",
            f"          instance: '{node}'",
        ]

    lines = [
        HEADER,
        "global:",
        f"  scrape_interval: {scrape_seconds}s",
        f"  scrape_timeout: {max(1, min(scrape_seconds, 10) - 1)}s",
        f"  evaluation_interval: {scrape_seconds}s",
        "  external_labels:",
        f"    devcluster_slot: '{slot.index}'",
    ]
    if rules_file is not None:
        lines += [
            "rule_files:",
            f"  - '{rules_file}'",
            "alerting:",
            "  alertmanagers:",
            "    - static_configs:",
            f"        - targets: ['127.0.0.1:{slot.alertmanager_port}']",
        ]
    lines += [
        "scrape_configs:",
        "  - job_name: prometheus",
        "    static_configs:",
        f"      - targets: ['127.0.0.1:{slot.prometheus_port}']",
        "  - job_name: node",
        "    static_configs:",
    ]
    for node in nodes:
        address = f"127.0.0.1:{slot.node_exporter_port(node_index(node, slot))}"
        lines += target(address, node.name)
    gpus = gpu_nodes(nodes)
    if gpus:
        lines += ["  - job_name: dcgm", "    static_configs:"]
        for node in gpus:
            lines += target(f"127.0.0.1:{slot.dcgm_port}", node.name)
    if slurmctld_metrics:
        for path in SLURMCTLD_METRICS_PATHS:
            lines += [
                f"  - job_name: 'slurmctld_{path.rsplit('/', 1)[-1]}'",
                f"    metrics_path: '{path}'",
                "    static_configs:",
                f"      - targets: ['127.0.0.1:{slot.slurmctld_port}']",
                "        labels:",
                "          source: 'slurmctld'",
                # Per-node series name their node in ``node``; as ``instance`` they
                # line up with the node exporters' (the catalog's node matcher).
                "    metric_relabel_configs:",
                "      - source_labels: [node]",
                "        regex: '(.+)'",
                "        target_label: instance",
            ]
    lines += [
        "  - job_name: hpcportal",
        "    metrics_path: /metrics",
        "    static_configs:",
        f"      - targets: ['{portal_target}']",
    ]
    return "\n".join(lines) + "\n"


def render_prolog(layout: Layout, gpu_node_names: Sequence[str]) -> str:
    """The PrologSlurmctld: for a job on one GPU node, write its id into the mapping file
    of each GPU index it holds there. The indices are ``SLURM_JOB_GPUS`` where Slurm
    sets it, else what ``scontrol show job -d`` says (``GRES=gpu:1(IDX:0-1)``): 22.05
    to 26.05 give a PrologSlurmctld no ``SLURM_JOB_GPUS``, and slurmd's prolog gets
    none for GPUs that are plain files. It always exits 0: a failed PrologSlurmctld
    would requeue and hold the job."""
    names = " ".join(shlex.quote(n) for n in gpu_node_names)
    job_dir = shlex.quote(str(layout.gpu_job_dir))
    conf = shlex.quote(str(layout.slurm_conf))
    return f"""#!/bin/sh
{HEADER}
# DCGM exporter's HPC job mapping: one file per GPU index holding the job id.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
case " {names} " in *" ${{SLURM_JOB_NODELIST:-}} "*) ;; *) exit 0 ;; esac
case "${{SLURM_JOB_ID:-}}" in ''|*[!0-9]*) exit 0 ;; esac
gpus="${{SLURM_JOB_GPUS:-}}"
if [ -z "$gpus" ]; then
  gpus="$(SLURM_CONF={conf} scontrol show job -d "$SLURM_JOB_ID" 2>/dev/null |
    sed -n 's/.* Nodes=[^ ]* .*GRES=[^ ]*gpu[^ ]*(IDX:\\([-0-9,]*\\)).*/\\1/p' | head -n 1)"
fi
dir={job_dir}
for part in $(printf '%s' "$gpus" | tr ',' ' '); do
  case "$part" in
    *[!0-9-]*|''|-*|*-) continue ;;
    *-*) gpu=${{part%-*}}; last=${{part#*-}} ;;
    *) gpu=$part; last=$part ;;
  esac
  while [ "$gpu" -le "$last" ]; do
    printf '%s\\n' "$SLURM_JOB_ID" > "$dir/.$gpu.$$" && mv -f "$dir/.$gpu.$$" "$dir/$gpu"
    gpu=$((gpu + 1))
  done
done
exit 0
"""


def render_epilog(layout: Layout, gpu_node_names: Sequence[str]) -> str:
    """The EpilogSlurmctld: remove the mapping files that name this job, and its load file."""
    job_dir = shlex.quote(str(layout.gpu_job_dir))
    load_dir = shlex.quote(str(layout.gpu_load_dir))
    return f"""#!/bin/sh
{HEADER}
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
case "${{SLURM_JOB_ID:-}}" in ''|*[!0-9]*) exit 0 ;; esac
for file in {job_dir}/*; do
  [ -f "$file" ] || continue
  [ "$(cat "$file" 2>/dev/null)" = "$SLURM_JOB_ID" ] && rm -f "$file"
done
rm -f {load_dir}/"$SLURM_JOB_ID"
exit 0
"""


def write_prolog_scripts(layout: Layout, nodes: Sequence[NodeSpec]) -> tuple[Path, Path]:
    """The PrologSlurmctld and EpilogSlurmctld (0755, root's), and the directories they use."""
    names = [n.name for n in gpu_nodes(nodes)]
    ensure_dir(layout.libexec)
    write_if_changed(layout.prolog, render_prolog(layout, names), mode=0o755)
    write_if_changed(layout.epilog, render_epilog(layout, names), mode=0o755)
    ensure_dir(layout.gpu_job_dir)
    ensure_dir(layout.gpu_load_dir, 0o1777)  # like /tmp: each job writes and owns its own
    return layout.prolog, layout.epilog


def _background(pid_file: Path, output: Path, program: str, args: Sequence[str]) -> tuple[str, ...]:
    return (
        "start-stop-daemon",
        "--start",
        "--background",
        "--make-pidfile",
        "--pidfile",
        str(pid_file),
        "--output",
        str(output),
        "--exec",
        program,
        "--",
        *args,
    )


def prometheus(layout: Layout, slot: Slot) -> Daemon:
    config = f"--config.file={layout.prometheus_yml}"
    output = layout.daemon_output("prometheus")
    args = (
        config,
        f"--storage.tsdb.path={layout.prometheus_data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{slot.prometheus_port}",
    )
    return Daemon(
        name="prometheus",
        argv=_background(layout.prometheus_pid, output, PROMETHEUS_BINARY, args),
        pid_file=layout.prometheus_pid,
        program=os.path.basename(PROMETHEUS_BINARY),
        log_files=(output,),
        output_file=output,
        match_args=(config,),
        ports=(slot.prometheus_port,),
    )


def alertmanager(layout: Layout, slot: Slot) -> Daemon:
    """Debian's Alertmanager on the slot's port, its own clustering off."""
    config = f"--config.file={alertmanager_yml(layout)}"
    output = layout.daemon_output("alertmanager")
    args = (
        config,
        f"--storage.path={alertmanager_data(layout)}",
        f"--web.listen-address=127.0.0.1:{slot.alertmanager_port}",
        "--cluster.listen-address=",
    )
    return Daemon(
        name="alertmanager",
        argv=_background(alertmanager_pid(layout), output, ALERTMANAGER_BINARY, args),
        pid_file=alertmanager_pid(layout),
        program=os.path.basename(ALERTMANAGER_BINARY),
        log_files=(output,),
        output_file=output,
        match_args=(config,),
        ports=(slot.alertmanager_port,),
    )


def node_exporter(layout: Layout, slot: Slot, node: NodeSpec) -> Daemon:
    port = slot.node_exporter_port(node_index(node, slot))
    listen = f"--web.listen-address=127.0.0.1:{port}"
    name = f"node-exporter-{node.name}"
    output = layout.daemon_output(name)
    args = (listen, f"--collector.textfile.directory={layout.monitoring / 'textfile'}")
    return Daemon(
        name=name,
        argv=_background(layout.node_exporter_pid(node.name), output, NODE_EXPORTER_BINARY, args),
        pid_file=layout.node_exporter_pid(node.name),
        program=os.path.basename(NODE_EXPORTER_BINARY),
        log_files=(output,),
        output_file=output,
        match_args=(listen,),
        ports=(port,),
    )


def standin_python() -> str:
    """The interpreter that runs this code (the portal's venv), which has prometheus_client."""
    return sys.executable


def dcgm_standin(layout: Layout, slot: Slot, node: NodeSpec) -> Daemon:
    name = f"dcgm-standin-{node.name}"
    output = layout.daemon_output(name)
    port = f"--port={slot.dcgm_port}"
    args = (
        "-m",
        "hpcportal.devcluster.dcgm_standin",
        port,
        f"--hostname={node.name}",
        f"--gpus={node.gpus}",
        f"--job-dir={layout.gpu_job_dir}",
        f"--load-dir={layout.gpu_load_dir}",
    )
    python = standin_python()
    return Daemon(
        name=name,
        argv=_background(layout.dcgm_pid(node.name), output, python, args),
        pid_file=layout.dcgm_pid(node.name),
        program=os.path.basename(python),
        log_files=(output,),
        output_file=output,
        match_args=("hpcportal.devcluster.dcgm_standin", port),
        ports=(slot.dcgm_port,),
    )


def monitoring_daemons(layout: Layout, slot: Slot, nodes: Sequence[NodeSpec]) -> list[Daemon]:
    """A node exporter per node, the stand-in per GPU node, Alertmanager, then
    Prometheus (last), in start order."""
    return [
        *(node_exporter(layout, slot, n) for n in nodes),
        *(dcgm_standin(layout, slot, n) for n in gpu_nodes(nodes)),
        alertmanager(layout, slot),
        prometheus(layout, slot),
    ]


def write_prometheus_config(
    layout: Layout,
    slot: Slot,
    nodes: Sequence[NodeSpec],
    scrape_seconds: int,
    portal_target: str,
    slurmctld_metrics: bool = False,
) -> bool:
    """Directories, the alert rules and alertmanager.yml, and prometheus.yml; True if
    what Prometheus reads changed (Alertmanager re-reads its own on ``reload``)."""
    for directory in (layout.monitoring, layout.prometheus_data, layout.monitoring / "textfile"):
        ensure_dir(directory)
    rules_changed = write_alerting_config(layout, portal_target)
    text = render_prometheus_yml(
        nodes, slot, scrape_seconds, portal_target, alert_rules_file(layout), slurmctld_metrics
    )
    return write_if_changed(layout.prometheus_yml, text) or rules_changed


def reload_prometheus(daemon: Daemon) -> bool:
    """SIGHUP a running Prometheus so it re-reads its config; False if none runs."""
    pid = daemon.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True
