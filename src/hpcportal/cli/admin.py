"""``hpcportal admin ...``: the admin console through a portal's HTTP API.

Each change is planned first (the exact Slurm commands and what they affect are
printed), then applied after a confirmation (``--yes`` skips it, ``--dry-run`` stops
after the plan) with the reason the audit log keeps; the argv printed are sent back as
``expect``, so the portal answers 409 rather than run anything else. Everything runs
as you on the cluster: Slurm's refusal is printed as ``Error: ...`` with exit status 1.
Other areas (QoS, ...) add their group to ``admin_app`` and reuse ``plan_then_apply``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import typer

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

admin_app = typer.Typer(
    help="Administer the cluster through a portal's API, as yourself (Slurm decides).",
    no_args_is_help=True,
)
nodes_app = typer.Typer(
    help="Node states: list, drain, down, resume, reboot.", no_args_is_help=True
)
admin_app.add_typer(nodes_app, name="nodes")

NodesArgument = Annotated[str, typer.Argument(help="A node or hostlist: node003, node[1-2].")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="The reason Slurm stores.")]
WhyOption = Annotated[
    str | None,
    typer.Option("--why", help="Why, for the audit log (default: the reason)."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]


def print_plan(plan: dict[str, Any]) -> None:
    typer.echo(f"Plan: {plan.get('summary', '')}")
    for command in plan.get("commands") or []:
        typer.echo(f"  $ {command.get('shown')}")
    jobs = plan.get("affects") or []
    if jobs:
        typer.echo(f"Affects {len(jobs)} job(s):")
        for job in jobs:
            why = f"  ({job['conflict']})" if job.get("conflict") else ""
            typer.echo(f"  {job['job_id']}  {job['user']}  {job['state']}  {job['name']}{why}")
    for note in plan.get("notes") or []:
        typer.echo(f"Note: {note}")
    if not plan.get("revertible"):
        typer.echo("This change cannot be reverted from the portal.")


def confirmed(plan: dict[str, Any], *, yes: bool, dry_run: bool) -> list[list[str]] | None:
    """Print ``plan`` and ask; the argv to send as ``expect``, or None after --dry-run."""
    print_plan(plan)
    if dry_run:
        return None
    if not yes and not typer.confirm("Apply?", default=False):
        raise CliError("Not applied.")
    return [command["argv"] for command in plan.get("commands") or []]


def change_with(
    url: str, token: str | None, area: str, change: dict[str, Any], why: str, **how: bool
) -> None:
    """``plan_then_apply`` of ``change`` at ``{area}/plan`` and ``{area}/apply`` on the
    portal at ``url`` (``how``: ``yes`` and ``dry_run``), errors reported as ``Error:``."""
    with reporting(), PortalClient(url, token) as client:
        plan_then_apply(
            client,
            f"{area}/plan",
            f"{area}/apply",
            change,
            why,
            yes=how["yes"],
            dry_run=how["dry_run"],
        )


def with_cleared(
    values: dict[str, Any], fields: dict[str, str], clear: list[str] | None
) -> dict[str, Any]:
    """``values`` with each ``--clear NAME`` (an option name of ``fields``) set to None."""
    for name in clear or []:
        field = fields.get(name.removeprefix("--"))
        if field is None:
            raise CliError(f"--clear takes one of: {', '.join(fields)}.")
        if field in values:
            raise CliError(f"--{name} is both given and cleared.")
        values[field] = None
    return values


def read(
    url: str,
    token: str | None,
    path: str,
    *,
    json: bool,
    what: str | None = None,
    params: Mapping[str, str | int] | None = None,
) -> Any:
    """GET ``path`` as you (``what``: it must be an object, so named in the error); with
    ``json`` (``--json``) the answer is printed as JSON and None returned."""
    with reporting(), PortalClient(url, token) as client:
        answer = client.get(path, params=params)
        if what is not None:
            answer = as_dict(answer, what)
    if json:
        print_json(answer)
        return None
    return answer


def plan_then_apply(
    client: PortalClient,
    plan_path: str,
    apply_path: str,
    change: dict[str, Any],
    why: str,
    *,
    yes: bool,
    dry_run: bool,
) -> dict[str, Any] | None:
    """Show the plan, confirm, apply with ``expect``; the applied change, or None."""
    plan = as_dict(client.json("POST", plan_path, body=change), "the plan")
    expect = confirmed(plan, yes=yes, dry_run=dry_run)
    if expect is None:
        return None
    body = {"change": change, "reason": why, "expect": expect}
    applied = as_dict(client.json("POST", apply_path, body=body), "the change")
    typer.echo(f"Applied as change {applied.get('change_id')}.")
    return applied


def _node_change(
    action: Literal["drain", "down", "resume", "reboot"],
    nodes: str,
    reason: str | None,
    why: str | None,
    url: str,
    token: str | None,
    yes: bool,
    dry_run: bool,
    **extra: Any,
) -> None:
    change = {"action": action, "nodes": nodes, "reason": reason, **extra}
    why = why or reason or ""
    change_with(url, token, "/api/v1/admin/nodes", change, why, yes=yes, dry_run=dry_run)


@nodes_app.command("list")
def list_nodes(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json: JsonOption = False
) -> None:
    """Every node's state and reason, who set it and when, and its jobs."""
    answer = read(url, token, "/api/v1/admin/nodes", json=json, what="the nodes")
    if answer is None:
        return
    for node in answer.get("nodes") or []:
        reason = node.get("reason") or ""
        if reason:
            reason = (
                f"{reason} [{node.get('reason_set_by') or '?'}@{node.get('reason_time') or '?'}]"
            )
        jobs = ",".join(j["job_id"] for j in node.get("jobs") or [])
        typer.echo(f"{node['name']:<16} {node['status']:<10} {reason}  {jobs}".rstrip())


