"""The live protocol's limits, close codes, texts, metrics and message builders."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import Counter, Gauge

from hpcportal.services.identity import Principal

CHANNELS = frozenset({"jobs", "nodes", "cluster", "notifications", "sessions"})
OUTPUT_PREFIX = "job_output:"
#: Bad client messages answered with an error before the socket is closed (1008).
MAX_BAD_MESSAGES = 20
MAX_MESSAGE_CHARS = 16 * 1024
MAX_CHANNELS_PER_MESSAGE = 64
MAX_OUTPUT_CHANNELS = 16
#: A job_output subscription waits this long for its job to reach the snapshot.
OUTPUT_WAIT_SECONDS = 30.0
#: Output files read side by side (each read is one run-as call, ~40 ms).
OUTPUT_PARALLEL = 8
CLOSE_TIMEOUT = 5.0

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

NOT_YOURS = "Only the job's owner can follow its output."
TOO_SLOW = "Too far behind; reconnect."
TOO_MANY_BAD = "Too many bad messages."
SESSION_EXPIRED = "Your session has expired; log in again."
TOKEN_REVOKED = "This API token is no longer valid."  # noqa: S105 (a message)

LIVE_SOCKETS = Gauge("hpcportal_live_sockets", "Open live WebSockets")
LIVE_MESSAGES = Counter("hpcportal_live_messages", "Messages queued to live WebSockets", ["type"])
LIVE_DROPPED = Counter("hpcportal_live_dropped", "Live WebSockets dropped for being too slow")
OUTPUT_FOLLOWERS = Gauge(
    "hpcportal_live_output_followers", "Job outputs being followed (one per job and reader)"
)
OUTPUT_READS = Counter(
    "hpcportal_live_output_reads", "Reads of job output files by followers (run-as calls)"
)

PONG = '{"type":"pong"}'
#: Nobody: sees only public fields (``visible`` memoizes public copies per snapshot).
PUBLIC_VIEWER = Principal(username="", uid=-1, gid=-1, groups=(), role="user")


def make_message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def no_job_message(job_id: str) -> str:
    """Also said of a job the user may not see (``PrivateData=jobs``): Slurm's word."""
    return f"No job {job_id} in the queue."


def error_message(text: str) -> str:
    return make_message("error", message=text)
