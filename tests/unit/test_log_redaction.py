"""Secrets never reach a log line: the redacting filter on uvicorn's and our loggers."""

from __future__ import annotations

import logging

import pytest
from uvicorn.logging import AccessFormatter

from hpcportal import log_redaction
from hpcportal.log_redaction import REDACTED, RedactSecrets, redact

SHARE = "Zq3Xw8_k-Lm2Np5Rs7Tu9Vw1Xy3Za5Bc7De9Fg1Hi3J"  # secrets.token_urlsafe(32)
API = "hpcp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        (f"/shares/{SHARE}", SHARE, "/shares/"),
        (f"/api/v1/shares/{SHARE}/vnc", SHARE, "/api/v1/shares/"),
        (f"/login?next=%2Fshares%2F{SHARE}&reason=required", SHARE, "reason=required"),
        (f"/api/v1/jobs?token={API}", API, "/api/v1/jobs?token="),
        (f"Authorization: Bearer {API}", API, "Bearer hpcp_"),
        ("/node/abc/lab?token=0123456789abcdef&x=1", "0123456789abcdef", "&x=1"),
        (f"/x?access_token={JWT}", JWT, "/x?access_token="),
        (f"cookie {JWT} seen", JWT, "cookie "),
        ("/x?password=hunter2&page=2", "hunter2", "&page=2"),
        ("/x?api_key=k-123;sig=abc", "k-123", "?api_key="),
    ],
)
def test_secrets_are_redacted_and_the_rest_kept(line: str, secret: str, kept: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert REDACTED in cleaned
    assert kept in cleaned


@pytest.mark.parametrize(
    "line",
    [
        "/shares/0123456789abcdef",  # a share id: names a share, opens nothing
        "/shares/open",
        "/api/v1/shares/0123456789abcdef/vnc",
        "/api/v1/sessions/a1a1a1a1a1a1a1a1/vnc",
        "/api/v1/jobs?state=running&sort=-submit_time&page=2",
        "/files/home/data/monkey=1",
        '127.0.0.1:5000 - "GET /api/v1/cluster HTTP/1.1" 200',
    ],
)
def test_ordinary_lines_are_unchanged(line: str) -> None:
    assert redact(line) == line


def _access_record(path: str) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it: the path is one of the args."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 303),
        None,
    )


def test_uvicorns_access_format_still_works_on_a_redacted_record() -> None:
    record = _access_record(f"/shares/{SHARE}")
    assert RedactSecrets().filter(record) is True
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.args[4] == 303  # numbers stay numbers for %d
    line = AccessFormatter("%(client_addr)s - %(request_line)s %(status_code)s").format(record)
    assert SHARE not in line
    assert f"GET /shares/{REDACTED} HTTP/1.1" in line


def test_installed_filter_redacts_records_of_our_and_uvicorns_loggers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = logging.getLogger("hpcportal.errors")  # a module's logger, as on import
    log_redaction.install()
    log_redaction.install()  # idempotent: one filter per logger
    access = logging.getLogger("uvicorn.access")
    # uvicorn's own log config (applied by any test that ran a server before this one)
    # stops its loggers propagating and may raise their level; caplog listens at the root.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "propagate", True)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "level", logging.NOTSET)
    assert sum(isinstance(f, RedactSecrets) for f in access.filters) == 1
    with caplog.at_level(logging.INFO):
        access.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:1", "GET", f"/shares/{SHARE}", "1.1", 200)
        ours.error("unhandled error on %s %s", "GET", f"/shares/{SHARE}")
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" 403', "1.2.3.4:1", API)
    text = caplog.text
    assert SHARE not in text and API not in text
    # One record per call (a handler left on a parent by an earlier test may repeat them).
    seen = {(r.name, r.getMessage()) for r in caplog.records}
    assert len(seen) == 3
    assert all(REDACTED in message for _, message in seen)


def test_a_placeholder_after_a_secret_parameter_still_formats() -> None:
    """``?token=%s`` in a format string: the placeholder stays, the argument is redacted
    (rewriting the placeholder made the record fail to format and be lost)."""
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2ln"
    record = logging.LogRecord(
        "hpcportal.x", logging.INFO, __file__, 1, "GET /api?token=%s done", (jwt_like,), None
    )
    RedactSecrets().filter(record)
    assert record.getMessage() == "GET /api?token=[redacted] done"
    plain = logging.LogRecord(  # a secret that only its position in the URL gives away
        "hpcportal.x", logging.INFO, __file__, 1, "GET /api?password=%s&x=%d", ("pw1", 2), None
    )
    RedactSecrets().filter(plain)
    assert plain.getMessage() == "GET /api?password=[redacted]&x=2"
    assert redact("/x?token=%2fabcdefgh") == "/x?token=[redacted]"
