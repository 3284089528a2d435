"""``hpcportal admin reservation ...``: reservations through a portal's HTTP API, as
yourself.

``list`` prints every reservation (window, nodes, users/accounts, flags, the jobs it
hits); ``create``, ``update`` and ``delete`` print the plan (the exact ``scontrol``
command, the running and pending jobs it conflicts with and why, the revert), then
apply it after a confirmation with the reason the audit log keeps
(``admin.plan_then_apply``); ``--dry-run`` stops after the plan. ``hpcportal admin
revert ID`` undoes one. Times are UTC (``2027-01-05T08:00:00``); no ``--start`` on create
is "now". slurmctld decides: without Slurm's AdminLevel the answer is ``Error: Slurm
refused: ...`` and exit status 1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from hpcportal.cli.admin import DryRunOption, JsonOption, YesOption, change_with, read
from hpcportal.cli.portal_client import (
    DEFAULT_URL,
    CliError,
    TokenOption,
    UrlOption,
    reporting,
)

reservation_app = typer.Typer(
    help="Reservations: list, create, update, delete (maintenance windows, users, nodes).",
    no_args_is_help=True,
)
AREA = "/api/v1/admin/reservations"

NameArgument = Annotated[str, typer.Argument(help="The reservation name (A-Z a-z 0-9 _ . -).")]
WhyOption = Annotated[str, typer.Option("--why", help="Why, for the audit log.")]
Start = Annotated[
    datetime | None, typer.Option("--start", help="Start (UTC); create: now if left out.")
]
End = Annotated[datetime | None, typer.Option("--end", help="End (UTC).")]
Duration = Annotated[
    int | None, typer.Option("--duration", min=1, help="Minutes (instead of --end).")
]
Nodes = Annotated[str | None, typer.Option("--nodes", help="A hostlist: node[001-002].")]
NodeCount = Annotated[
    int | None, typer.Option("--node-count", min=1, help="Let Slurm pick this many nodes.")
]
Users = Annotated[str | None, typer.Option("--users", help="Users: a,b (empty: none).")]
Accounts = Annotated[str | None, typer.Option("--accounts", help="Accounts: a,b (empty: none).")]
Partition = Annotated[str | None, typer.Option("--partition", help="Partition (--node-count).")]
Flags = Annotated[
    str | None, typer.Option("--flags", help="MAINT,IGNORE_JOBS,OVERLAP,FLEX,DAILY,... ")
]


def _utc(value: datetime | None) -> str | None:
    """Typer's datetimes are naive: they are meant as UTC."""
    return None if value is None else value.isoformat() + ("Z" if value.tzinfo is None else "")


def _change(action: str, name: str, values: dict[str, Any], why: str, **how: Any) -> None:
    url, token = how.pop("url"), how.pop("token")
    given = {k: v for k, v in values.items() if v is not None}
    with reporting():
        if action == "update" and not given:
            raise CliError("Give a value to change.")
        change = {"action": action, "name": name, "values": given}
    change_with(url, token, AREA, change, why, **how)


@reservation_app.command("list")
def list_reservations(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json: JsonOption = False
) -> None:
    """Every reservation slurmctld has now, and the jobs each one conflicts with."""
    answer = read(url, token, AREA, json=json, what="the reservations")
    if answer is None:
        return
    for row in answer.get("reservations") or []:
        r = row["reservation"]
        who = ",".join(r["users"] + r["accounts"])
        mark = " MAINT" if row["maintenance"] else ""
        typer.echo(
            f"{r['name']:<20} {r['start_time']} -> {r['end_time']}  {r['nodes'] or '-'}  "
            f"{who}  {','.join(r['flags'])}  jobs={row['jobs']}{mark}"
        )


@reservation_app.command()
def create(
    name: NameArgument,
    why: WhyOption,
    start: Start = None,
    end: End = None,
    duration: Duration = None,
    nodes: Nodes = None,
    node_count: NodeCount = None,
    users: Users = None,
    accounts: Accounts = None,
    partition: Partition = None,
    flags: Flags = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create a reservation (nodes or a node count; an end or a duration)."""
    values = {
        "start": _utc(start),
        "end": _utc(end),
        "duration_minutes": duration,
        "nodes": nodes,
        "node_count": node_count,
        "users": users,
        "accounts": accounts,
        "partition": partition,
        "flags": flags,
    }
    _change("create", name, values, why, yes=yes, dry_run=dry_run, url=url, token=token)


@reservation_app.command()
def update(
    name: NameArgument,
    why: WhyOption,
    start: Start = None,
    end: End = None,
    duration: Duration = None,
    nodes: Nodes = None,
    users: Users = None,
    accounts: Accounts = None,
    flags: Flags = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Change what is given (--flags is the whole set the portal manages); the rest stays."""
    values = {
        "start": _utc(start),
        "end": _utc(end),
        "duration_minutes": duration,
        "nodes": nodes,
        "users": users,
        "accounts": accounts,
        "flags": flags,
    }
    _change("update", name, values, why, yes=yes, dry_run=dry_run, url=url, token=token)


@reservation_app.command()
def delete(
    name: NameArgument,
    why: WhyOption,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete a reservation (a revert creates it again with its values)."""
    _change("delete", name, {}, why, yes=yes, dry_run=dry_run, url=url, token=token)
