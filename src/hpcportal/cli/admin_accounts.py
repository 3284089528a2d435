"""``hpcportal admin account ...`` and ``hpcportal admin user ...``: accounts, users in
accounts and association limits through a portal's HTTP API, as yourself.

``account list`` prints the account tree you may see (every account for a portal
admin, those you coordinate in Slurm otherwise) with each association's limits;
``account create/modify/delete`` and ``user add/modify/remove`` print the plan (the
exact ``sacctmgr`` commands, the values before and after, the jobs touched), then
apply it after a confirmation with the reason the audit log keeps
(``admin.plan_then_apply``). ``hpcportal admin revert ID`` undoes one (portal admins).
A limit option left out is not sent (``modify`` keeps it); ``--clear NAME`` removes
one. Slurm decides: a refusal is ``Error: Slurm refused: ...`` and exit status 1.
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

account_app = typer.Typer(
    help="Accounts: list the tree, create, modify, delete (parent, limits, fairshare).",
    no_args_is_help=True,
)
user_app = typer.Typer(
    help="Users in accounts: add, modify limits and fairshare, remove.",
    no_args_is_help=True,
)

#: Option name (also what ``--clear`` takes) -> the API's field.
FIELDS = {
    "fairshare": "fairshare",
    "grp-tres": "grp_tres",
    "grp-jobs": "grp_jobs",
    "grp-submit": "grp_submit_jobs",
    "max-jobs": "max_jobs",
    "max-submit": "max_submit_jobs",
    "max-wall": "max_wall_minutes",
    "max-tres": "max_tres_per_job",
    "qos": "qos",
    "default-qos": "default_qos",
}
ACCOUNTS = "/api/v1/admin/accounts"

WhyOption = Annotated[str, typer.Option("--why", help="Why, for the audit log.")]
AccountArgument = Annotated[str, typer.Argument(help="The account (a-z 0-9 _ . -).")]
UserArgument = Annotated[str, typer.Argument(help="The user's login name.")]
Count = Annotated[int | None, typer.Option(min=0)]
Fairshare = Annotated[
    str | None, typer.Option("--fairshare", help="Shares: a number, or 'parent'.")
]
Tres = Annotated[str | None, typer.Option(help="TRES counts: cpu=4,mem=8G,gres/gpu=1.")]
Wall = Annotated[int | None, typer.Option("--max-wall", min=0, help="Minutes per job.")]
Qos = Annotated[str | None, typer.Option("--qos", help="QoS allowed: normal,high.")]
DefaultQos = Annotated[str | None, typer.Option("--default-qos", help="The default QoS.")]
Parent = Annotated[str | None, typer.Option("--parent", help="The parent account.")]
Description = Annotated[str | None, typer.Option("--description", help="Description.")]
Organization = Annotated[str | None, typer.Option("--organization", help="Organisation.")]
Clear = Annotated[
    list[str] | None,
    typer.Option("--clear", help=f"Remove a limit (modify): {', '.join(FIELDS)}."),
]
_NOT_LIMITS = ("name", "user", "account", "why", "clear", "yes", "dry_run", "url", "token")
_ACCOUNT_KEYS = ("parent", "description", "organization")


def _values(given: dict[str, Any], clear: list[str] | None) -> dict[str, Any]:
    values = {
        FIELDS[name.replace("_", "-")]: v
        for name, v in given.items()
        if v is not None and name not in _NOT_LIMITS and name not in _ACCOUNT_KEYS
    }
    if isinstance(values.get("fairshare"), str) and values["fairshare"].isdigit():
        values["fairshare"] = int(values["fairshare"])
    return with_cleared(values, FIELDS, clear)


def _run(path: str, change: dict[str, Any], why: str, how: dict[str, Any]) -> None:
    url, token, area = how["url"], how["token"], f"{ACCOUNTS}{path}"
    change_with(url, token, area, change, why, yes=how["yes"], dry_run=how["dry_run"])


def _limits(limits: dict[str, Any]) -> str:
    shown = []
    for option, field in FIELDS.items():
        value = limits.get(field)
        if value in (None, [], {}) or (field == "fairshare" and value == 1):
            continue
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(value)
        shown.append(f"{option}={value}")
    return " ".join(shown)


@account_app.command("list")
def list_accounts(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json: JsonOption = False
) -> None:
    """The account tree you may see, with each association's limits and jobs."""
    view = read(url, token, ACCOUNTS, json=json, what="the accounts")
    if view is None:
        return
    if not view.get("admin"):
        typer.echo(f"Accounts you coordinate: {', '.join(view.get('coordinates') or [])}")
    for node in view.get("accounts") or []:
        indent = "  " * int(node["depth"])
        info, own = node["info"], node["association"]
        coords = f" coordinators={','.join(info['coordinators'])}" if info["coordinators"] else ""
        typer.echo(
            f"{indent}{info['name']}  pending={node['pending']} running={node['running']}"
            f"{coords} {_limits(own['limits'])}".rstrip()
        )
        for assoc in node["users"]:
            typer.echo(f"{indent}  - {assoc['user']} {_limits(assoc['limits'])}".rstrip())


