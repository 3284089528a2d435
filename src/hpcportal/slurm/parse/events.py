"""Node events from slurmdbd: ``sacctmgr --parsable2 show event`` -> ``NodeEvent``.

The table is read by header like the other ``--parsable2`` tables, with one
difference: ``Reason`` is asked for last and keeps every ``|`` a person typed into
it (``scontrol update ... Reason="fan | noisy"``), since ``--parsable2`` does not
escape it. Times are in the portal's ``TZ=UTC`` (the executor's environment);
``Unknown`` as the end means the node still is in that state.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hpcportal.slurm.models import NodeEvent
from hpcportal.slurm.parse.values import text

#: The columns asked for, in this order (``Reason`` last, see above).
EVENT_FIELDS = "nodename,timestart,timeend,state,user,reason"
_USER = re.compile(r"^(?P<name>[^()]+)\(\d+\)$")


def _time(value: str) -> datetime | None:
    value = value.strip()
    if not value or value in ("Unknown", "None"):
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _user(value: str) -> str | None:
    """``carol(1004)`` -> ``carol``; empty -> None (slurmctld set the state)."""
    value = value.strip()
    found = _USER.match(value)
    return found.group("name") if found else text(value)


def parse_node_events(raw: bytes) -> list[NodeEvent]:
    """Rows of ``sacctmgr --parsable2 show event event=node format=EVENT_FIELDS``,
    oldest first. A row without a node name or start (a cluster event) is skipped."""
    lines = [ln for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("|")]
    if header[-1] != "Reason":
        raise ValueError(f"sacctmgr show event: Reason must be the last column, got {header}")
    events = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("|", len(header) - 1), strict=False))
        node, start = row.get("NodeName", "").strip(), _time(row.get("TimeStart", ""))
        if not node or start is None:
            continue
        state = row.get("State", "").strip().upper()
        events.append(
            NodeEvent(
                node=node,
                start=start,
                end=_time(row.get("TimeEnd", "")),
                state=state,
                drained="DRAIN" in state,
                reason=text(row.get("Reason")),
                user=_user(row.get("User", "")),
            )
        )
    events.sort(key=lambda e: (e.start, e.node))
    return events
