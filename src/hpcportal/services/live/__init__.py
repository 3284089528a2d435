"""Live updates: one WebSocket per browser tab, fed from the shared snapshot.

After each refresh the hub computes the differences once (``services.changes``),
serializes each message variant once and hands the same string to every socket
that gets it; per socket there is only choosing and queueing. Each socket has a
bounded send queue drained by its own task, so a slow client never slows the others:
one that falls ``live_queue_messages`` behind is dropped (close code 1013).

Protocol (JSON text frames)::

    client -> server
      {"type": "subscribe", "channels": [...]}     jobs, nodes, cluster, notifications,
      {"type": "unsubscribe", "channels": [...]}   job_output:<job id>
      {"type": "ping"}
    server -> client
      {"type": "hello", "user": "alice", "generation": N}            after accepting
      {"type": "jobs", "generation": N, "changed": [Job], "removed": ["id", ...]}
      {"type": "nodes", "generation": N, "changed": [Node], "removed": ["name", ...]}
      {"type": "cluster", "generation": N, "summary": ClusterSummary}
      {"type": "notification", "notification": Notification, "unread": N}
      {"type": "job_output", "job_id": "123", "stream": "stdout", "offset": N, "data": "..."}
      {"type": "pong"}
      {"type": "error", "message": "..."}

``jobs``, ``nodes`` and ``cluster`` follow Slurm's ``PrivateData`` for each socket's
user (``services.visibility``): under ``jobs`` a socket hears only of the jobs its user
sees (a message with nothing for them is not sent), under ``nodes`` of no node.
``jobs`` carries a job's private part only to its owner and admins. Subscribing to
``nodes`` or ``cluster`` first sends the current state; the job list itself comes
from ``GET /api/v1/jobs`` (changes are idempotent, so applying one twice is harmless).
``job_output:<id>`` is for the job's owner. One follower per job (however many
sockets and Server-Sent Event streams watch it) reads the file as the owner every
``live_output_poll_seconds`` while the job runs, and stops when its last watcher
leaves; ``offset`` says where ``data`` starts (anything before it is at
``GET /api/v1/jobs/{id}/output``: a file longer than two chunks is followed from its
last chunk). A socket joining a follower that has already read
part of the file first gets an empty ``job_output`` message whose ``offset`` says how
far it has read, so it can fetch the part it missed.

Refusals happen before accepting: HTTP 401 (not authenticated) or 403 (foreign
origin), or close code 4401 / 4403 on a server that cannot answer HTTP there. Close
codes of an open socket: 4401 (logged out, session expired, token revoked), 1008
(20 bad messages), 1013 (too far behind: reconnect), 1001 or 1012 (the portal is
stopping).

The package: ``protocol`` (limits, close codes, messages), ``origin``, ``connection``
(a socket, a follower), ``scheduler`` (after-refresh work on the latest snapshot),
``fanout`` (the hub's state and fan-out), ``output_follow`` (job output),
``revocation`` (the sweep of ended logins and tokens) and ``hub`` (``LiveHub``).
Importers use this package's names.
"""

from __future__ import annotations

from hpcportal.services.live.connection import (
    CloseRequest,
    Connection,
    Follower,
    LiveIdentity,
    LiveSocket,
    OutputEvent,
    OutputWatch,
)
from hpcportal.services.live.fanout import HubBase
from hpcportal.services.live.hub import LiveHub
from hpcportal.services.live.origin import normalize_origin, origin_allowed
from hpcportal.services.live.output_follow import OutputFollowing
from hpcportal.services.live.protocol import (
    CHANNELS,
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_NOT_AUTHENTICATED,
    CLOSE_POLICY,
    CLOSE_TIMEOUT,
    CLOSE_TRY_LATER,
    LIVE_DROPPED,
    LIVE_MESSAGES,
    LIVE_SOCKETS,
    MAX_BAD_MESSAGES,
    MAX_CHANNELS_PER_MESSAGE,
    MAX_MESSAGE_CHARS,
    MAX_OUTPUT_CHANNELS,
    NOT_YOURS,
    OUTPUT_FOLLOWERS,
    OUTPUT_PARALLEL,
    OUTPUT_PREFIX,
    OUTPUT_READS,
    OUTPUT_WAIT_SECONDS,
    PONG,
    PUBLIC_VIEWER,
    SESSION_EXPIRED,
    TOKEN_REVOKED,
    TOO_MANY_BAD,
    TOO_SLOW,
    error_message,
    make_message,
    no_job_message,
)
from hpcportal.services.live.revocation import RevocationSweep
from hpcportal.services.live.scheduler import LatestOnly

__all__ = [
    "CHANNELS",
    "CLOSE_FORBIDDEN",
    "CLOSE_GOING_AWAY",
    "CLOSE_NOT_AUTHENTICATED",
    "CLOSE_POLICY",
    "CLOSE_TIMEOUT",
    "CLOSE_TRY_LATER",
    "LIVE_DROPPED",
    "LIVE_MESSAGES",
    "LIVE_SOCKETS",
    "MAX_BAD_MESSAGES",
    "MAX_CHANNELS_PER_MESSAGE",
    "MAX_MESSAGE_CHARS",
    "MAX_OUTPUT_CHANNELS",
    "NOT_YOURS",
    "OUTPUT_FOLLOWERS",
    "OUTPUT_PARALLEL",
    "OUTPUT_PREFIX",
    "OUTPUT_READS",
    "OUTPUT_WAIT_SECONDS",
    "PONG",
    "PUBLIC_VIEWER",
    "SESSION_EXPIRED",
    "TOKEN_REVOKED",
    "TOO_MANY_BAD",
    "TOO_SLOW",
    "CloseRequest",
    "Connection",
    "Follower",
    "HubBase",
    "LatestOnly",
    "LiveHub",
    "LiveIdentity",
    "LiveSocket",
    "OutputEvent",
    "OutputFollowing",
    "OutputWatch",
    "RevocationSweep",
    "error_message",
    "make_message",
    "no_job_message",
    "normalize_origin",
    "origin_allowed",
]