@account_app.command()
def create(
    name: AccountArgument,
    why: WhyOption,
    parent: Parent = None,
    description: Description = None,
    organization: Organization = None,
    fairshare: Fairshare = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_jobs: Count = None,
    max_submit: Count = None,
    max_wall: Wall = None,
    max_tres: Tres = None,
    qos: Qos = None,
    default_qos: DefaultQos = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create an account under --parent (root if not given) with these limits."""
    given = dict(locals())
    with reporting():
        change = {
            "action": "create",
            "name": name,
            **{k: given[k] for k in _ACCOUNT_KEYS if given[k] is not None},
            "values": _values(given, None),
        }
    _run("", change, why, given)


@account_app.command()
def modify(
    name: AccountArgument,
    why: WhyOption,
    parent: Parent = None,
    description: Description = None,
    organization: Organization = None,
    fairshare: Fairshare = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_jobs: Count = None,
    max_submit: Count = None,
    max_wall: Wall = None,
    max_tres: Tres = None,
    qos: Qos = None,
    default_qos: DefaultQos = None,
    clear: Clear = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Change an account's parent, description, organisation or limits."""
    given = dict(locals())
    with reporting():
        extra = {k: given[k] for k in _ACCOUNT_KEYS if given[k] is not None}
        values = _values(given, clear)
        if not values and not extra:
            raise CliError("Give a value to change or a --clear.")
        change = {"action": "modify", "name": name, **extra, "values": values}
    _run("", change, why, given)


@account_app.command()
def delete(
    name: AccountArgument,
    why: WhyOption,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete an account without users or sub-accounts (a revert re-creates it)."""
    _run("", {"action": "delete", "name": name}, why, dict(locals()))


@user_app.command()
def add(
    user: UserArgument,
    account: AccountArgument,
    why: WhyOption,
    fairshare: Fairshare = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_jobs: Count = None,
    max_submit: Count = None,
    max_wall: Wall = None,
    max_tres: Tres = None,
    qos: Qos = None,
    default_qos: DefaultQos = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Add USER to ACCOUNT with these limits."""
    given = dict(locals())
    with reporting():
        values = _values(given, None)
    change = {"action": "add", "user": user, "account": account, "values": values}
    _run("/users", change, why, given)


@user_app.command("modify")
def modify_user(
    user: UserArgument,
    account: AccountArgument,
    why: WhyOption,
    fairshare: Fairshare = None,
    grp_tres: Tres = None,
    grp_jobs: Count = None,
    grp_submit: Count = None,
    max_jobs: Count = None,
    max_submit: Count = None,
    max_wall: Wall = None,
    max_tres: Tres = None,
    qos: Qos = None,
    default_qos: DefaultQos = None,
    clear: Clear = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Change USER's limits or fairshare in ACCOUNT; --clear removes a limit."""
    given = dict(locals())
    with reporting():
        values = _values(given, clear)
        if not values:
            raise CliError("Give a value to change or a --clear.")
    change = {"action": "modify", "user": user, "account": account, "values": values}
    _run("/users", change, why, given)


@user_app.command()
def remove(
    user: UserArgument,
    account: AccountArgument,
    why: WhyOption,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Remove USER from ACCOUNT (a revert adds them back with their limits)."""
    change = {"action": "remove", "user": user, "account": account}
    _run("/users", change, why, dict(locals()))
