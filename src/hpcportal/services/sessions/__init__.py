"""Interactive sessions: launch, follow, connect, extend, relaunch, delete.

Like a JupyterHub spawner, a session is ``start``, ``poll`` and ``stop`` over state
persisted in the database, so a restarted portal, or another replica, carries on.
``contract`` names that (``SessionBackend``, ``SessionState``, ``State``);
``slurm_batch`` implements it with Slurm batch jobs. The rest is cut along concerns:
``views`` (what is shown), ``batch_job`` (the job's request and key), ``tracker``
and ``confirm`` (the poll), ``sealing`` (secrets at rest), ``access`` (who may
connect where; share links), ``extend`` (more time).

The names below are this package's API; callers import them from here.
"""

from hpcportal.services.sessions.access import (
    SHARE_TOKEN,
    Target,
    revoke_share,
    share,
    share_still_valid,
    shared_target,
    target,
    token_hash,
)
from hpcportal.services.sessions.batch_job import job_request, session_key, waiting_for_slurm
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import (
    ACTIVE,
    STATUS_STATE,
    SessionBackend,
    SessionState,
    State,
    end_row,
)
from hpcportal.services.sessions.extend import (
    RUNNING_LIMIT_REFUSED,
    extend,
    may_extend,
    raises_any_limit,
)
from hpcportal.services.sessions.sealing import (
    forget_connection,
    open_secret,
    rotate_passwords,
    seal_secrets,
)
from hpcportal.services.sessions.slurm_batch import SlurmBatchBackend, delete, launch, relaunch
from hpcportal.services.sessions.views import (
    LOG_TAIL_BYTES,
    SESSION_ID,
    SessionView,
    base_url,
    get_session,
    list_sessions,
    log_tail,
    output_tail,
    view,
)

__all__ = [
    "ACTIVE",
    "LOG_TAIL_BYTES",
    "RUNNING_LIMIT_REFUSED",
    "SESSION_ID",
    "SHARE_TOKEN",
    "STATUS_STATE",
    "SessionBackend",
    "SessionContext",
    "SessionState",
    "SessionView",
    "SlurmBatchBackend",
    "State",
    "Target",
    "base_url",
    "delete",
    "end_row",
    "extend",
    "forget_connection",
    "get_session",
    "job_request",
    "launch",
    "list_sessions",
    "log_tail",
    "may_extend",
    "open_secret",
    "output_tail",
    "raises_any_limit",
    "relaunch",
    "revoke_share",
    "rotate_passwords",
    "seal_secrets",
    "session_key",
    "share",
    "share_still_valid",
    "shared_target",
    "target",
    "token_hash",
    "view",
    "waiting_for_slurm",
]
