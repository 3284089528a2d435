"""Keep bearer secrets out of the logs: a filter that redacts them from every record.

uvicorn's access log writes each request line, path and query included, and notes
each WebSocket in its error log. The portal keeps secrets out of its URLs (share
links carry their token in the fragment, see ``services.share_links``), but a
client can still put one there: an old-style ``/shares/<token>`` link, an API token
or a JWT in ``?token=``, a Jupyter ``?token=`` through the proxy. Whatever the
source, ``RedactSecrets`` rewrites the record before any handler formats it:

- ``/shares/<token>`` (also percent-encoded, as in ``next=%2Fshares%2F...``) keeps the
  path and loses the token; share ids (16 hex digits) are not secrets and stay;
- personal API tokens (``hpcp_`` + 40 characters) and JWTs (``eyJ...``) anywhere;
- the value of query parameters whose name says secret (``token``, ``access_token``,
  ``password``, ``secret``, ``key``, ``api_key``, ``signature``, ``code``...).

``install`` puts one filter on the loggers that log requests (uvicorn's access and
error loggers, httpx, websockets) and on every ``hpcportal.*`` logger, and on the
handlers of the root logger, so the portal's own records are covered wherever they
propagate. Logger filters survive uvicorn's ``dictConfig`` (it replaces handlers,
not filters). The portal writes no log file of its own: it logs to stderr/stdout and
the service manager (journald) keeps them; the dev cluster's Slurm logs are Slurm's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

#: A secret-named parameter whose value is a format placeholder: ``?token=%s``.
_SECRET_PLACEHOLDER = re.compile(
    r"(?:[?&;]|%3[fF]|%26)(?:[\w.-]*token|password|passwd|secret|api[_-]?key|key"
    r"|signature|sig|code|session|auth)(?:=|%3[dD])%[sdr]",
    re.IGNORECASE,
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # /shares/<token>: the token of a view-only link (32 to 64 URL-safe characters).
    (
        re.compile(r"((?:/|%2[fF])shares(?:/|%2[fF]))[A-Za-z0-9_-]{32,64}"),
        rf"\1{REDACTED}",
    ),
    # Personal API tokens and JWTs, wherever they appear.
    (re.compile(r"hpcp_[A-Za-z0-9_-]{20,}"), f"hpcp_{REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), REDACTED),
    # ?token=..., &password=..., ;api_key=... (also percent-encoded inside next=...).
    # A bare %s/%d/%r there is a format placeholder of the record's message, not a
    # value: left alone, so the argument it stands for is redacted on its own and the
    # message still formats.
    (
        re.compile(
            r"((?:[?&;]|%3[fF]|%26)(?:[\w.-]*token|password|passwd|secret|api[_-]?key|key"
            r"|signature|sig|code|session|auth)(?:=|%3[dD]))"
            r"(?!%[sdr](?:[&;\s\"'#]|$))[^&;\s\"'#]+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
)

#: Loggers whose records carry URLs: uvicorn's access log, its error log (WebSockets,
#: errors with paths), and the HTTP and WebSocket clients the proxy uses.
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "httpx", "httpcore", "websockets")


def redact(text: str) -> str:
    """``text`` with every secret-looking part replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value  # keeps %d and %f working, and cannot hold a secret
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and arguments; never drops a record.

    The arguments keep their shape (uvicorn's access formatter unpacks them), only a
    value that held a secret becomes its redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.args and _SECRET_PLACEHOLDER.search(record.msg):
            # "?token=%s": the argument is a secret by position only, which redacting
            # it on its own cannot see; format first, then redact the whole line.
            try:
                record.msg = redact(record.getMessage())
                record.args = None
                return True
            except (TypeError, ValueError):
                pass
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_value(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _redact_value(v) for k, v in args.items()}
        return True


_FILTER = RedactSecrets()


def _add(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(_FILTER)


def install() -> None:
    """Put the filter on the request loggers, every ``hpcportal.*`` logger and the
    root logger's handlers. Idempotent; ``create_app`` and ``serve`` call it."""
    names = [*REQUEST_LOGGERS, "hpcportal"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith("hpcportal.")]
    for name in names:
        _add(logging.getLogger(name))
    for handler in logging.getLogger().handlers:
        _add(handler)
