"""Live updates: the WebSocket and Server-Sent Events, and job notifications.

Which other origins may open the live WebSocket, how far a client may fall behind, how
often watched job output is read, the SSE keep-alive, and when an owner is told their
job is running out of time. Used by ``services/live/``, ``api/live.py``,
``api/job_actions.py`` and ``services/notifications/detector.py``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LiveSettings(BaseModel):
    """Live updates to browsers and job notifications."""

    # Live updates over the WebSocket, and job notifications
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the portal's own that may open "
        "the live WebSocket /api/v1/ws; any other Origin is refused.",
    )
    live_queue_messages: int = Field(
        default=64,
        gt=0,
        le=10_000,
        description="Messages a live WebSocket may fall behind before it is dropped (close "
        "code 1013), so that a slow client never slows the others.",
    )
    live_output_poll_seconds: float = Field(
        default=0.5,
        ge=0.05,
        le=60,
        description="How often a watched running job's output file is read (one reader per "
        "job, however many pages and streams watch it).",
    )
    sse_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="A Server-Sent Events stream with nothing to say sends a comment this "
        "often, so proxies and browsers keep it open.",
    )
    notify_time_left_minutes: int = Field(
        default=10,
        ge=1,
        le=7 * 24 * 60,
        description="Notify a job's owner once when their running job has less than this "
        "many minutes left before its time limit.",
    )
