"""``scontrol -o show partition`` text -> partitions. 22.05's scontrol has no JSON, so
each line is read as ``Key=value`` pairs by name, never by position."""

from __future__ import annotations

from hpcportal.slurm import hostlist
from hpcportal.slurm.models import Partition
from hpcportal.slurm.parse.values import parse_tres, split_list, text, time_minutes, to_int


def parse_oneliner(line: str) -> dict[str, str]:
    """One ``scontrol -o show ...`` record -> ``{Key: value}``."""
    out: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
        elif out:
            # A value with a space in it continues the previous key.
            last = next(reversed(out))
            out[last] = f"{out[last]} {token}"
    return out


def parse_partitions(raw: bytes) -> list[Partition]:
    """``scontrol -o show partition`` -> partitions, in Slurm's order."""
    lines = raw.decode("utf-8", "replace").splitlines()
    return [partition_from_fields(parse_oneliner(ln)) for ln in lines if ln.strip()]


def partition_from_fields(f: dict[str, str]) -> Partition:
    def allow(key: str) -> list[str] | None:
        value = f.get(key)
        return None if value is None or value.upper() == "ALL" else split_list(value)

    return Partition(
        name=f.get("PartitionName", ""),
        state=f.get("State", "UNKNOWN"),
        is_default=f.get("Default") == "YES",
        nodes=text(f.get("Nodes")),
        node_names=hostlist.expand(text(f.get("Nodes"))),
        total_nodes=to_int(f.get("TotalNodes")) or 0,
        total_cpus=to_int(f.get("TotalCPUs")) or 0,
        max_time_minutes=time_minutes(f.get("MaxTime")),
        default_time_minutes=time_minutes(f.get("DefaultTime")),
        max_nodes=to_int(f.get("MaxNodes")),
        max_mem_per_node_mb=to_int(f.get("MaxMemPerNode")),
        default_mem_per_cpu_mb=to_int(f.get("DefMemPerCPU")),
        allow_accounts=allow("AllowAccounts"),
        allow_groups=allow("AllowGroups"),
        allow_qos=allow("AllowQos"),
        qos=text(f.get("QoS")),
        tres=parse_tres(f.get("TRES")),
        hidden=f.get("Hidden") == "YES",
    )
