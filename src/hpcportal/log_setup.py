"""How ``serve`` logs: plain lines for journald by default, JSON lines as an option.

Under systemd the journal stamps and prioritises each line itself, so the plain format
leaves out the time when ``JOURNAL_STREAM`` says stderr goes to the journal, and keeps
it otherwise (a terminal, a file). ``json`` writes one object per record (time,
level, logger, message, exception) for a log collector. Both go through the one root
handler, uvicorn's access and error lines included (``serve`` passes
``log_config=None`` so uvicorn adds no handlers of its own), and the redaction filter
(``log_redaction``) rewrites every record before either formatter sees it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal

from hpcportal import log_redaction

PLAIN_JOURNAL = "%(levelname)s %(name)s: %(message)s"
PLAIN_TERMINAL = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` and, when there is one, ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = log_redaction.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def formatter(log_format: Literal["plain", "json"]) -> logging.Formatter:
    """The formatter for ``log_format`` in this process's surroundings."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(PLAIN_JOURNAL if os.environ.get("JOURNAL_STREAM") else PLAIN_TERMINAL)


def configure(level: str, log_format: Literal["plain", "json"]) -> None:
    """One stderr handler on the root logger, in the chosen format, redacting."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    log_redaction.install()
