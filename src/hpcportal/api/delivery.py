"""``/notifications/channels``, ``/subscriptions``, ``/deliveries``: your own channels
(email, Slack, webhook) with their verification and test message, your subscriptions,
and your delivery history. Everything is the caller's own: another person's channel or
subscription is 404, never 403 (its existence is not yours to learn).

Registered before ``notifications.router``, whose ``/notifications/{id}`` would
otherwise claim these paths.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response, status

from hpcportal.api.params import DbId, PageSize
from hpcportal.dependencies import CurrentUser, DbDep, SettingsDep
from hpcportal.errors import InvalidInput
from hpcportal.services.delivery import subscriptions as subs
from hpcportal.services.delivery import user_channels as channels
from hpcportal.services.delivery.site_channels import CreatedChannel
from hpcportal.services.delivery.subscriptions import (
    SubscriptionIn,
    SubscriptionPatch,
    SubscriptionView,
)
from hpcportal.services.delivery.url_guard import UrlGuard
from hpcportal.services.delivery.user_channels import (
    DeliveryHistory,
    UserChannelIn,
    UserChannelPatch,
    UserChannelView,
    VerifyIn,
)

router = APIRouter(prefix="/notifications", tags=["notifications"])
ChannelId = Annotated[DbId, Path()]
SubscriptionId = Annotated[DbId, Path()]
State = Literal["pending", "sending", "sent", "dead"]


@router.get("/channels", response_model=list[UserChannelView])
def list_channels(who: CurrentUser, db: DbDep) -> list[UserChannelView]:
    """Your channels; ``verified`` false ones receive nothing but their code."""
    return channels.list_channels(db, who.username)


@router.post("/channels", response_model=CreatedChannel, status_code=status.HTTP_201_CREATED)
def add_channel(
    body: UserChannelIn, who: CurrentUser, db: DbDep, settings: SettingsDep, response: Response
) -> CreatedChannel:
    """Add a channel and send its confirmation code through it. A URL outside the
    site's allow list is refused (422). A webhook's signing secret is in this answer
    only."""
    created = channels.add_channel(
        db, settings, UrlGuard.from_settings(settings), who.username, body
    )
    response.headers["Cache-Control"] = "no-store"
    return created


@router.patch("/channels/{channel_id}", response_model=UserChannelView)
def change_channel(
    channel_id: ChannelId, body: UserChannelPatch, who: CurrentUser, db: DbDep
) -> UserChannelView:
    """Rename, change language, switch on/off, set the rate limit (0: none)."""
    row = channels.change_channel(db, who.username, channel_id, body)
    return channels.view(db, row)


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_channel(channel_id: ChannelId, who: CurrentUser, db: DbDep) -> None:
    """Remove the channel with its subscriptions and messages."""
    channels.remove_channel(db, who.username, channel_id)


@router.post("/channels/{channel_id}/verify", response_model=UserChannelView)
def verify_channel(
    channel_id: ChannelId, body: VerifyIn, who: CurrentUser, db: DbDep
) -> UserChannelView:
    """Confirm the channel with the code it received (422 when wrong or expired)."""
    row, refused = channels.verify(db, who.username, channel_id, body.code)
    if refused is not None:
        db.commit()  # the wrong attempt counts even though the answer is an error
        raise InvalidInput(refused)
    return channels.view(db, row)


@router.post("/channels/{channel_id}/code", status_code=status.HTTP_202_ACCEPTED)
def resend_code(channel_id: ChannelId, who: CurrentUser, db: DbDep) -> dict[str, str]:
    """Send a new confirmation code (at most one a minute; the old one stops working)."""
    channels.send_code(db, who.username, channel_id)
    return {"status": "queued"}


@router.post("/channels/{channel_id}/test", status_code=status.HTTP_202_ACCEPTED)
def test_channel(channel_id: ChannelId, who: CurrentUser, db: DbDep) -> dict[str, str]:
    """Queue a test message through a verified channel; see it in ``/deliveries``."""
    channels.test_channel(db, who.username, channel_id)
    return {"status": "queued"}


@router.get("/subscriptions", response_model=list[SubscriptionView])
def list_subscriptions(who: CurrentUser, db: DbDep) -> list[SubscriptionView]:
    """Your rules: which event goes to which of your channels, and when."""
    return [SubscriptionView.of(r) for r in subs.list_subscriptions(db, who.username)]


@router.get("/subscriptions/events", response_model=list[str])
def subscription_events(who: CurrentUser) -> list[str]:
    """The events you can subscribe to (``admin_alert`` for admins)."""
    return subs.events_for(who)


@router.post("/subscriptions", response_model=SubscriptionView, status_code=status.HTTP_201_CREATED)
def add_subscription(body: SubscriptionIn, who: CurrentUser, db: DbDep) -> SubscriptionView:
    """Send ``event`` to one of your channels (immediately, or in an hourly/daily
    digest; quiet hours hold messages until they end)."""
    return SubscriptionView.of(subs.add_subscription(db, who, body))


@router.patch("/subscriptions/{subscription_id}", response_model=SubscriptionView)
def change_subscription(
    subscription_id: SubscriptionId, body: SubscriptionPatch, who: CurrentUser, db: DbDep
) -> SubscriptionView:
    return SubscriptionView.of(subs.change_subscription(db, who.username, subscription_id, body))


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_subscription(subscription_id: SubscriptionId, who: CurrentUser, db: DbDep) -> None:
    subs.remove_subscription(db, who.username, subscription_id)


@router.get("/deliveries", response_model=DeliveryHistory)
def deliveries(
    who: CurrentUser,
    db: DbDep,
    state: State | None = None,
    limit: PageSize = 50,
    before: DbId | None = None,
) -> DeliveryHistory:
    """Your messages newest first with their status, and those waiting (digest, quiet
    hours, rate limit); ``before=next_before`` continues."""
    return channels.history(db, who.username, state=state, limit=limit, before=before)
