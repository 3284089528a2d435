"""``sinfo --json`` (22.05) and ``scontrol --json show nodes`` (23.02 on) -> nodes."""

from __future__ import annotations

from hpcportal.slurm import wire
from hpcportal.slurm.models import Node
from hpcportal.slurm.parse.decoding import WireNode, decode, pick_nodes
from hpcportal.slurm.parse.values import (
    first_state,
    gpus_in_gres,
    num,
    or_none,
    split_list,
    timestamp,
)
from hpcportal.slurm.states import node_status


def parse_nodes(raw: bytes, data_format: str | None = None) -> list[Node]:
    """``sinfo --json`` (22.05) or ``scontrol --json show nodes`` (23.02 on) -> nodes,
    sorted by name."""
    records: list[WireNode] = decode(raw, data_format, pick_nodes).nodes
    return sorted((node_from_wire(n) for n in records), key=lambda n: n.name)


#: The name of the 22.05 read, kept for callers and tests that use it.
parse_sinfo = parse_nodes


def node_from_wire(n: WireNode) -> Node:
    if isinstance(n, wire.WireNode):  # 22.05: one state word plus flags, sinfo's names
        state, flags = n.state, list(n.state_flags)
        idle, free, version = num(n.idle_cpus) or 0, num(n.free_memory), n.slurmd_version
        features = split_list(n.features)
    else:  # 23.02 on: a list of flags, scontrol's names
        state, flags = first_state(n.state), list(n.state[1:])
        idle, free, version = n.alloc_idle_cpus, num(n.free_mem), n.version
        features = list(n.features)
    load = num(n.cpu_load)
    return Node(
        name=n.name,
        hostname=or_none(n.hostname),
        address=or_none(n.address),
        state=state.lower(),
        flags=flags,
        status=node_status(state, flags),
        partitions=list(n.partitions or ()),
        cpus_total=num(n.cpus) or 0,
        cpus_allocated=num(n.alloc_cpus) or 0,
        cpus_idle=idle,
        cpu_load=load / 100 if load is not None else None,
        memory_total_mb=num(n.real_memory) or 0,
        memory_allocated_mb=num(n.alloc_memory) or 0,
        memory_free_mb=free,
        gpus_total=gpus_in_gres(n.gres),
        gpus_allocated=gpus_in_gres(n.gres_used),
        gres=or_none(n.gres),
        gres_used=or_none(n.gres_used),
        features=features,
        reason=or_none(n.reason),
        reason_set_by=n.reason_set_by_user or None,
        reason_time=timestamp(n.reason_changed_at),
        boot_time=timestamp(n.boot_time),
        last_busy=timestamp(n.last_busy),
        slurmd_version=or_none(version),
        architecture=or_none(n.architecture),
        operating_system=or_none(n.operating_system),
    )
