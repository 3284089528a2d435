"""``hpcportal notifications ...``: your own channels, subscriptions and delivery history.

Talks to a portal's API (``--url``/``HPCPORTAL_URL``, ``--token``/``HPCPORTAL_TOKEN``)
like ``hpcportal jobs``; every command acts for the token's owner only. A new channel
receives a confirmation code; ``channels verify ID CODE`` confirms it. Errors print as
``Error: ...`` on stderr.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hpcportal.cli.portal_client import (
    DEFAULT_URL,
    PortalClient,
    TokenOption,
    UrlOption,
    print_json,
    reporting,
    usage_error,
)

API = "/api/v1/notifications"

app = typer.Typer(
    help="Your notification channels, subscriptions and deliveries (needs an API token).",
    no_args_is_help=True,
)
channels_app = typer.Typer(help="Email, Slack and webhook channels.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Which events go to which channel.", no_args_is_help=True)
app.add_typer(channels_app, name="channels")
app.add_typer(subscriptions_app, name="subscriptions")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]
ChannelId = Annotated[int, typer.Argument(help="A channel id (from `channels list`).", min=1)]
SubscriptionId = Annotated[int, typer.Argument(help="A subscription id.", min=1)]


def _show(value: Any, as_json: bool, rows: list[str]) -> None:
    if as_json:
        print_json(value)
        return
    for row in rows:
        typer.echo(row)


def _channel_row(c: dict[str, Any]) -> str:
    status = "verified" if c.get("verified") else "waiting for its code"
    if not c.get("enabled", True):
        status += ", off"
    limit = f", {c['rate_limit_per_hour']}/h" if c.get("rate_limit_per_hour") else ""
    return f"{c['id']}\t{c['kind']}\t{c['name']}\t{c['target']}\t{c['language']}\t{status}{limit}"


@channels_app.command("list")
def channels_list(
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Your channels: id, kind, name, address, language, status."""
    with reporting(), PortalClient(url, token) as client:
        body = client.get(f"{API}/channels")
    _show(body, as_json, [_channel_row(c) for c in body])


