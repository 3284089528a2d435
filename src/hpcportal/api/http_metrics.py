"""HTTP request metrics, the build's identity, and who may read ``/metrics``.

Requests are counted by route *template* (``/api/v1/jobs/{job_id}``), never by the
raw path: a path holds job ids, file names and share tokens, and a label per value
would grow the scrape without bound (and put secrets into it). A request that
matched no route counts as ``route="unmatched"``; a method outside the standard set
counts as ``method="other"``. So the number of series is fixed by the code.

``/metrics`` tells how busy the portal and Slurm are, which users need not know: it
answers the client addresses in ``metrics_allowed_networks`` and, from anywhere, a
bearer token equal to the contents of ``metrics_token_file``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from functools import lru_cache
from pathlib import Path

from prometheus_client import Counter, Histogram, Info
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpcportal import __version__
from hpcportal.config import Settings
from hpcportal.errors import Forbidden

log = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "hpcportal_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
DURATION = Histogram(
    "hpcportal_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a stream's whole length), "
    "by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BUILD = Info("hpcportal_build", "The running portal's version.")
BUILD.info({"version": __version__})


def route_template(scope: Scope, root_path: str = "") -> str:
    """The full path template of the route that served ``scope``, or ``unmatched``.

    The router puts the matched route in the scope; its ``path`` is the template
    within its own router (``/jobs/{job_id}``), and what the request path has before
    the part that route matched is the prefix it was included under (``/api/v1``), a
    constant of the code, never a value from the request."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        # A mounted app (``/static``) leaves no route, but its path in ``root_path``.
        mounted = str(scope.get("root_path", ""))
        if mounted != root_path and mounted.startswith(root_path):
            return mounted[len(root_path) :]
        return UNMATCHED
    regex = getattr(route, "path_regex", None)
    if isinstance(regex, re.Pattern):
        found = _with_prefix(regex.pattern).fullmatch(scope.get("path", ""))
        if found is not None:
            return found.group("_prefix") + template
    return template


@lru_cache(maxsize=1024)
def _with_prefix(pattern: str) -> re.Pattern[str]:
    """A route's own path pattern, after any prefix (one compiled pattern per route)."""
    return re.compile("(?P<_prefix>.*?)" + pattern.removeprefix("^").removesuffix("$"))


class HttpMetrics:
    """ASGI middleware: count each HTTP request and time it, by route template.

    It wraps the router, so ``scope["route"]`` is set by the time the answer starts;
    an exception that escapes the app counts as a 500 (Starlette's outer handler
    turns it into one).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = str(scope.get("root_path", ""))
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            route = route_template(scope, root_path)
            REQUESTS.labels(method, route, str(status)).inc()
            DURATION.labels(method, route).observe(time.perf_counter() - started)


def _token(path: Path) -> str | None:
    """The metrics token: the file's first line, or None when it cannot be read (the
    reason is logged; every token request is then refused, nothing else changes)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("metrics token file %s cannot be read: %s", path, exc)
        return None
    token = lines[0].strip() if lines else ""
    return token or None


def allowed(settings: Settings, client: str | None, authorization: str | None) -> bool:
    """May this caller read ``/metrics``: its address is in an allowed network, or it
    sent the token (compared in constant time)."""
    if client is not None:
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                client
            )
        except ValueError:  # "testclient", a Unix socket: no address
            address = None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        if address is not None and any(
            address in ipaddress.ip_network(net, strict=False)
            for net in settings.metrics_allowed_networks
        ):
            return True
    if settings.metrics_token_file is None or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    expected = _token(settings.metrics_token_file)
    return (
        scheme.lower() == "bearer"
        and expected is not None
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def check_access(request: Request, settings: Settings) -> None:
    """403 for a caller ``allowed`` refuses, naming what would let it in."""
    client = request.client.host if request.client else None
    if not allowed(settings, client, request.headers.get("authorization")):
        raise Forbidden(
            "/metrics answers the addresses in metrics_allowed_networks, or a bearer "
            "token equal to the contents of metrics_token_file."
        )
