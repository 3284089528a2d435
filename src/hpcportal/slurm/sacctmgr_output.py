"""What ``sacctmgr -i`` prints after an administrator's change, read strictly.

sacctmgr reports on stdout: ``Adding QOS(s)`` / ``Modified qos...`` / ``Deleting
QOS(s)...`` and then, indented, each name it touched (22.05 to 26.05 alike; recorded
in ``tests/fixtures/slurm/<release>/actions/sacctmgr_qos_*.txt``). Accounts are
reported the same way (``Adding Account(s)``, ``Modified accounts...``, ``Deleting
accounts...``); associations as lines ``C = CLUSTER  A = ACCOUNT  U = USER`` after
``Associations =`` / ``Modified user associations...`` / ``Deleting user
associations...`` (and ``Modified account associations...`` when an account's limits
or parent change; ``sacctmgr_acct_*.txt``). A refusal exits 1
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
    ("add", "account"): re.compile(r"^Adding Account\(s\)$"),
    ("modify", "account"): re.compile(r"^Modified account(s| associations)\.\.\.$"),
    ("delete", "account"): re.compile(r"^Deleting accounts\.\.\.$"),
    ("add", "user"): re.compile(r"^Associations =$"),
    ("modify", "user"): re.compile(r"^Modified user associations\.\.\.$"),
    ("delete", "user"): re.compile(r"^Deleting user associations\.\.\.$"),
}
#: ``C = hpcdev   A = physics   U = bob`` (an association in a report; ``of PARENT``
#: after an account's).
_ASSOC_LINE = re.compile(r"\b([CAU]) = (\S+)")


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
    nothing = next((ln for ln in lines if ln.startswith("Nothing")), None)
    if nothing is not None:  # 26.05: "Modified user associations..." then "Nothing modified"
        raise SlurmInvalidRequest(f"Slurm changed nothing: {nothing}")
    if not lines or not pattern.fullmatch(lines[0]) or not _names(args, name, lines[1:]):
        shown = stdout.strip()[:200] or "nothing"
        raise SlurmOutputUnreadable(
            f"sacctmgr printed a report of {args[1]} {args[2]} the portal cannot read: {shown!r}"
        )


def _names(args: tuple[str, ...], name: str, lines: list[str]) -> bool:
    """Does the report name what ``args`` changed? A QoS or an account by its name
    alone; a user's association (and an account's, when its limits changed) as
    ``A = ACCOUNT`` (and ``U = USER``) on one line."""
    if name in lines:
        return True
    if args[2] not in ("user", "account"):
        return False
    account = next((a.partition("=")[2] for a in args if a.startswith("Account=")), "")
    wanted = {"A": account, "U": name} if args[2] == "user" else {"A": name}
    for line in lines:
        said = dict(_ASSOC_LINE.findall(line))
        if all(_same(said.get(k, ""), v) for k, v in wanted.items()):
            return True
    return False


def _same(said: str, name: str) -> bool:
    """sacctmgr prints association names in fixed columns, cut to their width
    (``%-9.9s`` for users, ``%-10.10s`` for accounts in 22.05, wider later): a name
    that long or longer is named by its first characters."""
    return said == name or (len(said) >= _COLUMN and name.startswith(said))


_COLUMN = 9
