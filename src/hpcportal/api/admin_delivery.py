"""Admins' delivery API: the outbox (filter by state), resending dead letters, and the
site-wide channels. Only the portal's admin role reaches these routes; every change is
in the audit log, in the same transaction as the change."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response, status

from hpcportal.api.params import DbId, PageSize
from hpcportal.dependencies import AdminUser, ClientAddress, DbDep, SettingsDep
from hpcportal.services import audit
from hpcportal.services.delivery import site_channels
from hpcportal.services.delivery.site_channels import (
    ChannelView,
    CreatedChannel,
    OutboxPage,
    OutboxView,
    SiteChannelIn,
    SiteChannelPatch,
)
from hpcportal.services.delivery.url_guard import UrlGuard

router = APIRouter(prefix="/admin/delivery", tags=["admin"])
State = Literal["pending", "sending", "sent", "dead"]
ChannelId = Annotated[DbId, Path()]


@router.get("/outbox", response_model=OutboxPage)
def list_outbox(
    _: AdminUser,
    db: DbDep,
    state: State | None = None,
    limit: PageSize = 50,
    before: DbId | None = None,
) -> OutboxPage:
    """Messages newest first (``state=dead``: the dead letters), counts per state;
    ``before=next_before`` continues."""
    return site_channels.outbox_page(db, state=state, limit=limit, before=before)


@router.post("/outbox/{outbox_id}/resend", response_model=OutboxView)
def resend(
    outbox_id: Annotated[DbId, Path()], who: AdminUser, db: DbDep, address: ClientAddress
) -> OutboxView:
    """Queue a dead letter again (attempts from zero, same delivery id); 409 unless dead."""
    view = site_channels.resend(db, outbox_id)
    audit.add(db, audit.Event.of(who, "delivery.resend", f"outbox:{outbox_id}", address))
    return view


@router.get("/channels", response_model=list[ChannelView])
def list_channels(_: AdminUser, db: DbDep) -> list[ChannelView]:
    """The site-wide channels."""
    return site_channels.site_channels(db)


@router.post("/channels", response_model=CreatedChannel, status_code=status.HTTP_201_CREATED)
def create_channel(
    body: SiteChannelIn,
    who: AdminUser,
    db: DbDep,
    settings: SettingsDep,
    address: ClientAddress,
    response: Response,
) -> CreatedChannel:
    """Add a site channel (verified at once). A webhook's secret is in this answer only."""
    created = site_channels.create(db, settings, UrlGuard.from_settings(settings), body)
    target = f"channel:{created.channel.id}"
    audit.add(db, audit.Event.of(who, "delivery.channel.create", target, address))
    response.headers["Cache-Control"] = "no-store"
    return created


@router.patch("/channels/{channel_id}", response_model=ChannelView)
def update_channel(
    channel_id: ChannelId,
    body: SiteChannelPatch,
    who: AdminUser,
    db: DbDep,
    settings: SettingsDep,
    address: ClientAddress,
) -> ChannelView:
    """Rename, retarget, enable or disable a site channel, or set its secret."""
    guard = UrlGuard.from_settings(settings)
    view = site_channels.update(db, settings, guard, channel_id, body)
    target = f"channel:{channel_id}"
    audit.add(db, audit.Event.of(who, "delivery.channel.update", target, address))
    return view


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_channel(
    channel_id: ChannelId, who: AdminUser, db: DbDep, address: ClientAddress
) -> None:
    """Delete a site channel and its messages."""
    site_channels.delete(db, channel_id)
    target = f"channel:{channel_id}"
    audit.add(db, audit.Event.of(who, "delivery.channel.delete", target, address))