@nodes_app.command()
def drain(
    nodes: NodesArgument,
    reason: ReasonOption,
    why: WhyOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Drain: running jobs finish, no new ones start (drained once idle)."""
    _node_change("drain", nodes, reason, why, url, token, yes, dry_run)


@nodes_app.command()
def down(
    nodes: NodesArgument,
    reason: ReasonOption,
    why: WhyOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Take nodes down now: Slurm requeues or kills their jobs."""
    _node_change("down", nodes, reason, why, url, token, yes, dry_run)


@nodes_app.command()
def resume(
    nodes: NodesArgument,
    why: Annotated[str, typer.Option("--why", help="Why, for the audit log.")],
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Resume drained or down nodes."""
    _node_change("resume", nodes, None, why, url, token, yes, dry_run)


@nodes_app.command()
def reboot(
    nodes: NodesArgument,
    reason: ReasonOption,
    next_state: Annotated[
        str, typer.Option("--next-state", help="resume or down after the reboot.")
    ] = "resume",
    why: WhyOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Reboot once idle, ASAP (needs RebootProgram in slurm.conf)."""
    _node_change("reboot", nodes, reason, why, url, token, yes, dry_run, next_state=next_state)


@admin_app.command()
def changes(
    kind: Annotated[str, typer.Option("--kind", help="A kind prefix: node., qos.")] = "",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Applied changes, newest first, and whether each can still be reverted."""
    answer = read(url, token, "/api/v1/admin/changes", json=json, params={"kind": kind})
    if answer is None:
        return
    for change in answer or []:
        mark = "revertible" if change.get("revertible") else ""
        typer.echo(
            f"{change['id']:>5}  {change['at']}  {change['username']:<10} {change['kind']:<18} "
            f"{change['target']}  {change['reason']}  {mark}".rstrip()
        )


@admin_app.command()
def revert(
    change_id: Annotated[int, typer.Argument(help="The change to undo (see `admin changes`).")],
    why: Annotated[str, typer.Option("--why", help="Why, for the audit log.")],
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Undo an applied change from the state recorded before it."""
    path = f"/api/v1/admin/changes/{change_id}/revert"
    with reporting(), PortalClient(url, token) as client:
        plan = as_dict(client.get(path), "the revert plan")
        expect = confirmed(plan, yes=yes, dry_run=dry_run)
        if expect is None:
            return
        answer = client.json("POST", path, body={"reason": why, "expect": expect})
    typer.echo(f"Reverted as change {as_dict(answer, 'the revert').get('change_id')}.")


@admin_app.command()
def scheduler(
    hours: Annotated[
        int, typer.Option("--hours", min=0, max=168, help="Also print the last N hours.")
    ] = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Scheduler health: the latest sdiag figures, heaviest RPC users, pending reasons."""
    with reporting(), PortalClient(url, token) as client:
        answer = as_dict(client.get("/api/v1/admin/scheduler"), "the scheduler figures")
        history = (
            client.get("/api/v1/admin/scheduler/history", params={"hours": hours})
            if hours > 0
            else None
        )
    if json:
        print_json({**answer, "history": history} if history is not None else answer)
        return
    stats = answer.get("latest")
    if not stats:
        typer.echo("No sdiag reading yet.")
    else:
        typer.echo(f"sdiag at {answer.get('sampled_at')} (counters since {stats['data_since']})")
        for label, key in _FIGURES:
            value = stats.get(key)
            typer.echo(f"  {label:<32} {'-' if value is None else value}")
    if answer.get("sampler_error"):
        typer.echo(f"Last reading failed: {answer['sampler_error']}")
    users = answer.get("top_rpc_users") or []
    if users:
        typer.echo("Heaviest RPC users (count, mean µs, total µs):")
        for u in users:
            typer.echo(
                f"  {u['user']:<16} {u['count']:>8} {u['average_us']:>8} {u['total_us']:>12}"
            )
    pending = answer.get("pending_by_partition") or []
    if pending:
        typer.echo("Pending jobs by partition:")
        for row in pending:
            reasons = ", ".join(f"{r['reason']} {r['jobs']}" for r in row.get("reasons") or [])
            typer.echo(f"  {row['partition']:<16} {row['pending']:>6}  {reasons}")
    for point in history or []:
        typer.echo(
            f"  {point['at']}  main {point['schedule_cycle_last']} µs  backfill "
            f"{point['backfill_cycle_last']} µs depth {point['backfill_last_depth']}  agent "
            f"queue {point['agent_queue_size']}  threads {point['server_thread_count']}"
        )


_FIGURES = (
    ("Server threads", "server_thread_count"),
    ("Agent queue size", "agent_queue_size"),
    ("DBD agent queue size", "dbd_agent_queue_size"),
    ("Jobs submitted", "jobs_submitted"),
    ("Jobs started", "jobs_started"),
    ("Jobs completed", "jobs_completed"),
    ("Jobs pending / running now", "jobs_pending"),
    ("Main cycle last (µs)", "schedule_cycle_last"),
    ("Main cycle mean (µs)", "schedule_cycle_mean"),
    ("Main cycle max (µs)", "schedule_cycle_max"),
    ("Backfill cycle last (µs)", "backfill_cycle_last"),
    ("Backfill cycle mean (µs)", "backfill_cycle_mean"),
    ("Backfill last depth", "backfill_last_depth"),
    ("Backfill mean depth", "backfill_depth_mean"),
)


@admin_app.command()
def audit(
    user: Annotated[str, typer.Option("--user", help="Who did it.")] = "",
    kind: Annotated[str, typer.Option("--kind", help="A kind prefix: admin., job.")] = "admin.",
    target: Annotated[str, typer.Option("--target", help="A target prefix: node:.")] = "",
    outcome: Annotated[str, typer.Option("--outcome", help="ok, refused or error.")] = "",
    since: Annotated[str, typer.Option("--since", help="ISO time: 2026-12-03T06:00Z.")] = "",
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """The audit log, newest first, with each admin change's reason and commands."""
    filters = {"user": user, "kind": kind, "target": target, "outcome": outcome, "since": since}
    params: dict[str, Any] = {k: v for k, v in filters.items() if v}
    params.update(page=page, limit=limit)
    path, what = "/api/v1/admin/audit", "the audit log"
    answer = read(url, token, path, json=json, what=what, params=params)
    if answer is None:
        return
    typer.echo(f"{answer.get('total', 0)} entries (page {answer.get('page')})")
    for item in answer.get("items") or []:
        typer.echo(
            f"{item['at']}  {item['username']:<10} {item['result']:<8} {item['action']:<22} "
            f"{item.get('target') or ''}"
        )
        change = item.get("change")
        if change:
            typer.echo(f"    change {change['id']}: {change['reason']}")
            for argv in change.get("commands") or []:
                typer.echo(f"    $ {' '.join(argv)}")
        elif item.get("detail"):
            typer.echo(f"    {item['detail']}")
