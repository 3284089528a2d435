"""What ``sacctmgr -i`` prints after an administrator's change, read strictly.

sacctmgr reports on stdout: ``Adding QOS(s)`` / ``Modified qos...`` / ``Deleting
QOS(s)...`` and then, indented, each name it touched (22.05 to 26.05 alike; recorded
in ``tests/fixtures/slurm/<release>/actions/sacctmgr_qos_*.txt``). A refusal exits 1
and is raised typed by the executor before this is asked. Exit 0 with anything but
that report naming the entity is ``SlurmOutputUnreadable`` (502), and a "Nothing
modified/deleted/new added" is ``SlurmInvalidRequest``: the portal never reports a
change Slurm did not say it made.
"""

from __future__ import annotations

import re

from hpcportal.errors import SlurmInvalidRequest, SlurmOutputUnreadable

#: (verb, entity) -> the first line of sacctmgr's report when it did it.
_DONE = {
    ("add", "qos"): re.compile(r"^Adding QOS\(s\)$"),
    ("modify", "qos"): re.compile(r"^Modified qos\.\.\.$"),
    ("delete", "qos"): re.compile(r"^Deleting QOS\(s\)\.\.\.$"),
}


def check_done(args: tuple[str, ...], stdout: str) -> None:
    """``sacctmgr -i VERB ENTITY ... Name=N ...`` (``args``) reported doing it to N.

    Commands this module does not know (other entities) are left to their callers."""
    if len(args) < 3 or args[0] != "-i":
        return
    pattern = _DONE.get((args[1], args[2]))
    if pattern is None:
        return
    name = next((a.partition("=")[2] for a in args if a.startswith("Name=")), "")
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Nothing"):
        raise SlurmInvalidRequest(f"Slurm changed nothing: {lines[0]}")
    if not lines or not pattern.fullmatch(lines[0]) or name not in lines[1:]:
        shown = stdout.strip()[:200] or "nothing"
        raise SlurmOutputUnreadable(
            f"sacctmgr printed a report of {args[1]} {args[2]} the portal cannot read: {shown!r}"
        )
