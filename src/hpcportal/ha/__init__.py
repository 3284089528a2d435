"""Several replicas behind one address: one leader for background work, the rest follow.

- ``lease``: the leader lease row and its fence (works on SQLite, PostgreSQL, MariaDB).
- ``leadership``: ``Leadership``, which renews the lease and answers ``is_leader()``,
  ``current_token()``, ``fenced_session()``, ``run_if_leader()``.
- ``redis_bus``: the only client of Redis.
- ``replication``: the leader publishes each snapshot; followers install it; refresh
  requests, notifications and session changes cross replicas.

With one server (no ``redis_url``) nothing here talks to anything: ``Leadership`` is
always leader and the snapshot refresher reads Slurm itself, as before.
"""

from hpcportal.ha import lease
from hpcportal.ha.leadership import Leadership
from hpcportal.ha.lease import LeadershipLost

__all__ = ["Leadership", "LeadershipLost", "lease"]
