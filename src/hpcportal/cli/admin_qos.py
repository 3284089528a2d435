"""``hpcportal admin qos ...``: QoS through a portal's HTTP API, as yourself.

``list`` prints every QoS's values and its jobs; ``create``, ``modify`` and ``delete``
print the plan (the exact ``sacctmgr`` command, the values before and after, the jobs
it would release or hold back), then apply it after a confirmation with the reason
the audit log keeps (``admin.plan_then_apply``). ``hpcportal admin revert ID`` undoes
one. A limit option left out is not sent (``modify`` keeps it); ``--clear NAME``
removes one (``--clear max-wall``). slurmdbd decides: without Slurm's AdminLevel the
answer is ``Error: Slurm refused: ...`` and exit status 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hpcportal.cli.admin import (
    DryRunOption,
    JsonOption,
    YesOption,
    change_with,
    read,
    with_cleared,
)
from hpcportal.cli.portal_client import (
    DEFAULT_URL,
    CliError,
    TokenOption,
    UrlOption,
    reporting,
)

qos_app = typer.Typer(
    help="QoS: list, create, modify, delete (priority, preemption, limits).",
    no_args_is_help=True,
)

#: Option name (also what ``--clear`` takes) -> the API's field.
FIELDS = {
    "priority": "priority",
    "preempt": "preempt",
    "preempt-mode": "preempt_mode",
    "flags": "flags",
    "grp-tres": "grp_tres",
    "grp-jobs": "grp_jobs",
    "grp-submit": "grp_submit_jobs",
    "max-tres-per-job": "max_tres_per_job",
    "max-tres-per-user": "max_tres_per_user",
    "max-wall": "max_wall_minutes",
    "max-jobs-per-user": "max_jobs_per_user",
    "max-submit-per-user": "max_submit_jobs_per_user",
    "max-jobs-per-account": "max_jobs_per_account",
}
AREA = "/api/v1/admin/qos"

NameArgument = Annotated[str, typer.Argument(help="The QoS name (a-z 0-9 _ . -).")]
WhyOption = Annotated[str, typer.Option("--why", help="Why, for the audit log.")]
Count = Annotated[int | None, typer.Option(min=0)]
Priority = Annotated[int | None, typer.Option("--priority", min=0, help="Job priority factor.")]
Preempt = Annotated[
    str | None, typer.Option("--preempt", help="QoS this one may preempt: a,b (empty: none).")
]
PreemptMode = Annotated[
    str | None, typer.Option("--preempt-mode", help="cluster, off, cancel, requeue, suspend.")
]
Flags = Annotated[str | None, typer.Option("--flags", help="DenyOnLimit,NoReserve,...")]
Tres = Annotated[str | None, typer.Option(help="TRES counts: cpu=4,mem=8G,gres/gpu=1.")]
Wall = Annotated[int | None, typer.Option("--max-wall", min=0, help="Minutes per job.")]
Clear = Annotated[
    list[str] | None,
    typer.Option("--clear", help=f"Remove a limit (modify): {', '.join(FIELDS)}."),
]


def _values(given: dict[str, Any], clear: list[str] | None) -> dict[str, Any]:
    values = {FIELDS[name.replace("_", "-")]: v for name, v in given.items() if v is not None}
    return with_cleared(values, FIELDS, clear)


def _change(action: str, name: str, given: dict[str, Any], why: str, **how: Any) -> None:
    """Plan and apply ``action`` with the options ``given`` (and ``clear``, modify)."""
    url, token, clear = how.pop("url"), how.pop("token"), how.pop("clear", None)
    for key in ("name", "why", "clear", "yes", "dry_run", "url", "token"):
        given.pop(key, None)
    with reporting():
        values = _values(given, clear)
        if action == "modify" and not values:
            raise CliError("Give a value to change or a --clear.")
        change = {"action": action, "name": name, "values": values}
    change_with(url, token, AREA, change, why, **how)


@qos_app.command("list")
def list_qos(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json: JsonOption = False
) -> None:
    """Every QoS's values as slurmdbd has them now, and its pending/running jobs."""
    rows = read(url, token, AREA, json=json)
    if rows is None:
        return
    for row in rows or []:
        qos = row["qos"]
        limits = [
            f"{option}={qos[field]}"
            for option, field in FIELDS.items()
            if qos[field] not in (None, [], {}, 0, "cluster") and field != "priority"
        ]
        typer.echo(
            f"{qos['name']:<16} priority={qos['priority']:<6} pending={row['pending']:<4} "
            f"running={row['running']:<4} {' '.join(limits)}".rstrip()
        )


@qos_app.command()
def create(
    name: NameArgument,
    why: WhyOption,
    priority: Priority = None,
    preempt: Preempt = None,
    preempt_mode: PreemptMode = None,
    flags: Flags = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_tres_per_job: Tres = None,
    max_tres_per_user: Tres = None,
    max_wall: Wall = None,
    max_jobs_per_user: Count = None,
    max_submit_per_user: Count = None,
    max_jobs_per_account: Count = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create a QoS with these values (the others are Slurm's defaults)."""
    given = dict(locals())
    _change("create", name, given, why, yes=yes, dry_run=dry_run, url=url, token=token)


@qos_app.command()
def modify(
    name: NameArgument,
    why: WhyOption,
    priority: Priority = None,
    preempt: Preempt = None,
    preempt_mode: PreemptMode = None,
    flags: Flags = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_tres_per_job: Tres = None,
    max_tres_per_user: Tres = None,
    max_wall: Wall = None,
    max_jobs_per_user: Count = None,
    max_submit_per_user: Count = None,
    max_jobs_per_account: Count = None,
    clear: Clear = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Change the values given; --clear removes a limit; the rest stay."""
    given = dict(locals())
    how = {"yes": yes, "dry_run": dry_run, "url": url, "token": token, "clear": clear}
    _change("modify", name, given, why, **how)


@qos_app.command()
def delete(
    name: NameArgument,
    why: WhyOption,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete a QoS (a revert re-creates it with its values, not its associations)."""
    _change("delete", name, {}, why, yes=yes, dry_run=dry_run, url=url, token=token)
