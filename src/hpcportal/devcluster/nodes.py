"""Node states from sinfo, and waiting until every node can take jobs.

Freshly started slurmds may register as ``down`` or ``inval`` (for instance after a
config change); ``up`` resumes those and waits for ``idle`` (or busy) nodes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpcportal.devcluster.commands import try_run

log = logging.getLogger(__name__)

# A node in one of these states accepts jobs (busy nodes count: jobs may be running).
READY_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
# A responding node in one of these states is resumed by ``up``.
RESUMABLE_STATES = frozenset({"down", "drained", "draining", "drain", "inval", "fail"})
SINFO_FORMAT = "%N|%T|%P|%E"
_STATE_RE = re.compile(r"^([a-z]+)(.*)$")


@dataclass
class NodeState:
    """One node as sinfo sees it: base state, flag suffixes (``*`` = not responding)."""

    name: str
    state: str
    flags: str = ""
    partitions: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def responding(self) -> bool:
        return "*" not in self.flags

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES and self.responding

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state + self.flags,
            "partitions": list(self.partitions),
            "reason": self.reason,
        }


def parse_sinfo(text: str) -> list[NodeState]:
    """Parse ``sinfo -h -N -o '%N|%T|%P|%E'``; a node in several partitions appears once."""
    nodes: dict[str, NodeState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 3:
            continue
        name, raw_state, partition = parts[0], parts[1].lower(), parts[2].rstrip("*")
        reason = parts[3] if len(parts) > 3 and parts[3] != "none" else ""
        match = _STATE_RE.match(raw_state)
        state, flags = (match.group(1), match.group(2)) if match else (raw_state, "")
        node = nodes.setdefault(name, NodeState(name, state, flags, [], reason))
        if partition and partition not in node.partitions:
            node.partitions.append(partition)
    return list(nodes.values())


def query_nodes(env: Mapping[str, str]) -> list[NodeState] | None:
    """The nodes slurmctld knows, or None if it does not answer."""
    result = try_run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT], env=env, timeout=15)
    if result is None or result.returncode != 0:
        return None
    return parse_sinfo(result.stdout)


def resume(env: Mapping[str, str], name: str) -> None:
    """Ask slurmctld to return a node to service; failure is fine, we keep polling."""
    log.info("resuming node %s", name)
    try_run(["scontrol", "update", f"nodename={name}", "state=resume"], env=env)


def wait_for_ready_nodes(
    env: Mapping[str, str], expected: Sequence[str], timeout: float
) -> tuple[bool, list[NodeState]]:
    """Poll sinfo, resuming stuck nodes, until every ``expected`` node is ready.

    Returns whether that happened within ``timeout`` and the last states seen.
    """
    deadline = time.monotonic() + timeout
    last_resume: dict[str, float] = {}
    states: list[NodeState] = []
    while True:
        states = query_nodes(env) or []
        by_name = {n.name: n for n in states}
        pending = [name for name in expected if not (name in by_name and by_name[name].ready)]
        if not pending:
            return True, states
        now = time.monotonic()
        if now >= deadline:
            return False, states
        for name in pending:
            node = by_name.get(name)
            stuck = node is not None and node.responding and node.state in RESUMABLE_STATES
            if stuck and now - last_resume.get(name, -1e9) >= 5:
                resume(env, name)
                last_resume[name] = now
        time.sleep(1)