@channels_app.command("add")
def channels_add(
    kind: Annotated[str, typer.Argument(help="email, slack or webhook.")],
    target: Annotated[str, typer.Argument(help="The email address or the webhook URL.")],
    name: Annotated[str | None, typer.Option("--name", help="Default: the address.")] = None,
    language: Annotated[str, typer.Option("--language", help="en or ko.")] = "en",
    rate_limit: Annotated[
        int | None, typer.Option("--rate-limit", help="At most this many messages an hour.")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Add a channel; a confirmation code goes to it (a webhook's secret prints once)."""
    body: dict[str, Any] = {
        "kind": kind,
        "target": target,
        "name": name or target[:100],
        "language": language,
    }
    if rate_limit is not None:
        body["rate_limit_per_hour"] = rate_limit
    with reporting(), PortalClient(url, token) as client:
        created = client.json("POST", f"{API}/channels", body=body)
    rows = [_channel_row(created["channel"]), "A confirmation code is on its way: channels verify"]
    if created.get("secret"):
        rows.append(f"Signing secret (shown once): {created['secret']}")
    _show(created, as_json, rows)


@channels_app.command("verify")
def channels_verify(
    channel_id: ChannelId,
    code: Annotated[str, typer.Argument(help="The code the channel received.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Confirm a channel with the code it received."""
    with reporting(), PortalClient(url, token) as client:
        channel = client.json("POST", f"{API}/channels/{channel_id}/verify", body={"code": code})
    typer.echo(_channel_row(channel))


@channels_app.command("resend-code")
def channels_resend(
    channel_id: ChannelId, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Send a new confirmation code (the old one stops working)."""
    with reporting(), PortalClient(url, token) as client:
        client.json("POST", f"{API}/channels/{channel_id}/code")
    typer.echo("A new code is on its way.")


@channels_app.command("test")
def channels_test(
    channel_id: ChannelId, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Queue a test message through a verified channel."""
    with reporting(), PortalClient(url, token) as client:
        client.json("POST", f"{API}/channels/{channel_id}/test")
    typer.echo("Test message queued; see `hpcportal notifications deliveries`.")


@channels_app.command("remove")
def channels_remove(
    channel_id: ChannelId, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Remove a channel with its subscriptions and messages."""
    with reporting(), PortalClient(url, token) as client:
        client.json("DELETE", f"{API}/channels/{channel_id}")
    typer.echo(f"Channel {channel_id} removed.")


QuietOption = Annotated[str | None, typer.Option("--quiet", help="Quiet hours like 22:00-07:00.")]


def quiet_hours(text: str) -> dict[str, str]:
    """``22:00-07:00`` as the API's ``quiet_start`` and ``quiet_end`` (it checks them)."""
    start, _, end = text.partition("-")
    return {"quiet_start": start.strip(), "quiet_end": end.strip()}


def _subscription_row(s: dict[str, Any]) -> str:
    quiet = (
        f"quiet {s['quiet_start']}-{s['quiet_end']} {s['time_zone']}"
        if s.get("quiet_start")
        else ""
    )
    return f"{s['id']}\t{s['event']}\tchannel {s['channel_id']}\t{s['mode']}\t{quiet}".rstrip()


@subscriptions_app.command("list")
def subscriptions_list(
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Your subscriptions: id, event, channel, when, quiet hours."""
    with reporting(), PortalClient(url, token) as client:
        body = client.get(f"{API}/subscriptions")
    _show(body, as_json, [_subscription_row(s) for s in body])


@subscriptions_app.command("events")
def subscriptions_events(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """The events you can subscribe to."""
    with reporting(), PortalClient(url, token) as client:
        for event in client.get(f"{API}/subscriptions/events"):
            typer.echo(event)


@subscriptions_app.command("add")
def subscriptions_add(
    event: Annotated[str, typer.Argument(help="e.g. job_failed (see `subscriptions events`).")],
    channel_id: ChannelId,
    mode: Annotated[str, typer.Option("--mode", help="immediate, hourly or daily.")] = "immediate",
    quiet: QuietOption = None,
    time_zone: Annotated[
        str, typer.Option("--time-zone", help="IANA zone of quiet hours.")
    ] = "UTC",
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Send an event to one of your channels."""
    body: dict[str, Any] = {
        "event": event,
        "channel_id": channel_id,
        "mode": mode,
        "time_zone": time_zone,
    }
    if quiet:
        body |= quiet_hours(quiet)
    with reporting(), PortalClient(url, token) as client:
        created = client.json("POST", f"{API}/subscriptions", body=body)
    _show(created, as_json, [_subscription_row(created)])


@subscriptions_app.command("change")
def subscriptions_change(
    subscription_id: SubscriptionId,
    mode: Annotated[str | None, typer.Option("--mode", help="immediate, hourly or daily.")] = None,
    quiet: QuietOption = None,
    no_quiet: Annotated[bool, typer.Option("--no-quiet", help="No quiet hours.")] = False,
    time_zone: Annotated[
        str | None, typer.Option("--time-zone", help="IANA zone of quiet hours.")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Change how a subscription is sent; what is not given stays as it is."""
    body: dict[str, Any] = {}
    if mode:
        body["mode"] = mode
    if time_zone:
        body["time_zone"] = time_zone
    if quiet:
        body |= quiet_hours(quiet)
    elif no_quiet:
        body["quiet_start"] = body["quiet_end"] = None
    with reporting():
        if quiet and no_quiet:
            usage_error("Give --quiet or --no-quiet, not both.")
        if not body:
            usage_error("Nothing to change: give --mode, --quiet, --no-quiet or --time-zone.")
        with PortalClient(url, token) as client:
            changed = client.json("PATCH", f"{API}/subscriptions/{subscription_id}", body=body)
    _show(changed, as_json, [_subscription_row(changed)])


@subscriptions_app.command("remove")
def subscriptions_remove(
    subscription_id: SubscriptionId, url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Remove a subscription."""
    with reporting(), PortalClient(url, token) as client:
        client.json("DELETE", f"{API}/subscriptions/{subscription_id}")
    typer.echo(f"Subscription {subscription_id} removed.")


@app.command("deliveries")
def deliveries(
    state: Annotated[
        str | None, typer.Option("--state", help="pending, sending, sent or dead.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Your delivery history, newest first, and what is waiting."""
    params: dict[str, str | int] = {"limit": limit}
    if state:
        params["state"] = state
    with reporting(), PortalClient(url, token) as client:
        body = client.get(f"{API}/deliveries", params=params)
    rows = [
        f"{m['id']}\t{m['created_at']}\t{m['state']}\t{m['attempts']}\t"
        f"{m.get('channel_name') or m['channel_id']}\t{m['subject']}"
        for m in body.get("items", [])
    ]
    rows += [
        f"waiting\t{w['release_at']}\t{w['reason']}\tchannel {w['channel_id']}\t{w['subject']}"
        for w in body.get("waiting", [])
    ]
    _show(body, as_json, rows)
