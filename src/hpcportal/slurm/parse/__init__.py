"""Slurm output -> typed models. The only code that knows Slurm's field names.

JSON output arrives through the strict msgspec structs of its format family
(:mod:`~hpcportal.slurm.wire` for 22.05, ``wire_v0039`` for 23.02, ``wire_v0040``
from 23.11; :mod:`~hpcportal.slurm.formats` picks one), and every family becomes
the same models here. A document that does not fit its format's structs raises
``msgspec.ValidationError`` naming the format and the field. ``scontrol -o`` lines
and ``sacctmgr``/``sshare`` ``--parsable2`` tables are read by header, so a column
added by a newer Slurm does not shift the others.

One module per concern: ``values`` (NoVal numbers, times, TRES, gres, durations),
``decoding`` (format families and ``meta``), ``jobs`` (``squeue``, ``JobParser``),
``nodes``, ``partitions`` (``scontrol -o``), ``tables`` (``--parsable2``: QoS,
associations, fairshare), ``accounting`` (``sacct``) and ``privacy`` (``PrivateData``,
roles). This package re-exports their public names, so callers say ``parse.X``.
"""

from hpcportal.slurm.parse.accounting import parse_sacct, record_from_wire
from hpcportal.slurm.parse.decoding import WireAcctJob, WireJob, WireNode, decode
from hpcportal.slurm.parse.events import EVENT_FIELDS, parse_node_events
from hpcportal.slurm.parse.jobs import JobParser, job_from_wire, parse_squeue
from hpcportal.slurm.parse.nodes import node_from_wire, parse_nodes, parse_sinfo
from hpcportal.slurm.parse.partitions import (
    parse_oneliner,
    parse_partitions,
    partition_from_fields,
)
from hpcportal.slurm.parse.privacy import (
    parse_config,
    parse_controller_private_data,
    parse_database_private_data,
    parse_roles,
    private_data_flags,
)
from hpcportal.slurm.parse.tables import parse_associations, parse_qos, parse_sshare, parse_table
from hpcportal.slurm.parse.values import (
    Number,
    bitmap_to_ranges,
    compress_ranges,
    first_state,
    gpus_in_gres,
    gpus_in_tres,
    memory_mb,
    num,
    parse_tres,
    split_list,
    text,
    time_minutes,
    timestamp,
    to_float,
    to_int,
)

__all__ = [
    "EVENT_FIELDS",
    "JobParser",
    "Number",
    "WireAcctJob",
    "WireJob",
    "WireNode",
    "bitmap_to_ranges",
    "compress_ranges",
    "decode",
    "first_state",
    "gpus_in_gres",
    "gpus_in_tres",
    "job_from_wire",
    "memory_mb",
    "node_from_wire",
    "num",
    "parse_associations",
    "parse_config",
    "parse_controller_private_data",
    "parse_database_private_data",
    "parse_node_events",
    "parse_nodes",
    "parse_oneliner",
    "parse_partitions",
    "parse_qos",
    "parse_roles",
    "parse_sacct",
    "parse_sinfo",
    "parse_squeue",
    "parse_sshare",
    "parse_table",
    "parse_tres",
    "partition_from_fields",
    "private_data_flags",
    "record_from_wire",
    "split_list",
    "text",
    "time_minutes",
    "timestamp",
    "to_float",
    "to_int",
]
