"""How often the snapshot may ask Slurm: the refresher backs off when slurmctld struggles.

The snapshot's three commands are the portal's steady load on slurmctld. When
slurmctld answers slowly (a refresh takes longer than ``slow_fraction`` of the
interval) or refuses under its own rate limit (``rl_enable``: "Rate limit exceeded"),
asking again at the same pace only adds to its queue, and every replica does it. So the
interval doubles, up to ``maximum``; it halves again once a refresh would not have been
slow at half the interval (the margin keeps it from flapping between two steps), back
to the configured one. A refresh that fails fast (slurmctld down) changes nothing: the
interval stays short so the portal notices the moment Slurm is back.

The guard is plain arithmetic over what the refresher measured, so it is tested without
an event loop; ``SnapshotService`` feeds it and reports it (log, ``/metrics``,
``/ready``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

REFRESH_INTERVAL = Gauge(
    "hpcportal_snapshot_refresh_interval_seconds",
    "Current interval between snapshot refreshes (grows while Slurm is slow or rate-limits)",
)
BACKOFFS = Counter(
    "hpcportal_snapshot_backoffs",
    "Times the snapshot refresher lengthened its interval, by reason",
    ["reason"],
)
FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Why the refresher runs slower than configured: ``slow`` or ``rate_limited``."""

    reason: str
    message: str


class LoadGuard:
    """The refresher's current interval and, while it is longer than configured, why."""

    def __init__(self, base: float, maximum: float, slow_fraction: float) -> None:
        self.base = base
        self.maximum = max(base, maximum)
        self.slow_fraction = slow_fraction
        self.interval = base
        self.backoff: Backoff | None = None
        REFRESH_INTERVAL.set(base)

    @property
    def backing_off(self) -> bool:
        return self.interval > self.base

    def observe(self, seconds: float, *, ok: bool, rate_limited: bool = False) -> None:
        """Take one refresh into account: how long it took, and how it ended."""
        limit = self.slow_fraction * self.interval
        if rate_limited:
            self._back_off("rate_limited", "slurmctld is rate-limiting the portal's reads")
        elif seconds > limit:
            self._back_off(
                "slow",
                f"slurmctld answered slowly: a refresh took {seconds:.2f} s, more than "
                f"{self.slow_fraction:.0%} of the {self.interval:g} s interval",
            )
        elif ok and self.backing_off and seconds <= self.slow_fraction * self.interval / FACTOR:
            self._recover(seconds)

    def _back_off(self, reason: str, why: str) -> None:
        longer = min(self.maximum, self.interval * FACTOR)
        if longer > self.interval:
            BACKOFFS.labels(reason).inc()
            self.interval = longer
            REFRESH_INTERVAL.set(longer)
            log.warning("%s; refreshing the snapshot every %g s", why, longer)
        self.backoff = Backoff(reason, f"{why}; refreshing every {self.interval:g} s")

    def _recover(self, seconds: float) -> None:
        self.interval = max(self.base, self.interval / FACTOR)
        REFRESH_INTERVAL.set(self.interval)
        if self.backing_off:
            reason = self.backoff.reason if self.backoff else "slow"
            self.backoff = Backoff(
                reason,
                f"slurmctld is recovering (a refresh took {seconds:.2f} s); "
                f"refreshing every {self.interval:g} s",
            )
            log.info("slurmctld is recovering; refreshing the snapshot every %g s", self.interval)
        else:
            self.backoff = None
            log.info("slurmctld answers normally again; refreshing every %g s", self.interval)
