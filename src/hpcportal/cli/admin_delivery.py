"""``hpcportal admin delivery ...``: the outbox, dead letters and site channels through
a portal's HTTP API, as yourself (the portal's admin role is needed; the API's 403 is
printed as ``Error: ...`` with exit status 1).

``outbox`` lists messages newest first (``--state dead``: the dead letters) with the
counts per state; ``resend ID`` queues a dead letter again (same delivery id, attempts
from zero; the API answers 409 for any other state, so nothing is delivered twice).
``channels`` lists, adds, updates and removes the site-wide channels (cluster alerts
go there). No Slurm is involved, so there is no plan to confirm, except before a
removal, which deletes the channel's messages too. A webhook's secret exists in the
answer to ``add`` only: it is printed once, for the receiver to verify signatures.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from hpcportal.cli.admin import JsonOption, YesOption, read
from hpcportal.cli.portal_client import (
    DEFAULT_URL,
    CliError,
    PortalClient,
    TokenOption,
    UrlOption,
    as_dict,
    print_json,
    reporting,
)

delivery_app = typer.Typer(
    help="Notification delivery: the outbox, dead letters, site channels.",
    no_args_is_help=True,
)
channels_app = typer.Typer(
    help="Site-wide channels (email, Slack, webhook): list, add, update, remove.",
    no_args_is_help=True,
)
delivery_app.add_typer(channels_app, name="channels")

OUTBOX = "/api/v1/admin/delivery/outbox"
CHANNELS = "/api/v1/admin/delivery/channels"

State = Literal["pending", "sending", "sent", "dead"]
STATES = ("pending", "sending", "sent", "dead")
Kind = Literal["email", "slack", "webhook"]
Language = Literal["en", "ko"]
IdArgument = Annotated[int, typer.Argument(min=1, help="The channel's id (see `list`).")]


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@delivery_app.command()
def outbox(
    state: Annotated[
        State | None, typer.Option("--state", help="Only this state (dead: dead letters).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    before: Annotated[
        int | None, typer.Option("--before", min=1, help="Continue below this id.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Messages newest first with their state, attempts and last error; counts per state."""
    params: dict[str, str | int] = {"limit": limit}
    if state:
        params["state"] = state
    if before:
        params["before"] = before
    page = read(url, token, OUTBOX, json=json, what="the outbox", params=params)
    if page is None:
        return
    counts = page.get("counts") or {}
    typer.echo("  ".join(f"{name} {counts.get(name, 0)}" for name in STATES))
    items = page.get("items") or []
    if not items:
        typer.echo("No messages." if not state else f"No {state} messages.")
    for item in items:
        channel = f"{item.get('channel_kind') or '?'}:{item.get('channel_name') or '?'}"
        typer.echo(
            f"{item['id']:>6}  {item['created_at'][:19]}  {item['state']:<7} "
            f"{item['attempts']:>2}x  {_short(channel, 28):<28} {item['event']:<18} "
            f"{_short(item['subject'], 40)}"
        )
        if item.get("last_error"):
            typer.echo(f"        last error: {_short(item['last_error'], 100)}")
    if page.get("next_before"):
        typer.echo(f"More: --before {page['next_before']}")


@delivery_app.command()
def resend(
    outbox_id: Annotated[int, typer.Argument(min=1, help="A dead letter's id (see `outbox`).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Queue a dead letter again (same delivery id, attempts from zero)."""
    with reporting(), PortalClient(url, token) as client:
        answer = as_dict(client.json("POST", f"{OUTBOX}/{outbox_id}/resend"), "the resend")
    if json:
        print_json(answer)
        return
    typer.echo(f"Message {answer['id']} is {answer['state']} again ({answer['delivery_id']}).")


def _channel_line(channel: dict[str, Any]) -> str:
    marks = [
        "enabled" if channel.get("enabled") else "disabled",
        *(["signed"] if channel.get("signed") else []),
    ]
    return (
        f"{channel['id']:>5}  {channel['kind']:<8} {_short(channel['name'], 24):<24} "
        f"{channel['language']:<3} {','.join(marks):<16} {channel['target']}"
    )


@channels_app.command("list")
def list_channels(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json: JsonOption = False
) -> None:
    """The site-wide channels."""
    rows = read(url, token, CHANNELS, json=json)
    if rows is None:
        return
    if not rows:
        typer.echo("No site channels.")
    for channel in rows:
        typer.echo(_channel_line(channel))


@channels_app.command()
def add(
    kind: Annotated[Kind, typer.Argument(help="email, slack or webhook.")],
    name: Annotated[str, typer.Argument(help="A name admins recognise.")],
    target: Annotated[str, typer.Argument(help="An email address or an https URL.")],
    language: Annotated[Language, typer.Option("--language", help="en or ko.")] = "en",
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Add a site channel; a webhook's signing secret is printed once, now."""
    body = {
        "kind": kind,
        "name": name,
        "target": target,
        "language": language,
        "enabled": not disabled,
    }
    with reporting(), PortalClient(url, token) as client:
        created = as_dict(client.json("POST", CHANNELS, body=body), "the new channel")
    if json:
        print_json(created)
        return
    channel = as_dict(created.get("channel"), "the new channel")
    typer.echo(f"Added site channel {channel['id']}.")
    typer.echo(_channel_line(channel))
    if created.get("secret"):
        typer.echo(f"Signing secret (shown once, keep it for the receiver): {created['secret']}")


@channels_app.command()
def update(
    channel_id: IdArgument,
    name: Annotated[str | None, typer.Option("--name")] = None,
    target: Annotated[str | None, typer.Option("--target")] = None,
    language: Annotated[Language | None, typer.Option("--language")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Turn it on or off.")
    ] = None,
    new_secret: Annotated[
        bool,
        typer.Option("--new-secret", help="Set a webhook's secret (asked for, not echoed)."),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Rename, retarget, change the language, enable or disable; the rest stay."""
    values: dict[str, Any] = {
        k: v
        for k, v in {
            "name": name,
            "target": target,
            "language": language,
            "enabled": enabled,
        }.items()
        if v is not None
    }
    with reporting():
        if new_secret:
            values["secret"] = typer.prompt("New secret (16+ characters)", hide_input=True)
        if not values:
            raise CliError("Give something to change: --name, --target, --language, ...")
        with PortalClient(url, token) as client:
            path = f"{CHANNELS}/{channel_id}"
            changed = as_dict(client.json("PATCH", path, body=values), "the channel")
    if json:
        print_json(changed)
        return
    typer.echo(f"Updated site channel {channel_id}.")
    typer.echo(_channel_line(changed))


@channels_app.command()
def remove(
    channel_id: IdArgument,
    yes: YesOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Remove a site channel and its messages (after a confirmation)."""
    with reporting():
        if not yes and not typer.confirm(
            f"Remove site channel {channel_id} and its messages?", default=False
        ):
            raise CliError("Not removed.")
        with PortalClient(url, token) as client:
            client.json("DELETE", f"{CHANNELS}/{channel_id}")
    typer.echo(f"Removed site channel {channel_id}.")
